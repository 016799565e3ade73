// SPDX-License-Identifier: MIT
// jbtree: insertion and overwrite (part of btree.hpp).
//
// Overflow handling, per level from the leaf up (docs/design.md, "Balancing"):
//   1. the entry fits: insert it;
//   2. else shift entries into the left sibling, then the right one (same
//      parent), if the most even cut fits both nodes: no new node;
//   3. else split into a new right node; an append at the node's end keeps
//      the node full and starts the new one with just the new entry (and
//      symmetrically at the front), so ascending or descending loads leave
//      full nodes; other inserts split evenly. The parent then takes one
//      more entry, and the same rules apply one level up.
#pragma once

#ifndef JBTREE_BTREE_TEMPLATE
#error "include jbtree/engine/btree.hpp, not this file"
#endif

namespace jbtree {

JBTREE_BTREE_TEMPLATE
errc JBTREE_BTREE::plan_insert(path_t& p, level_plan* plan, unsigned& top, std::uint32_t leaf_units,
                               std::uint32_t removed_units, buffer& new_root, std::uint64_t* allocated,
                               unsigned& nallocated) noexcept {
    const unsigned h = an_.height;
    std::uint32_t units = leaf_units;
    auto fail = [&](errc e) noexcept {
        free_unused(allocated, nallocated);
        nallocated = 0;
        return e;
    };
    for (unsigned l = 0; l < h; ++l) {
        level_plan& pl = plan[l];
        pl.has_far = false;
        pl.cut = 0;
        const bool leaf = l == 0;
        const bool replace = leaf && removed_units != 0;
        const unsigned char* n = p.lv[l].buf.data();
        pl.pos = leaf ? p.lv[0].index : p.lv[l].index + 1;
        const std::uint32_t used = lay_.used_units(n, leaf) - (replace ? removed_units : 0);
        if (used + units <= lay_.capacity(leaf)) {
            pl.how = shape::fits;
            top = l;
            return errc::ok;
        }
        const virtual_seq vs{this, n, leaf, pl.pos, units, replace};
        const std::uint32_t last_cut = vs.size() - 1; // every cut leaves both sides non-empty
        if (l + 1 < h) {
            const unsigned char* pn = p.lv[l + 1].buf.data();
            const std::uint32_t ci = p.lv[l + 1].index;
            if (ci > 0) {
                auto r = read_path_sibling(p, l, ci - 1);
                if (!r) return fail(r.error());
                const std::uint32_t c = choose_cut(vs, lay_.used_units(r->data(), leaf), 0, 1, last_cut);
                if (c) {
                    pl.how = shape::to_left;
                    pl.cut = c;
                    pl.sib = rvalue(*r);
                    top = l;
                    return errc::ok;
                }
            }
            if (ci + 1 < layout_type::count(pn)) {
                auto r = read_path_sibling(p, l, ci + 1);
                if (!r) return fail(r.error());
                const std::uint32_t c = choose_cut(vs, 0, lay_.used_units(r->data(), leaf), 1, last_cut);
                if (c) {
                    pl.how = shape::to_right;
                    pl.cut = c;
                    pl.sib = rvalue(*r);
                    top = l;
                    return errc::ok;
                }
            }
        } else if (h >= max_height) {
            return fail(errc::too_deep);
        }
        std::uint32_t c;
        if (!replace && pl.pos == layout_type::count(n)) c = last_cut; // append: new node starts with the entry
        else if (!replace && pl.pos == 0) c = 1;                        // prepend: node keeps only the entry
        else c = choose_cut(vs, 0, 0, 1, last_cut);
        if (!c) return fail(errc::range); // unreachable while layout.usable()
        auto nn = new_node(l);
        if (!nn) return fail(nn.error());
        allocated[nallocated++] = nn->blkno();
        pl.sib = rvalue(*nn);
        pl.how = shape::split;
        pl.cut = c;
        if (leaf) {
            const std::uint64_t right = header_of(n)->right.get();
            if (right) {
                auto f = read_neighbour(p.lv[0].buf, right, true);
                if (!f) return fail(f.error());
                pl.far = rvalue(*f);
                pl.has_far = true;
            }
        }
        units = 1; // the parent gains one internal entry
    }
    auto r = new_node(h); // every level split: the tree grows a new root
    if (!r) return fail(r.error());
    allocated[nallocated++] = r->blkno();
    new_root = rvalue(*r);
    top = h - 1;
    return errc::ok;
}

JBTREE_BTREE_TEMPLATE
errc JBTREE_BTREE::upsert(handle& h, const key_type& k, const value_type& v, upsert_mode mode,
                          bool* inserted) noexcept {
    unsigned char ek[key_size];
    unsigned char ev[layout_type::max_value_size() + 1];
    std::uint32_t vlen;
    if constexpr (fixed_values) {
        vlen = layout_type::max_value_size();
    } else {
        const std::size_t s = Traits::value_size_of(v);
        if (s > layout_type::max_value_size()) return errc::range;
        vlen = static_cast<std::uint32_t>(s);
    }
    if (jr_->credits_left(h) < insert_credits()) return errc::no_credits;
    Traits::encode_key(k, ek);
    Traits::encode_value(v, ev);

    if (an_.height == 0) {
        if (mode == upsert_mode::assign_only) return errc::not_found;
        auto r = new_node(0);
        if (!r) return r.error();
        op_context ctx{this, &h};
        if (const errc e = ctx.touch(*r, true); e != errc::ok) {
            (void)st_->free(r->blkno());
            return e;
        }
        lay_.insert(r->data(), true, 0, ek, ev, vlen);
        an_.root = r->blkno();
        an_.height = 1;
        an_.records = 1;
        ++gen_;
        if (inserted) *inserted = true;
        return ctx.finish();
    }

    path_t p;
    bool exact = false;
    JBTREE_TRY(descend_path(k, p, exact));
    if (exact && mode == upsert_mode::insert_only) return errc::exists;
    if (!exact && mode == upsert_mode::assign_only) return errc::not_found;
    const std::uint32_t leaf_pos = p.lv[0].index;
    // The common cases change one leaf and nothing above it: a fixed-size
    // value replaced in place, or a new entry that fits its leaf and does
    // not become the leaf's first key (its parent's separator; interval
    // trees also keep each node's high key above, so they take the general
    // path). They skip planning: no other node is read, allocated or
    // restructured.
    op_context ctx{this, &h};
    if constexpr (!interval) {
        unsigned char* n = p.lv[0].buf.data();
        const bool in_place = fixed_values && exact;
        if (in_place ||
            (!exact && leaf_pos > 0 &&
             lay_.used_units(n, true) + layout_type::leaf_units_for(vlen) <= lay_.capacity(true))) {
            JBTREE_TRY(ctx.touch(p.lv[0].buf));
            if (in_place) {
                copy_bytes(lay_.payload(n, true, leaf_pos), ev, layout_type::payload_field_for(true));
            } else {
                lay_.insert(n, true, leaf_pos, ek, ev, vlen);
                ++an_.records;
            }
            ++gen_;
            if (inserted) *inserted = !exact;
            return ctx.finish();
        }
    }
    return upsert_planned(ctx, p, exact, ek, ev, vlen, inserted);
}

// The general path of upsert: plan every level from the leaf up (reading
// siblings, allocating nodes), then apply. Out of line, so that its plans
// and upsert's path and encoded record are not one frame. It finishes the
// operation itself: ctx then holds its buffers (siblings, new nodes).
JBTREE_BTREE_TEMPLATE
errc JBTREE_BTREE::upsert_planned(op_context& ctx, path_t& p, bool exact, const unsigned char* ek,
                                  const unsigned char* ev, std::uint32_t vlen, bool* inserted) noexcept {
    const std::uint32_t leaf_pos = p.lv[0].index;
    const std::uint32_t removed = exact ? lay_.entry_units(p.lv[0].buf.data(), true, leaf_pos) : 0;

    level_plan plan[max_height];
    unsigned top = 0;
    buffer root_buf;
    std::uint64_t allocated[max_height + 1];
    unsigned nallocated = 0;
    JBTREE_TRY(plan_insert(p, plan, top, layout_type::leaf_units_for(vlen), removed, root_buf, allocated, nallocated));

    // Apply. From here on only a journal failure can stop us.
    const unsigned h0 = an_.height;
    internal_entry up{}; // entry for the node a split created one level down
    bool changed = false;
    for (unsigned l = 0; l <= top; ++l) {
        level_plan& pl = plan[l];
        const bool leaf = l == 0;
        buffer& nb = p.lv[l].buf;
        JBTREE_TRY(ctx.touch(nb));
        unsigned char* n = nb.data();
        const unsigned char* ekey = leaf ? ek : up.key;
        const unsigned char* epay = leaf ? ev : up.payload;
        const std::uint32_t eplen = leaf ? vlen : layout_type::internal_payload;
        if (leaf && exact) lay_.erase(n, true, leaf_pos);
        const std::uint32_t cnt = layout_type::count(n);
        switch (pl.how) {
        case shape::fits:
            lay_.insert(n, leaf, pl.pos, ekey, epay, eplen);
            break;
        case shape::to_left: {
            JBTREE_TRY(ctx.touch(pl.sib));
            unsigned char* s = pl.sib.data();
            const std::uint32_t sc = layout_type::count(s);
            if (pl.pos < pl.cut) {
                lay_.move_head_to(n, s, leaf, pl.cut - 1);
                lay_.insert(s, leaf, sc + pl.pos, ekey, epay, eplen);
            } else {
                lay_.move_head_to(n, s, leaf, pl.cut);
                lay_.insert(n, leaf, pl.pos - pl.cut, ekey, epay, eplen);
            }
            break;
        }
        case shape::to_right:
        case shape::split: {
            JBTREE_TRY(ctx.touch(pl.sib, pl.how == shape::split));
            unsigned char* s = pl.sib.data();
            if (pl.pos < pl.cut) {
                lay_.move_tail_to(n, s, leaf, cnt - (pl.cut - 1));
                lay_.insert(n, leaf, pl.pos, ekey, epay, eplen);
            } else {
                lay_.move_tail_to(n, s, leaf, cnt - pl.cut);
                lay_.insert(s, leaf, pl.pos - pl.cut, ekey, epay, eplen);
            }
            if (pl.how == shape::split && leaf) { // link the new leaf in after n
                header_of(s)->left.set(nb.blkno());
                header_of(s)->right.set(header_of(n)->right.get());
                header_of(n)->right.set(pl.sib.blkno());
                if (pl.has_far) {
                    JBTREE_TRY(ctx.touch(pl.far));
                    header_of(pl.far.data())->left.set(pl.sib.blkno());
                }
            }
            break;
        }
        }

        if (l + 1 < h0) {
            buffer& parent = p.lv[l + 1].buf;
            const std::uint32_t ci = p.lv[l + 1].index;
            changed = false;
            auto refresh = [&](std::uint32_t i, buffer& child) noexcept {
                return refresh_into(ctx, parent, i, child, leaf, changed);
            };
            switch (pl.how) {
            case shape::fits: JBTREE_TRY(refresh(ci, nb)); break;
            case shape::to_left:
                JBTREE_TRY(refresh(ci - 1, pl.sib));
                JBTREE_TRY(refresh(ci, nb));
                break;
            case shape::to_right:
                JBTREE_TRY(refresh(ci, nb));
                JBTREE_TRY(refresh(ci + 1, pl.sib));
                break;
            case shape::split:
                JBTREE_TRY(refresh(ci, nb));
                describe_node(pl.sib, leaf, up);
                break;
            }
        } else if (pl.how == shape::split) { // the root split: a new root above both halves
            JBTREE_TRY(ctx.touch(root_buf, true));
            internal_entry e{};
            describe_node(nb, leaf, e);
            lay_.insert(root_buf.data(), false, 0, e.key, e.payload, layout_type::internal_payload);
            describe_node(pl.sib, leaf, e);
            lay_.insert(root_buf.data(), false, 1, e.key, e.payload, layout_type::internal_payload);
            an_.root = root_buf.blkno();
            ++an_.height;
        }
    }
    JBTREE_TRY(carry_up(ctx, p, top, h0, changed));
    if (!exact) ++an_.records;
    ++gen_;
    if (inserted) *inserted = !exact;
    return ctx.finish();
}

} // namespace jbtree
