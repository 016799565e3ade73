// SPDX-License-Identifier: MIT
// jbtree: bulk load from sorted input (part of btree.hpp).
//
// One pass, no scratch memory: each level keeps an open node ("cur") and the
// node before it ("prev"), which is held back so that at the end the last
// two nodes of every level can be evened out (the last node would otherwise
// be nearly empty). A node is sealed and dirtied once, when it is final and
// its entry goes to the level above. Nodes are filled to fill_percent of
// their capacity; leaves are linked as they are made.
#pragma once

#ifndef JBTREE_BTREE_TEMPLATE
#error "include jbtree/engine/btree.hpp, not this file"
#endif

namespace jbtree {

JBTREE_BTREE_TEMPLATE
std::uint64_t JBTREE_BTREE::bulk_load_credits(std::uint64_t n, unsigned fill_percent) const noexcept {
    if (fill_percent < min_fill_percent || fill_percent > max_fill_percent || n == 0) return 0;
    // Fewest entries a closed node can hold at each level.
    std::uint64_t per = bulk_budget(true, fill_percent) / layout_type::max_entry_units(true);
    std::uint64_t count = n, total = 0;
    for (unsigned level = 0;; ++level) {
        if (level >= max_height) return 0;
        const std::uint64_t nodes = (count + per - 1) / per;
        total += nodes;
        if (nodes == 1) return total;
        count = nodes;
        per = bulk_budget(false, fill_percent);
    }
}

JBTREE_BTREE_TEMPLATE
template <class Source>
errc JBTREE_BTREE::bulk_load(handle& h, std::uint64_t n, Source&& next, unsigned fill_percent) noexcept {
    if (an_.height != 0) return errc::not_empty;
    if (fill_percent < min_fill_percent || fill_percent > max_fill_percent) return errc::invalid;
    if (n == 0) return errc::ok;
    const std::uint64_t need = bulk_load_credits(n, fill_percent);
    if (need == 0) return errc::too_deep;
    if (jr_->credits_left(h) < need) return errc::no_credits;

    bulk_level lv[max_height + 1];
    auto fail = [&](errc e) noexcept {
        bulk_abort(h, lv);
        return e;
    };
    key_type prev_key{};
    unsigned char ek[key_size];
    unsigned char ev[layout_type::max_value_size() + 1];
    for (std::uint64_t i = 0; i < n; ++i) {
        key_type k{};
        value_type v{};
        if (!next(k, v)) return fail(errc::invalid); // input shorter than n
        if (i && Traits::compare(k, prev_key) <= 0) return fail(errc::invalid); // not strictly ascending
        std::uint32_t vlen;
        if constexpr (fixed_values) {
            vlen = layout_type::max_value_size();
        } else {
            const std::size_t s = Traits::value_size_of(v);
            if (s > layout_type::max_value_size()) return fail(errc::range);
            vlen = static_cast<std::uint32_t>(s);
        }
        Traits::encode_key(k, ek);
        Traits::encode_value(v, ev);
        if (const errc e = bulk_append(h, lv, 0, ek, ev, vlen, fill_percent); e != errc::ok) return fail(e);
        prev_key = k;
    }

    // Close the levels bottom-up; the first level left with a single node
    // and nothing above it holds the root.
    for (unsigned l = 0; l < max_height; ++l) {
        bulk_level& L = lv[l];
        const bool leaf = l == 0;
        if (!L.has_prev && !lv[l + 1].has_cur && !lv[l + 1].has_prev) {
            seal(L.cur, jr_->transaction_id(h));
            if (const errc e = jr_->dirty_metadata(h, L.cur); e != errc::ok) return fail(e);
            an_.root = L.cur.blkno();
            an_.height = static_cast<std::uint16_t>(l + 1);
            an_.records = n;
            ++gen_;
            return errc::ok;
        }
        if (L.has_prev) {
            // Even out the last two nodes: move entries from prev's tail
            // while cur stays the smaller one.
            unsigned char* pv = L.prev.data();
            unsigned char* cu = L.cur.data();
            const std::uint32_t pc = layout_type::count(pv);
            std::uint32_t cu_units = lay_.used_units(cu, leaf), pv_units = lay_.used_units(pv, leaf), moved = 0;
            if (cu_units < min_units(leaf)) {
                while (moved + 1 < pc) {
                    const std::uint32_t u = lay_.entry_units(pv, leaf, pc - 1 - moved);
                    if (cu_units + u > lay_.capacity(leaf) || cu_units + u > pv_units - u) break;
                    cu_units += u;
                    pv_units -= u;
                    ++moved;
                }
                lay_.move_tail_to(pv, cu, leaf, moved);
            }
            if (const errc e = bulk_close(h, lv, l, L.prev, fill_percent); e != errc::ok) return fail(e);
            L.has_prev = false;
        }
        if (const errc e = bulk_close(h, lv, l, L.cur, fill_percent); e != errc::ok) return fail(e);
        L.has_cur = false;
    }
    return fail(errc::too_deep); // unreachable: bulk_load_credits() bounded the height
}

JBTREE_BTREE_TEMPLATE
errc JBTREE_BTREE::bulk_append(handle& h, bulk_level* lv, unsigned l, const unsigned char* k, const unsigned char* p,
                               std::uint32_t plen, unsigned fill) noexcept {
    if (l >= max_height) return errc::too_deep;
    bulk_level& L = lv[l];
    const bool leaf = l == 0;
    const std::uint32_t units = leaf ? layout_type::leaf_units_for(plen) : 1;
    if (L.has_cur && lay_.used_units(L.cur.data(), leaf) + units > bulk_budget(leaf, fill)) {
        if (L.has_prev) {
            JBTREE_TRY(bulk_close(h, lv, l, L.prev, fill));
        }
        L.prev = rvalue(L.cur);
        L.has_prev = true;
        L.has_cur = false;
    }
    if (!L.has_cur) {
        auto r = new_node(l);
        if (!r) return r.error();
        if (const errc e = jr_->get_create_access(h, *r); e != errc::ok) {
            (void)st_->free(r->blkno());
            return e;
        }
        L.cur = rvalue(*r);
        L.has_cur = true;
        if (leaf && L.has_prev) {
            header_of(L.prev.data())->right.set(L.cur.blkno());
            header_of(L.cur.data())->left.set(L.prev.blkno());
        }
    }
    lay_.insert(L.cur.data(), leaf, layout_type::count(L.cur.data()), k, p, plen);
    return errc::ok;
}

JBTREE_BTREE_TEMPLATE
errc JBTREE_BTREE::bulk_close(handle& h, bulk_level* lv, unsigned l, buffer& b, unsigned fill) noexcept {
    internal_entry e{};
    describe_node(b, l == 0, e);
    seal(b, jr_->transaction_id(h));
    JBTREE_TRY(jr_->dirty_metadata(h, b));
    return bulk_append(h, lv, l + 1, e.key, e.payload, layout_type::internal_payload, fill);
}

// Free every node a failed bulk load made. Each node is either held open at
// its level or was closed into the level above, so the open nodes are the
// roots of disjoint subtrees covering them all.
JBTREE_BTREE_TEMPLATE
void JBTREE_BTREE::bulk_abort(handle& h, bulk_level* lv) noexcept {
    for (unsigned l = 0; l < max_height; ++l) {
        if (lv[l].has_prev) free_subtree(h, lv[l].prev.blkno(), l);
        if (lv[l].has_cur) free_subtree(h, lv[l].cur.blkno(), l);
        lv[l] = bulk_level{};
    }
}

JBTREE_BTREE_TEMPLATE
void JBTREE_BTREE::free_subtree(handle& h, std::uint64_t blk, unsigned level) noexcept {
    if (level > 0) {
        auto r = st_->read(blk); // our own nodes, possibly not sealed yet
        if (r) {
            const std::uint32_t cnt = layout_type::count(r->data());
            for (std::uint32_t i = 0; i < cnt && i < lay_.capacity(false); ++i)
                free_subtree(h, child_at(r->data(), i), level - 1);
        }
    }
    (void)jr_->forget(h, blk);
    (void)st_->free(blk);
}

} // namespace jbtree
