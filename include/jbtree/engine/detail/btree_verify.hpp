// SPDX-License-Identifier: MIT
// jbtree: verify() and stats() (part of btree.hpp).
#pragma once

#ifndef JBTREE_BTREE_TEMPLATE
#error "include jbtree/engine/btree.hpp, not this file"
#endif

namespace jbtree {

JBTREE_BTREE_TEMPLATE
verify_report JBTREE_BTREE::verify() noexcept {
    verify_report r{};
    r.height = an_.height;
    if (an_.height == 0 || an_.root == 0 || an_.height > max_height) {
        if (an_.root != 0 || an_.height != 0 || an_.records != 0)
            r.add({problem_kind::bad_anchor, node_fault::none, errc::ok, an_.root, 0});
        return r;
    }
    verify_state vs{&r};
    unsigned char first[key_size], high[key_size];
    (void)verify_node(vs, an_.root, an_.height - 1u, nullptr, first, high);
    if (vs.prev_leaf && vs.prev_leaf_right != 0 && !vs.lost_leaves)
        r.add({problem_kind::sibling_link, node_fault::none, errc::ok, vs.prev_leaf, 0});
    if (r.records != an_.records)
        r.add({problem_kind::record_count, node_fault::none, errc::ok, an_.root, 0});
    return r;
}

// Returns true when the node itself was readable and valid; then first and
// high hold its first key and largest high key, encoded.
JBTREE_BTREE_TEMPLATE
bool JBTREE_BTREE::verify_node(verify_state& vs, std::uint64_t blk, unsigned level, const unsigned char* hi_bound,
                               unsigned char* first, unsigned char* high) noexcept {
    verify_report& r = *vs.r;
    auto rr = st_->read(blk);
    if (!rr) {
        r.add({problem_kind::read_error, node_fault::none, rr.error(), blk, 0});
        vs.lost_leaves = true;
        return false;
    }
    const unsigned char* n = rr->data();
    // The contents checks are this function's own below, with entry indices.
    node_expectation want = expect(blk, level);
    want.contents = false;
    // A node changed since its storage last sealed it has a stale checksum
    // until the storage seals it (SealDeferringBuffer): nothing to check.
    if constexpr (SealDeferringBuffer<buffer>)
        if (!rr->sealed()) want.checksums = false;
    if (const node_fault f = check_node(lay_, n, want); f != node_fault::none) {
        r.add({problem_kind::bad_node, f, to_errc(f), blk, 0});
        vs.lost_leaves = true;
        return false;
    }
    ++r.nodes;
    const bool leaf = level == 0;
    const std::uint32_t cnt = layout_type::count(n);
    for (std::uint32_t i = 1; i < cnt; ++i)
        if (Traits::compare(key_at(n, leaf, i - 1), key_at(n, leaf, i)) >= 0)
            r.add({problem_kind::key_order, node_fault::none, errc::ok, blk, i});
    if (hi_bound) {
        const key_type bound = Traits::decode_key(hi_bound);
        for (std::uint32_t i = 0; i < cnt; ++i)
            if (Traits::compare(key_at(n, leaf, i), bound) >= 0) {
                r.add({problem_kind::key_bound, node_fault::none, errc::ok, blk, i});
                break;
            }
    }
    if (leaf) {
        ++r.leaves;
        r.records += cnt;
        const node_header* hd = header_of(n);
        if (!vs.lost_leaves) {
            if (hd->left.get() != vs.prev_leaf) r.add({problem_kind::sibling_link, node_fault::none, errc::ok, blk, 0});
            if (vs.prev_leaf && vs.prev_leaf_right != blk)
                r.add({problem_kind::sibling_link, node_fault::none, errc::ok, vs.prev_leaf, 0});
        }
        vs.lost_leaves = false;
        vs.prev_leaf = blk;
        vs.prev_leaf_right = hd->right.get();
        for (std::uint32_t i = 0; i < cnt; ++i) {
            value_type v{};
            bool ok = decode_value_at(n, i, v) == errc::ok;
            if constexpr (RecordValidator<Traits>) ok = ok && Traits::valid_record(key_at(n, true, i), v);
            if (!ok) r.add({problem_kind::bad_value, node_fault::none, errc::corrupted, blk, i});
        }
    } else {
        for (std::uint32_t i = 0; i < cnt; ++i) {
            const std::uint64_t child = child_at(n, i);
            if (child == 0) {
                r.add({problem_kind::null_child, node_fault::none, errc::ok, blk, i});
                vs.lost_leaves = true;
                continue;
            }
            const unsigned char* next_hi = i + 1 < cnt ? lay_.key(n, false, i + 1) : hi_bound;
            unsigned char cf[key_size], ch[key_size];
            if (!verify_node(vs, child, level - 1, next_hi, cf, ch)) continue;
            if (compare_bytes(cf, lay_.key(n, false, i), key_size) != 0)
                r.add({problem_kind::entry_key, node_fault::none, errc::ok, blk, i});
            if constexpr (interval) {
                if (compare_bytes(ch, lay_.payload(n, false, i), key_size) != 0)
                    r.add({problem_kind::entry_high, node_fault::none, errc::ok, blk, i});
            }
        }
    }
    copy_bytes(first, lay_.key(n, leaf, 0), key_size);
    if constexpr (interval) node_high(n, leaf, high);
    else (void)high;
    return true;
}

JBTREE_BTREE_TEMPLATE
result<tree_stats> JBTREE_BTREE::stats() noexcept {
    tree_stats s{};
    s.height = an_.height;
    s.block_size = lay_.block_size();
    if (an_.height) JBTREE_TRY(stats_node(s, an_.root, an_.height - 1u));
    return s;
}

JBTREE_BTREE_TEMPLATE
errc JBTREE_BTREE::stats_node(tree_stats& s, std::uint64_t blk, unsigned level) noexcept {
    auto r = read_node(blk, level);
    if (!r) return r.error();
    const unsigned char* n = r->data();
    if (level == 0) {
        ++s.leaves;
        s.records += layout_type::count(n);
        s.leaf_units_used += lay_.used_units(n, true);
        s.leaf_units_capacity += lay_.capacity(true);
        return errc::ok;
    }
    ++s.internal_nodes;
    const std::uint32_t cnt = layout_type::count(n);
    for (std::uint32_t i = 0; i < cnt; ++i) JBTREE_TRY(stats_node(s, child_at(n, i), level - 1));
    return errc::ok;
}

} // namespace jbtree
