// SPDX-License-Identifier: MIT
// jbtree: cursors, range walks and overlap queries (part of btree.hpp).
//
// A cursor remembers the key it stands on. While the tree is unchanged
// (same generation) it steps through the pinned leaf and its sibling links;
// after any change it re-seeks by that key, so it survives inserts and
// erases anywhere, including of its own record.
#pragma once

#ifndef JBTREE_BTREE_TEMPLATE
#error "include jbtree/engine/btree.hpp, not this file"
#endif

namespace jbtree {

JBTREE_BTREE_TEMPLATE
class JBTREE_BTREE::cursor {
public:
    cursor() noexcept = default;

    [[nodiscard]] bool at_end() const noexcept { return end_; }
    // The key under the cursor (valid unless at_end()).
    [[nodiscard]] const key_type& key() const noexcept { return key_; }

    // The value of the record under the cursor; errc::not_found if that
    // record was erased since the cursor reached it.
    [[nodiscard]] result<value_type> value() noexcept {
        if (end_ || !t_) return errc::not_found;
        if (t_->gen_ != gen_) return t_->find(key_);
        value_type v{};
        JBTREE_TRY(t_->decode_value_at(leaf_.data(), idx_, v));
        return v;
    }

    // Step to the next record (at_end() after the last one).
    [[nodiscard]] errc next() noexcept {
        if (end_ || !t_) return errc::ok;
        if (t_->gen_ != gen_) return seek(&key_, true); // first record > key
        const key_type before = key_;
        JBTREE_TRY(step_right(idx_ + 1));
        // Keys only ever increase: a damaged node (unsorted keys, links
        // closed into a ring) is reported instead of walked forever.
        if (!end_ && Traits::compare(key_, before) <= 0) return errc::corrupted;
        return errc::ok;
    }
    // Step to the previous record; from at_end() to the last record. Before
    // the first record the cursor goes to at_end().
    [[nodiscard]] errc prev() noexcept {
        if (!t_) return errc::ok;
        if (end_) return seek_last();
        if (t_->gen_ != gen_) {
            // Last record < key: find the first >= key, then step back.
            const key_type k = key_;
            JBTREE_TRY(seek(&k, false));
            if (end_) return seek_last_below(k);
            // Now on the first record >= k: the one before it is the answer.
        }
        if (idx_ > 0) {
            const key_type after = key_;
            (void)land(idx_ - 1);
            return Traits::compare(key_, after) < 0 ? errc::ok : errc::corrupted;
        }
        const std::uint64_t left = header_of(leaf_.data())->left.get();
        if (!left) return go_end();
        // Links must agree and keys keep decreasing, so a damaged link
        // cannot make a backward walk loop.
        auto r = t_->read_neighbour(leaf_, left, false);
        if (!r) return r.error();
        leaf_ = rvalue(*r);
        return land(layout_type::count(leaf_.data()) - 1);
    }

private:
    friend class btree;
    explicit cursor(btree* t) noexcept : t_(t) {}

    errc go_end() noexcept {
        end_ = true;
        leaf_ = buffer{};
        gen_ = t_->gen_;
        return errc::ok;
    }
    errc land(std::uint32_t i) noexcept {
        idx_ = i;
        key_ = t_->key_at(leaf_.data(), true, i);
        end_ = false;
        gen_ = t_->gen_;
        return errc::ok;
    }
    // Stand on entry i of the current leaf, or the first entry of a right
    // sibling if i is past the end.
    errc step_right(std::uint32_t i) noexcept {
        while (i >= layout_type::count(leaf_.data())) {
            const std::uint64_t right = header_of(leaf_.data())->right.get();
            if (!right) return go_end();
            // Links must agree and keys keep increasing (validated leaves
            // are never empty), so a damaged link cannot make a walk loop.
            auto r = t_->read_neighbour(leaf_, right, true);
            if (!r) return r.error();
            leaf_ = rvalue(*r);
            i = 0;
        }
        return land(i);
    }
    errc seek(const key_type* k, bool upper) noexcept {
        if (t_->an_.height == 0) return go_end();
        typename btree::key_bounds b{};
        auto r = t_->descend_to_leaf_ptr(k, &b);
        if (!r) return r.error();
        leaf_ = rvalue(*r);
        const unsigned char* n = leaf_.data();
        const std::uint32_t i = !k ? 0 : upper ? t_->upper_bound_in(n, true, *k) : t_->leaf_lower_bound(n, *k);
        if (i >= layout_type::count(n)) JBTREE_TRY(t_->check_leaf_end(leaf_, b));
        const key_type from = k ? *k : key_type{}; // k may point at key_, which step_right changes
        JBTREE_TRY(step_right(i));
        // The cursor moved forward from k, as asked (a damaged tree could
        // otherwise hand back a key <= k for upper_bound).
        if (k && !end_ && Traits::compare(key_, from) < (upper ? 1 : 0)) return errc::corrupted;
        return errc::ok;
    }
    errc seek_last() noexcept {
        if (t_->an_.height == 0) return go_end();
        auto r = t_->read_node(t_->an_.root, t_->an_.height - 1u);
        if (!r) return r.error();
        buffer node = rvalue(*r);
        typename btree::key_bounds b{};
        for (unsigned l = t_->an_.height - 1u; l > 0; --l) {
            auto c = t_->read_child(node, layout_type::count(node.data()) - 1, l - 1, b);
            if (!c) return c.error();
            node = rvalue(*c);
        }
        leaf_ = rvalue(node);
        return land(layout_type::count(leaf_.data()) - 1);
    }
    // Every record is < k: stand on the last one.
    errc seek_last_below(const key_type& k) noexcept {
        JBTREE_TRY(seek_last());
        if (!end_ && Traits::compare(key_, k) >= 0) return go_end();
        return errc::ok;
    }

    btree* t_ = nullptr;
    buffer leaf_{};
    std::uint32_t idx_ = 0;
    std::uint64_t gen_ = 0;
    key_type key_{};
    bool end_ = true;
};

JBTREE_BTREE_TEMPLATE
template <class F>
errc JBTREE_BTREE::walk(const key_type* lo, const key_type* hi, F& f) noexcept {
    if (an_.height == 0) return errc::ok;
    if (lo && hi && Traits::compare(*lo, *hi) > 0) return errc::ok;
    const std::uint64_t g = gen_;
    auto r = descend_to_leaf_ptr(lo);
    if (!r) return r.error();
    buffer b = rvalue(*r);
    std::uint32_t i = lo ? leaf_lower_bound(b.data(), *lo) : 0;
    key_type last{};
    bool visited = false;
    for (;;) {
        const unsigned char* n = b.data();
        const std::uint32_t cnt = layout_type::count(n);
        for (; i < cnt; ++i) {
            const key_type k = key_at(n, true, i);
            if (hi && Traits::compare(k, *hi) > 0) return errc::ok;
            // Keys only ever increase (a damaged node could otherwise make
            // the walk go round for ever).
            if (visited && Traits::compare(k, last) <= 0) return errc::corrupted;
            last = k;
            visited = true;
            value_type v{};
            JBTREE_TRY(decode_value_at(n, i, v));
            if (!f(static_cast<const key_type&>(k), static_cast<const value_type&>(v))) return errc::ok;
            if (gen_ != g) return errc::invalid; // the callback changed the tree
        }
        const std::uint64_t right = header_of(n)->right.get();
        if (!right) return errc::ok;
        // Sibling links must agree, and keys keep increasing: a damaged link
        // cannot make the walk loop.
        auto nr = read_neighbour(b, right, true);
        if (!nr) return nr.error();
        b = rvalue(*nr);
        i = 0;
    }
}

JBTREE_BTREE_TEMPLATE
template <class F>
errc JBTREE_BTREE::overlap_visit(buffer& node, unsigned level, const key_bounds& b, const key_type& lo,
                                 const key_type& hi, F& f, bool& go_on, std::uint64_t g) noexcept {
    const unsigned char* n = node.data();
    const std::uint32_t cnt = layout_type::count(n);
    const bool leaf = level == 0;
    std::uint32_t i = 0;
    for (; i < cnt && go_on; ++i) {
        const key_type k = key_at(n, leaf, i);
        if (Traits::compare(k, hi) > 0) break; // this and later entries start after hi
        if (leaf) {
            value_type v{};
            JBTREE_TRY(decode_value_at(n, i, v));
            if (Traits::compare(Traits::high_key(k, v), lo) < 0) continue;
            go_on = f(static_cast<const key_type&>(k), static_cast<const value_type&>(v));
            if (gen_ != g) return errc::invalid;
        } else {
            const key_type high = Traits::decode_key(lay_.payload(n, false, i));
            if (Traits::compare(high, lo) < 0) continue; // the whole subtree ends before lo
            key_bounds cb = b;
            auto c = read_child(node, i, level - 1, cb);
            if (!c) return c.error();
            // The entry's high key prunes queries: it must be exactly the
            // child's, or a damaged one would hide records.
            unsigned char want[key_size], got[key_size];
            Traits::encode_key(high, want);
            node_high(c->data(), level == 1, got);
            if (compare_bytes(want, got, key_size) != 0) return fault(c->blkno(), node_fault::bounds);
            JBTREE_TRY(overlap_visit(*c, level - 1, cb, lo, hi, f, go_on, g));
        }
    }
    // Every record of the leaf starts at or before hi: records starting
    // after it up to the next separator would be missed if that separator
    // were too high, so the next leaf must start exactly there.
    if (leaf && i == cnt && go_on) JBTREE_TRY(check_leaf_end(node, b));
    return errc::ok;
}

} // namespace jbtree
