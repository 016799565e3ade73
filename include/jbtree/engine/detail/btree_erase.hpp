// SPDX-License-Identifier: MIT
// jbtree: erase (part of btree.hpp).
//
// Underflow handling, per level from the leaf up: a non-root node left
// below half its capacity merges with a sibling (the left one if it has
// one) when both fit in one node; the parent then loses an entry and the
// same rule applies one level up. Otherwise it borrows entries from that
// sibling until the two are about even. A node without a sibling (an only
// child) may stay underfull; if it empties it is dropped and its parent
// loses the entry. An internal root left with one
// child hands the root to it; a leaf root left empty empties the tree.
#pragma once

#ifndef JBTREE_BTREE_TEMPLATE
#error "include jbtree/engine/btree.hpp, not this file"
#endif

namespace jbtree {

JBTREE_BTREE_TEMPLATE
errc JBTREE_BTREE::erase(handle& h, const key_type& k) noexcept {
    if (an_.height == 0) return errc::not_found;
    if (jr_->credits_left(h) < erase_credits()) return errc::no_credits;
    path_t p;
    bool exact = false;
    JBTREE_TRY(descend_path(k, p, exact));
    if (!exact) return errc::not_found;

    // The common case changes one leaf: it keeps at least half its
    // capacity (or is the root and keeps an entry) and its first key (its
    // parent's separator; interval trees take the general path, which also
    // keeps the high keys above). No sibling is read, nothing restructured.
    // (The level-0 rule of the plan below, taken early. One op_context for
    // both paths: a second would grow the frame the kernel check bounds.)
    op_context ctx{this, &h};
    if constexpr (!interval) {
        unsigned char* n = p.lv[0].buf.data();
        const std::uint32_t i = p.lv[0].index;
        const bool root = an_.height == 1;
        if (root ? layout_type::count(n) > 1
                 : i > 0 && lay_.used_units(n, true) - lay_.entry_units(n, true, i) >= min_units(true)) {
            JBTREE_TRY(ctx.touch(p.lv[0].buf));
            lay_.erase(n, true, i);
            --an_.records;
            ++gen_;
            return ctx.finish();
        }
    }

    // Plan: decide each level's fix-up and read the siblings it needs.
    const unsigned h0 = an_.height;
    erase_plan plan[max_height];
    unsigned top = 0;
    std::uint32_t pos = p.lv[0].index;
    for (unsigned l = 0;; ++l) {
        erase_plan& pl = plan[l];
        pl.how = fixup::none;
        pl.moved = 0;
        pl.has_sib = pl.has_far = false;
        const bool leaf = l == 0;
        const unsigned char* n = p.lv[l].buf.data();
        pl.pos = pos;
        top = l;
        const std::uint32_t cnt = layout_type::count(n);
        if (l + 1 == h0) { // the root
            if (leaf && cnt == 1) pl.how = fixup::empty;
            else if (!leaf && cnt == 2) pl.how = fixup::collapse;
            break;
        }
        const std::uint32_t after = lay_.used_units(n, leaf) - lay_.entry_units(n, leaf, pos);
        if (after >= min_units(leaf)) break;
        const unsigned char* pn = p.lv[l + 1].buf.data();
        const std::uint32_t ci = p.lv[l + 1].index;
        const bool use_left = ci > 0;
        if (!use_left && ci + 1 >= layout_type::count(pn)) { // an only child
            if (cnt > 1) break;                                // stays, underfull
            pl.how = fixup::drop;                              // empties: it goes
            if (leaf) {
                const node_header* hd = header_of(n);
                if (hd->left.get()) {
                    auto f = read_neighbour(p.lv[0].buf, hd->left.get(), false);
                    if (!f) return f.error();
                    pl.sib = rvalue(*f);
                    pl.has_sib = true;
                }
                if (hd->right.get()) {
                    auto f = read_neighbour(p.lv[0].buf, hd->right.get(), true);
                    if (!f) return f.error();
                    pl.far = rvalue(*f);
                    pl.has_far = true;
                }
            }
            pos = ci;
            continue;
        }
        auto r = read_path_sibling(p, l, use_left ? ci - 1 : ci + 1);
        if (!r) return r.error();
        pl.sib = rvalue(*r);
        const unsigned char* s = pl.sib.data();
        const std::uint32_t su = lay_.used_units(s, leaf);
        if (after + su <= lay_.capacity(leaf)) {
            pl.how = use_left ? fixup::merge_left : fixup::merge_right;
            // The node that disappears is n (merge left) or the sibling (merge
            // right); its right neighbour's left link must change.
            if (leaf) {
                const std::uint64_t right = header_of(use_left ? n : s)->right.get();
                if (right) {
                    auto f = read_neighbour(use_left ? p.lv[0].buf : pl.sib, right, true);
                    if (!f) return f.error();
                    pl.far = rvalue(*f);
                    pl.has_far = true;
                }
            }
            pos = use_left ? ci : ci + 1; // the parent drops the vanished node's entry
            continue;
        }
        // Borrow: move entries from the sibling's near end while n stays the smaller.
        pl.how = use_left ? fixup::borrow_left : fixup::borrow_right;
        const std::uint32_t sc = layout_type::count(s);
        std::uint32_t nu = after, rest = su, moved = 0;
        while (moved + 1 < sc) {
            const std::uint32_t u = lay_.entry_units(s, leaf, use_left ? sc - 1 - moved : moved);
            if (nu + u > lay_.capacity(leaf) || (moved > 0 && nu + u > rest - u)) break;
            nu += u;
            rest -= u;
            ++moved;
        }
        pl.moved = moved;
        if (moved == 0) pl.how = fixup::none;
        break;
    }

    // Apply.
    bool changed = false;
    for (unsigned l = 0; l <= top; ++l) {
        erase_plan& pl = plan[l];
        const bool leaf = l == 0;
        buffer& nb = p.lv[l].buf;
        unsigned char* n = nb.data();
        JBTREE_TRY(ctx.touch(nb));
        lay_.erase(n, leaf, pl.pos);
        switch (pl.how) {
        case fixup::none: break;
        case fixup::empty:
            ctx.release(nb.blkno());
            an_.root = 0;
            an_.height = 0;
            break;
        case fixup::collapse:
            ctx.release(nb.blkno());
            an_.root = child_at(n, 0);
            --an_.height;
            break;
        case fixup::drop: {
            const std::uint64_t left = header_of(n)->left.get(), right = header_of(n)->right.get();
            if (pl.has_sib) {
                JBTREE_TRY(ctx.touch(pl.sib));
                header_of(pl.sib.data())->right.set(right);
            }
            if (pl.has_far) {
                JBTREE_TRY(ctx.touch(pl.far));
                header_of(pl.far.data())->left.set(left);
            }
            ctx.release(nb.blkno());
            break;
        }
        case fixup::merge_left: {
            JBTREE_TRY(ctx.touch(pl.sib));
            unsigned char* s = pl.sib.data();
            lay_.move_head_to(n, s, leaf, layout_type::count(n));
            if (leaf) {
                header_of(s)->right.set(header_of(n)->right.get());
                if (pl.has_far) {
                    JBTREE_TRY(ctx.touch(pl.far));
                    header_of(pl.far.data())->left.set(pl.sib.blkno());
                }
            }
            ctx.release(nb.blkno());
            break;
        }
        case fixup::merge_right: {
            JBTREE_TRY(ctx.touch(pl.sib));
            unsigned char* s = pl.sib.data();
            lay_.move_head_to(s, n, leaf, layout_type::count(s));
            if (leaf) {
                header_of(n)->right.set(header_of(s)->right.get());
                if (pl.has_far) {
                    JBTREE_TRY(ctx.touch(pl.far));
                    header_of(pl.far.data())->left.set(nb.blkno());
                }
            }
            ctx.release(pl.sib.blkno());
            break;
        }
        case fixup::borrow_left:
            JBTREE_TRY(ctx.touch(pl.sib));
            lay_.move_tail_to(pl.sib.data(), n, leaf, pl.moved);
            break;
        case fixup::borrow_right:
            JBTREE_TRY(ctx.touch(pl.sib));
            lay_.move_head_to(pl.sib.data(), n, leaf, pl.moved);
            break;
        }
        if (l + 1 >= h0) break;
        // Refresh the parent's entries for the nodes that remain; a vanished
        // node's entry is removed by the next level.
        buffer& parent = p.lv[l + 1].buf;
        const std::uint32_t ci = p.lv[l + 1].index;
        changed = false;
        auto refresh = [&](std::uint32_t i, buffer& child) noexcept {
            return refresh_into(ctx, parent, i, child, leaf, changed);
        };
        switch (pl.how) {
        case fixup::drop: break;
        case fixup::merge_left: JBTREE_TRY(refresh(ci - 1, pl.sib)); break;
        case fixup::merge_right: JBTREE_TRY(refresh(ci, nb)); break;
        case fixup::borrow_left:
            JBTREE_TRY(refresh(ci - 1, pl.sib));
            JBTREE_TRY(refresh(ci, nb));
            break;
        case fixup::borrow_right:
            JBTREE_TRY(refresh(ci, nb));
            JBTREE_TRY(refresh(ci + 1, pl.sib));
            break;
        default: JBTREE_TRY(refresh(ci, nb)); break;
        }
    }
    JBTREE_TRY(carry_up(ctx, p, top, h0, changed));
    --an_.records;
    ++gen_;
    return ctx.finish();
}

} // namespace jbtree
