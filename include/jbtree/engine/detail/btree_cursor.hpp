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
        auto r = t_->read_node(left, 0);
        if (!r) return r.error();
        // Links must agree and keys keep decreasing, so a damaged link
        // cannot make a backward walk loop.
        const std::uint32_t lcnt = layout_type::count(r->data());
        if (header_of(r->data())->right.get() != leaf_.blkno() ||
            Traits::compare(t_->key_at(r->data(), true, lcnt - 1), t_->key_at(leaf_.data(), true, 0)) >= 0)
            return errc::corrupted;
        leaf_ = rvalue(*r);
        return land(lcnt - 1);
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
            auto r = t_->read_node(right, 0);
            if (!r) return r.error();
            // Links must agree and keys keep increasing (validated leaves
            // are never empty), so a damaged link cannot make a walk loop.
            const std::uint32_t cnt = layout_type::count(leaf_.data());
            if (header_of(r->data())->left.get() != leaf_.blkno() ||
                Traits::compare(t_->key_at(r->data(), true, 0), t_->key_at(leaf_.data(), true, cnt - 1)) <= 0)
                return errc::corrupted;
            leaf_ = rvalue(*r);
            i = 0;
        }
        return land(i);
    }
    errc seek(const key_type* k, bool upper) noexcept {
        if (t_->an_.height == 0) return go_end();
        auto r = t_->descend_to_leaf_ptr(k);
        if (!r) return r.error();
        leaf_ = rvalue(*r);
        const unsigned char* n = leaf_.data();
        const std::uint32_t i = !k ? 0 : upper ? t_->upper_bound_in(n, true, *k) : t_->leaf_lower_bound(n, *k);
        return step_right(i);
    }
    errc seek_last() noexcept {
        if (t_->an_.height == 0) return go_end();
        std::uint64_t blk = t_->an_.root;
        for (unsigned l = t_->an_.height; l-- > 1;) {
            auto r = t_->read_node(blk, l);
            if (!r) return r.error();
            blk = t_->child_at(r->data(), layout_type::count(r->data()) - 1);
        }
        auto r = t_->read_node(blk, 0);
        if (!r) return r.error();
        leaf_ = rvalue(*r);
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
        auto nr = read_node(right, 0);
        if (!nr) return nr.error();
        // Sibling links must agree, and keys keep increasing: a damaged link
        // cannot make the walk loop.
        if (header_of(nr->data())->left.get() != b.blkno() ||
            Traits::compare(key_at(nr->data(), true, 0), key_at(n, true, cnt - 1)) <= 0)
            return errc::corrupted;
        b = rvalue(*nr);
        i = 0;
    }
}

JBTREE_BTREE_TEMPLATE
template <class F>
errc JBTREE_BTREE::overlap_visit(std::uint64_t blk, unsigned level, const key_type& lo, const key_type& hi, F& f,
                                 bool& go_on, std::uint64_t g) noexcept {
    auto r = read_node(blk, level);
    if (!r) return r.error();
    const unsigned char* n = r->data();
    const std::uint32_t cnt = layout_type::count(n);
    const bool leaf = level == 0;
    for (std::uint32_t i = 0; i < cnt && go_on; ++i) {
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
            JBTREE_TRY(overlap_visit(child_at(n, i), level - 1, lo, hi, f, go_on, g));
        }
    }
    return errc::ok;
}

} // namespace jbtree
