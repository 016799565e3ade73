// SPDX-License-Identifier: MIT
// jbtree: the B+tree engine.
//
//   btree<Traits, Storage, Journal>
//
// One engine for every tree type: Traits says what a record is, Storage
// where blocks live, Journal how changes are made atomic. The engine never
// names a concrete policy.
//
// Shape (docs/design.md has the full story):
//  - B+tree: records only in leaves; leaves doubly linked in key order.
//  - Internal entry i = (key_i, [high_i], child_i) where key_i is exactly the
//    first key of child_i's subtree and high_i (interval mode) exactly the
//    largest high key in it. Keeping both tight makes verify() exact and lets
//    overlap queries prune.
//  - Height <= max_height (8), so every path lives on the stack.
//
// Every mutation runs in two phases. Plan: read every block it will touch
// (validated), allocate every new block, check the handle's credits. Apply:
// get write access, change the pinned buffers, seal and dirty them. A
// failure in the plan phase changes nothing. The apply phase can only fail
// if the journal itself fails (see policy/journal.hpp).
//
// Not thread-safe: the caller serialises access to one tree (as the kernel
// would with a lock per tree).
#pragma once

#include <bit>
#include <concepts>
#include <cstdint>
#include <type_traits>

#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"
#include "jbtree/engine/tree_anchor.hpp"
#include "jbtree/engine/verify_report.hpp"
#include "jbtree/node/header.hpp"
#include "jbtree/node/layout.hpp"
#include "jbtree/node/validate.hpp"
#include "jbtree/policy/block_storage.hpp"
#include "jbtree/policy/journal.hpp"
#include "jbtree/policy/record_traits.hpp"

// The few functions of every lookup's inner loop (reading a node, searching
// it): inlined into the descent, so that a level's bounds and buffer stay in
// registers.
#if defined(__GNUC__) || defined(__clang__)
#define JBTREE_HOT [[gnu::always_inline]] inline
#else
#define JBTREE_HOT inline
#endif
// The reverse, for a rarely taken part of an operation kept in its own
// frame: each frame then stays within the kernel's 2 KiB bound
// (tests/check_kernel_shim.sh), and the common path's frame small.
#if defined(__GNUC__) || defined(__clang__)
#define JBTREE_COLD [[gnu::noinline]]
#else
#define JBTREE_COLD
#endif

namespace jbtree {

// Optional RecordTraits member: a monotone map of keys to integers,
//
//   static std::uint64_t key_rank(const key_type&) noexcept;
//
// with a < b implying key_rank(a) <= key_rank(b) (u64 keys: the key itself;
// an extent key: its start block). The engine uses it only to guess where a
// key lies inside a node (interpolation between the node's bounds); every
// search stays exact whatever the ranks say.
template <class T>
concept RankedKeys = requires(const typename T::key_type& k) {
    { T::key_rank(k) } noexcept -> std::same_as<std::uint64_t>;
};

// Optional RecordTraits member: keys are unsigned 64-bit integers stored
// little-endian in key_size == 8 bytes, ordered as integers,
//
//   static constexpr bool native_u64_keys = true;
//
// (compare(a, b) is then (a > b) - (a < b) and decode_key a load_le). The
// in-node search of a fixed layout then compares the key array's words
// directly (one load and one integer compare per key, which compile to
// conditional moves and flag adds) instead of decoding each key and
// calling compare().
template <class T>
concept NativeU64Keys = std::same_as<typename T::key_type, std::uint64_t> && T::key_size == 8 &&
                        requires { requires T::native_u64_keys; };

template <RecordTraits Traits, BlockStorage Storage, class JournalT>
    requires Journal<JournalT, Storage>
class btree {
public:
    using traits_type = Traits;
    using key_type = typename Traits::key_type;
    using value_type = typename Traits::value_type;
    using storage_type = Storage;
    using journal_type = JournalT;
    using buffer = typename Storage::buffer;
    using handle = typename JournalT::handle;
    using layout_type = node_layout<Traits>;

    static constexpr bool interval = is_interval<Traits>;
    static constexpr bool fixed_values = has_fixed_values<Traits>;
    static constexpr std::uint32_t key_size = layout_type::key_size;
    // Bulk load fill factor limits, in percent.
    static constexpr unsigned min_fill_percent = 10;
    static constexpr unsigned max_fill_percent = 100;

    class cursor;

    // ---- opening --------------------------------------------------------

    // Open the tree described by `anchor` (an empty anchor opens an empty
    // tree). Checks the block size against the record format and validates
    // the root node. Storage and journal must outlive the tree.
    [[nodiscard]] static result<btree> open(Storage& storage, JournalT& journal, const tree_anchor& anchor) noexcept {
        const std::uint32_t bs = storage.block_size();
        if (!valid_block_size(bs)) return errc::invalid;
        btree t(storage, journal, anchor);
        if (!t.lay_.usable()) return errc::invalid; // node too small for these records
        if ((anchor.root == 0) != (anchor.height == 0) || anchor.height > max_height ||
            (anchor.root == 0 && anchor.records != 0))
            return errc::corrupted;
        if (anchor.root) {
            auto r = t.read_node(anchor.root, anchor.height - 1u);
            if (!r) return r.error();
        }
        return t;
    }
    // A new, empty tree with the given id.
    [[nodiscard]] static result<btree> create(Storage& storage, JournalT& journal, std::uint32_t tree_id) noexcept {
        return open(storage, journal, tree_anchor{0, 0, tree_id, 0});
    }

    [[nodiscard]] const tree_anchor& anchor() const noexcept { return an_; }
    [[nodiscard]] std::uint64_t size() const noexcept { return an_.records; }
    [[nodiscard]] bool empty() const noexcept { return an_.records == 0; }
    [[nodiscard]] unsigned height() const noexcept { return an_.height; }
    [[nodiscard]] const layout_type& layout() const noexcept { return lay_; }
    // Bumped by every successful mutation; cursors use it to notice changes.
    [[nodiscard]] std::uint64_t generation() const noexcept { return gen_; }
    // The last damaged node an operation ran into: its block and what was
    // wrong (what == none if there was none). An operation that returns
    // errc::corrupted or errc::bad_checksum because of a node sets it, so a
    // tool can name the block.
    [[nodiscard]] const node_fault_info& last_fault() const noexcept { return fault_; }

    // ---- credits: worst-case blocks dirtied by one operation -------------
    //
    // Per level: the node on the path, one sibling or new node; at the leaf
    // level also the old right neighbour whose left link changes; plus a new
    // root when the tree grows. Computed from the current height.
    [[nodiscard]] std::uint32_t insert_credits() const noexcept { return 2u * effective_height() + 2u; }
    [[nodiscard]] std::uint32_t erase_credits() const noexcept { return 2u * effective_height() + 1u; }
    [[nodiscard]] std::uint32_t assign_credits() const noexcept { return insert_credits(); }

    // ---- lookups ----------------------------------------------------------

    // The value stored under k, or errc::not_found. In interval mode this is
    // the exact-match fast path: it descends by low keys only.
    [[nodiscard]] result<value_type> find(const key_type& k) noexcept {
        if (an_.height == 0) return errc::not_found;
        key_bounds b{};
        auto leaf = descend_to_leaf(k, &b);
        if (!leaf) return leaf.error();
        const unsigned char* n = leaf->data();
        const std::uint32_t i = leaf_lower_bound(n, k, &b);
        if (i == layout_type::count(n)) {
            JBTREE_TRY(check_leaf_end(*leaf, b)); // k lies between this leaf and the next
            return errc::not_found;
        }
        if (Traits::compare(key_at(n, true, i), k) != 0) return errc::not_found;
        value_type v{};
        JBTREE_TRY(decode_value_at(n, i, v));
        return v;
    }
    [[nodiscard]] result<bool> contains(const key_type& k) noexcept {
        auto r = find(k);
        if (r) return true;
        if (r.error() == errc::not_found) return false;
        return r.error();
    }

    // Cursors: positioned at the first record >= k (lower_bound), > k
    // (upper_bound), the first record, or the last record; at end when there
    // is none.
    [[nodiscard]] result<cursor> lower_bound(const key_type& k) noexcept { return seek(&k, false); }
    [[nodiscard]] result<cursor> upper_bound(const key_type& k) noexcept { return seek(&k, true); }
    [[nodiscard]] result<cursor> first() noexcept { return seek(nullptr, false); }
    [[nodiscard]] result<cursor> last() noexcept {
        cursor c(this);
        JBTREE_TRY(c.seek_last());
        return c;
    }

    // Calls f(key, value) for every record with lo <= key <= hi, in order,
    // until f returns false. f must not modify the tree (errc::invalid if it
    // does; the walk stops there).
    template <class F>
    [[nodiscard]] errc for_each(const key_type& lo, const key_type& hi, F&& f) noexcept {
        return walk(&lo, &hi, f);
    }
    template <class F>
    [[nodiscard]] errc for_each(F&& f) noexcept {
        return walk(nullptr, nullptr, f);
    }
    // Number of records with lo <= key <= hi.
    [[nodiscard]] result<std::uint64_t> count(const key_type& lo, const key_type& hi) noexcept {
        std::uint64_t c = 0;
        auto counter = [&c](const key_type&, const value_type&) noexcept {
            ++c;
            return true;
        };
        JBTREE_TRY(walk(&lo, &hi, counter));
        return c;
    }

    // Interval mode: calls f(key, value) for every record whose range
    // [key, high_key(key, value)] overlaps [lo, hi] (in key order), until f
    // returns false. Only subtrees whose [key_i, high_i] overlaps are read.
    template <class F>
        requires interval
    [[nodiscard]] errc for_each_overlapping(const key_type& lo, const key_type& hi, F&& f) noexcept {
        if (an_.height == 0 || Traits::compare(lo, hi) > 0) return errc::ok;
        bool go_on = true;
        const std::uint64_t g = gen_;
        auto root = read_node(an_.root, an_.height - 1u);
        if (!root) return root.error();
        return overlap_visit(*root, an_.height - 1u, key_bounds{}, lo, hi, f, go_on, g);
    }

    // ---- mutations ----------------------------------------------------------

    // Insert a new record; errc::exists if the key is present.
    [[nodiscard]] errc insert(handle& h, const key_type& k, const value_type& v) noexcept {
        return upsert(h, k, v, upsert_mode::insert_only, nullptr);
    }
    // Insert or overwrite; *inserted (if given) tells which happened.
    [[nodiscard]] errc insert_or_assign(handle& h, const key_type& k, const value_type& v,
                                        bool* inserted = nullptr) noexcept {
        return upsert(h, k, v, upsert_mode::either, inserted);
    }
    // Overwrite the value of an existing record; errc::not_found if absent.
    [[nodiscard]] errc assign(handle& h, const key_type& k, const value_type& v) noexcept {
        return upsert(h, k, v, upsert_mode::assign_only, nullptr);
    }
    // Read-modify-write of one record: fn(value_type&) changes the value in
    // place; errc::not_found if the key is absent.
    template <class Fn>
    [[nodiscard]] errc update(handle& h, const key_type& k, Fn&& fn) noexcept {
        auto cur = find(k);
        if (!cur) return cur.error();
        value_type v = *cur;
        fn(v);
        return assign(h, k, v);
    }
    // Remove the record with key k; errc::not_found if absent.
    [[nodiscard]] errc erase(handle& h, const key_type& k) noexcept;

    // Build the tree from n records in strictly increasing key order, filling
    // nodes to fill_percent (10..100). The tree must be empty (errc::not_empty).
    // next(key_type&, value_type&) returns false if the input ends early.
    // Unsorted or short input gives errc::invalid and leaves the tree empty.
    template <class Source>
    [[nodiscard]] errc bulk_load(handle& h, std::uint64_t n, Source&& next, unsigned fill_percent = 100) noexcept;
    // Free every node of the tree (children before parents: forget and free
    // each) and leave it empty, for replacing a tree by a rebuilt one. Reads
    // every node first; errc from the first invalid one, and errc::no_credits
    // if the journal cannot forget that many blocks in this transaction
    // (forgets_left(), when the journal has it); in both cases nothing
    // changes. Uses no credits: no node is written.
    [[nodiscard]] errc destroy(handle& h) noexcept {
        std::uint64_t nodes = 0;
        JBTREE_TRY(for_each_node([&nodes](std::uint64_t, unsigned) noexcept { ++nodes; }));
        if constexpr (requires(const JournalT& j, const handle& ch) {
                          { j.forgets_left(ch) } -> std::convertible_to<std::uint64_t>;
                      }) {
            if (jr_->forgets_left(h) < nodes) return errc::no_credits;
        }
        if (an_.height) JBTREE_TRY(destroy_subtree(h, an_.root, an_.height - 1u));
        an_.root = 0;
        an_.height = 0;
        an_.records = 0;
        ++gen_;
        return errc::ok;
    }

    // Worst-case credits (nodes written) of bulk_load(n, fill_percent); 0 if
    // the arguments are invalid or the tree would be too tall.
    [[nodiscard]] std::uint64_t bulk_load_credits(std::uint64_t n, unsigned fill_percent) const noexcept;

    // ---- checking and statistics -----------------------------------------------

    // Checks every invariant: node validity (headers, checksums, levels, tree
    // id, self block number, layout), key order within and across nodes,
    // internal keys and high keys equal to their subtree's, leaf sibling
    // links, the record count and the anchor. Because keys are strictly
    // increasing across each level and levels are checked, a block reachable
    // twice shows up as a key-order, entry-key or sibling-link problem.
    [[nodiscard]] verify_report verify() noexcept;

    // Reads every node. errc from the first unreadable or invalid node.
    [[nodiscard]] result<tree_stats> stats() noexcept;

    // Calls f(std::uint64_t blkno, unsigned level) for every node, parents
    // before children (depth first, in key order); f may return bool (false
    // stops the walk) or void. Every node is validated as it is read; errc
    // from the first unreadable or invalid one. For ownership checks: which
    // blocks does this tree hold? Recursion depth is the tree's height.
    template <class F>
    [[nodiscard]] errc for_each_node(F&& f) noexcept {
        if (an_.height == 0) return errc::ok;
        bool stop = false;
        auto root = read_node(an_.root, an_.height - 1u);
        if (!root) return root.error();
        return node_walk(*root, an_.height - 1u, key_bounds{}, f, stop);
    }

private:
    friend class cursor;

    // The keys a node may hold, given by the separators above it: its first
    // key is exactly `lo` (an internal entry's key is its subtree's first
    // key) and every key is below `hi`. The root has neither. Checking both
    // on every step down (O(1) per level) means a checksum-valid but wrong
    // separator or child pointer is reported, not followed to a wrong answer.
    //
    // No default member initialisers, so that a path of them costs nothing
    // to make: key_bounds{} is "no bounds"; a plain `key_bounds b;` must be
    // assigned before it is read.
    struct key_bounds {
        key_type lo, hi;
        bool has_lo, has_hi;
        // A descent toward a key of RankedKeys traits (has_where): where the
        // key's rank lies between lo's and hi's, in 1/65536ths (rank_where),
        // computed once when the node is reached and used by both the
        // prefetch and the search of that node.
        bool has_where;
        std::uint32_t where;
    };

    // Called by destroy() after for_each_node has read and checked every
    // node, so plain reads suffice here.
    [[nodiscard]] errc destroy_subtree(handle& h, std::uint64_t blk, unsigned level) noexcept {
        if (level > 0) {
            auto r = read_node(blk, level);
            if (!r) return r.error();
            const unsigned char* n = r->data();
            const std::uint32_t cnt = layout_type::count(n);
            for (std::uint32_t i = 0; i < cnt; ++i) JBTREE_TRY(destroy_subtree(h, child_at(n, i), level - 1));
        }
        JBTREE_TRY(jr_->forget(h, blk));
        return st_->free(blk);
    }

    // f on `node` (blk at level, within bounds b), then on its subtree.
    template <class F>
    [[nodiscard]] errc node_walk(buffer& node, unsigned level, const key_bounds& b, F& f, bool& stop) noexcept {
        const std::uint64_t blk = node.blkno();
        if constexpr (std::is_void_v<decltype(f(blk, level))>) f(blk, level);
        else stop = !static_cast<bool>(f(blk, level));
        if (stop || level == 0) return errc::ok;
        const std::uint32_t cnt = layout_type::count(node.data());
        for (std::uint32_t i = 0; i < cnt && !stop; ++i) {
            key_bounds cb = b;
            auto c = read_child(node, i, level - 1, cb);
            if (!c) return c.error();
            JBTREE_TRY(node_walk(*c, level - 1, cb, f, stop));
        }
        return errc::ok;
    }

    btree(Storage& s, JournalT& j, const tree_anchor& a) noexcept
        : st_(&s), jr_(&j), lay_(s.block_size()), an_(a) {}

    // ---- node access ------------------------------------------------------
    [[nodiscard]] unsigned effective_height() const noexcept { return an_.height ? an_.height : 1u; }

    [[nodiscard]] node_expectation expect(std::uint64_t blkno, unsigned level) const noexcept {
        return node_expectation{blkno, an_.tree_id, level, st_->checksums(), st_->checksum_seed()};
    }
    // Read and validate a node; any fault becomes an error.
    // A buffer from a cache that remembers verification (CheckedBlockBuffer)
    // is fully checked (checksum, structure, contents) once per read from
    // the device; later reads check only what depends on the path that
    // reached it (magic, tree id, level), since a damaged pointer can lead a
    // second time to a block verified as something else. Other buffers are
    // fully checked on every read.
    [[nodiscard]] JBTREE_HOT result<buffer> read_node(std::uint64_t blkno, unsigned level) noexcept {
        return checked_node(st_->read(blkno), blkno, level);
    }
    // The validation half of read_node, for a block read (r) by the caller:
    // read_child() prefetches between the two. (Not a callback: GCC 12 may
    // outline a lambda that only prefetches, find it free of side effects
    // and drop the call, prefetches and all.)
    [[nodiscard]] JBTREE_HOT result<buffer> checked_node(result<buffer>&& r, std::uint64_t blkno,
                                                         unsigned level) noexcept {
        if (!r) return r.error();
        if constexpr (CheckedBlockBuffer<buffer>) {
            // Verified since it was read: only what depends on how it was
            // reached can be wrong now (another tree type or tree, another
            // level: a damaged pointer), and the self number is the block's.
            if (r->checked()) {
                const node_header* h = header_of(r->data());
                if (h->magic.get() != Traits::magic) return fault(blkno, node_fault::magic);
                if (h->tree_id.get() != an_.tree_id) return fault(blkno, node_fault::owner);
                if (h->level.get() != level) return fault(blkno, node_fault::level);
                return rvalue(r);
            }
        }
        const node_fault f = check_node(lay_, r->data(), expect(blkno, level));
        if (f != node_fault::none) return fault(blkno, f);
        if constexpr (CheckedBlockBuffer<buffer>) r->set_checked();
        return rvalue(r);
    }
    // Record what was wrong with which node (last_fault()), as an errc.
    [[nodiscard]] errc fault(std::uint64_t blkno, node_fault f) noexcept {
        fault_ = node_fault_info{blkno, f};
        return to_errc(f);
    }

    // ---- descending with bounds (key_bounds: above) --------------------------
    // The bounds of child i of internal node n, which lies within b.
    [[nodiscard]] JBTREE_HOT key_bounds child_bounds(const unsigned char* n, std::uint32_t i,
                                                     const key_bounds& b) const noexcept {
        key_bounds c;
        c.lo = key_at(n, false, i);
        c.has_lo = true;
        c.has_where = false;
        c.where = 0;
        if (i + 1 < layout_type::count(n)) {
            c.hi = key_at(n, false, i + 1);
            c.has_hi = true;
        } else {
            c.hi = b.hi;
            c.has_hi = b.has_hi;
        }
        return c;
    }
    [[nodiscard]] JBTREE_HOT bool within(const unsigned char* n, bool leaf, const key_bounds& b) const noexcept {
        if constexpr (NativeU64Keys<Traits>) {
            if (!(leaf && layout_type::slotted_leaves)) { // the fixed layout's key array
                const unsigned char* keys = lay_.key(n, leaf, 0);
                if (b.has_lo && load_le<std::uint64_t>(keys) != b.lo) return false;
                return !b.has_hi || load_le<std::uint64_t>(keys + (layout_type::count(n) - 1) * key_size) < b.hi;
            }
        }
        if (b.has_lo && Traits::compare(key_at(n, leaf, 0), b.lo) != 0) return false;
        return !b.has_hi || Traits::compare(key_at(n, leaf, layout_type::count(n) - 1), b.hi) < 0;
    }
    // Read child i of internal node `parent` (at level + 1), whose bounds
    // are `b`; on success b becomes the child's bounds.
    // With k, prefetch what a search for k will read (prefetch_around);
    // with `tail` too, in a leaf also every entry from there to the end (an
    // insert or erase moves them).
    [[nodiscard]] JBTREE_HOT result<buffer> read_child(buffer& parent, std::uint32_t i, unsigned level, key_bounds& b,
                                                       const key_type* k = nullptr, bool tail = false) noexcept {
        const unsigned char* pn = parent.data();
        const std::uint64_t blk = child_at(pn, i);
        key_bounds cb = child_bounds(pn, i, b);
        if constexpr (RankedKeys<Traits>)
            if (k && cb.has_hi && !(level == 0 && layout_type::slotted_leaves)) { // (slotted leaves: no use)
                cb.where = rank_where(Traits::key_rank(*k), Traits::key_rank(cb.lo), Traits::key_rank(cb.hi));
                cb.has_where = true;
            }
        auto raw = st_->read(blk);
        if constexpr (RankedKeys<Traits>)
            if (raw) prefetch_around(static_cast<const unsigned char*>(raw->data()), level, cb, tail);
        auto r = checked_node(rvalue(raw), blk, level);
        if (!r) return r.error();
        b = cb;
        if (!within(r->data(), level == 0, b)) return fault(blk, node_fault::bounds);
        return r;
    }
    // Descending to node n (not read yet, at `level`) for key k: prefetch,
    // with the header, the key and payload lines where interpolation between
    // the node's bounds puts k, for a node as full as the fill model expects
    // at this level. They then arrive with the header instead of one after
    // another; a wrong guess only costs the prefetches.
    JBTREE_HOT void prefetch_around(const unsigned char* n, unsigned level, const key_bounds& b, bool tail) noexcept
        requires RankedKeys<Traits>
    {
        const bool leaf = level == 0;
        if (leaf && layout_type::slotted_leaves) return;
        if (!b.has_where) return;
        const std::uint32_t est =
            fill_.estimate(level, Traits::key_rank(b.hi) - Traits::key_rank(b.lo), lay_.max_entries(leaf));
        if (est <= 2 * rank_window(leaf)) return;
        const std::uint32_t g = at_where(b.where, est);
        const std::uint32_t last = lay_.capacity(leaf) - 1;
        // The keys search() compares first (the guess +- its window and a
        // margin for the count being off), the node's last key (the bounds
        // check), and in a leaf the values around the guess.
        __builtin_prefetch(lay_.key(n, leaf, est - 1));
        if (!leaf) {
            prefetch_keys_around<rank_window(false)>(n, false, g);
            // The child pointers around the guess: the next read depends on
            // one of them, so waiting for its line would add a miss per level.
            constexpr std::uint32_t w = rank_window(false);
            prefetch_window<(2 * w + 1) * layout_type::internal_payload>(lay_.payload(n, false, g > w ? g - w : 0));
            return;
        }
        prefetch_keys_around<rank_window(true)>(n, true, g);
        constexpr std::uint32_t w = rank_window(true), margin = w + w / 2;
        const std::uint32_t from = g > w ? g - w : 0;
        if (tail) {
            const std::uint32_t to = est + w < last ? est + w : last;
            prefetch_lines(lay_.key(n, true, g + margin < last ? g + margin : last), lay_.key(n, true, to));
            prefetch_lines(lay_.payload(n, true, from), lay_.payload(n, true, to));
        } else {
            prefetch_window<(2 * w + 1) * layout_type::payload_field_for(true)>(lay_.payload(n, true, from));
        }
    }
    // The key lines of a search window of W entries either side of guess g,
    // with half a window more for the node's count being off.
    template <std::uint32_t W>
    JBTREE_HOT void prefetch_keys_around(const unsigned char* n, bool leaf, std::uint32_t g) const noexcept {
        constexpr std::uint32_t margin = W + W / 2;
        prefetch_window<(2 * margin + 1) * key_size>(lay_.key(n, leaf, g > margin ? g - margin : 0));
    }
    // Every cache line of [from, to], four lines per loop step (an insert's
    // tail is 16-32 lines: a line per step spent more instructions on the
    // loop than on the prefetches).
    JBTREE_HOT static void prefetch_lines(const unsigned char* from, const unsigned char* to) noexcept {
        // (Addresses as integers, as in prefetch_window: the last step may
        // reach three lines past to, which costs only those prefetches.)
        std::uintptr_t at = reinterpret_cast<std::uintptr_t>(from);
        const std::uintptr_t end = reinterpret_cast<std::uintptr_t>(to);
        for (; at < end; at += 4 * 64) {
            __builtin_prefetch(reinterpret_cast<const void*>(at));
            __builtin_prefetch(reinterpret_cast<const void*>(at + 64));
            __builtin_prefetch(reinterpret_cast<const void*>(at + 128));
            __builtin_prefetch(reinterpret_cast<const void*>(at + 192));
        }
        __builtin_prefetch(to);
    }
    // Every cache line of [from, from + Bytes), unrolled (the count is a
    // constant). Lines past the node's end are harmless: a prefetch never
    // faults.
    template <std::uint32_t Bytes>
    JBTREE_HOT static void prefetch_window(const unsigned char* from) noexcept {
        constexpr std::uint32_t lines = (Bytes + 63) / 64 + 1; // +1: from need not be line-aligned
        // (Addresses as integers: the window may reach past the block, where
        // a pointer may not point.)
        const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(from);
        for (std::uint32_t l = 0; l < lines; ++l) __builtin_prefetch(reinterpret_cast<const void*>(at + 64u * l));
    }
    // A search ran past the last key of `leaf` (within bounds b): what lies
    // beyond is decided by the separators above, so the leaf to the right
    // must start exactly at b.hi (the rightmost leaf has no right link).
    // This catches a separator raised above its child's first key, which
    // would otherwise hide the keys in between.
    [[nodiscard]] errc check_leaf_end(buffer& leaf, const key_bounds& b) noexcept {
        const std::uint64_t right = header_of(leaf.data())->right.get();
        if (!b.has_hi || !right) return b.has_hi || right ? fault(leaf.blkno(), node_fault::siblings) : errc::ok;
        auto r = read_neighbour(leaf, right, true);
        if (!r) return r.error();
        if (Traits::compare(key_at(r->data(), true, 0), b.hi) != 0) return fault(right, node_fault::bounds);
        return errc::ok;
    }
    // Read the leaf `blk` that leaf `from` links to on its right (or left):
    // its link back must name `from`, and its keys must continue `from`'s.
    [[nodiscard]] result<buffer> read_neighbour(buffer& from, std::uint64_t blk, bool right) noexcept {
        auto r = read_node(blk, 0);
        if (!r) return r.error();
        const unsigned char* f = from.data();
        const unsigned char* n = r->data();
        const node_header* h = header_of(n);
        const std::uint64_t back = right ? h->left.get() : h->right.get();
        const bool ordered =
            right ? Traits::compare(key_at(n, true, 0), key_at(f, true, layout_type::count(f) - 1)) > 0
                  : Traits::compare(key_at(n, true, layout_type::count(n) - 1), key_at(f, true, 0)) < 0;
        if (back != from.blkno()) return fault(blk, node_fault::siblings);
        if (!ordered) return fault(blk, node_fault::bounds);
        return r;
    }

    [[nodiscard]] key_type key_at(const unsigned char* n, bool leaf, std::uint32_t i) const noexcept {
        return Traits::decode_key(lay_.key(n, leaf, i));
    }
    [[nodiscard]] std::uint64_t child_at(const unsigned char* n, std::uint32_t i) const noexcept {
        return layout_type::child(lay_.payload(n, false, i));
    }
    [[nodiscard]] errc decode_value_at(const unsigned char* n, std::uint32_t i, value_type& out) const noexcept {
        if constexpr (fixed_values) {
            out = Traits::decode_value(lay_.payload(n, true, i));
            return errc::ok;
        } else {
            return Traits::decode_value(lay_.payload(n, true, i), lay_.payload_len(n, true, i), out)
                       ? errc::ok
                       : errc::corrupted;
        }
    }

    // The first index of node n whose key is >= k (upper == false) or > k
    // (upper == true); count if none.
    //
    // Fixed-width keys whose traits rank them (RankedKeys) and a node whose
    // bounds are known: interpolation. The key's rank between the node's
    // bounds guesses its position; if the answer lies within the window of
    // rank_window(leaf) entries either side of the guess (two independent
    // compares say so), a binary search of that window finishes; otherwise
    // the 4 * rank_window(leaf) keys further on the side the compares point
    // to, then the rest of that side. A good guess touches 2-4 cache lines
    // of a 4 KiB node instead of a chain of 8 dependent probes; a bad one
    // costs two compares and a second search. The answer is exact either
    // way: ranks only choose where to look.
    [[nodiscard]] JBTREE_HOT std::uint32_t search(const unsigned char* n, bool leaf, const key_type& k, bool upper,
                                       const key_bounds* b = nullptr) noexcept {
        const std::uint32_t cnt = layout_type::count(n);
        if (cnt == 0) return 0;
        auto before = [&](std::uint32_t i) noexcept { return key_before(n, leaf, i, k, upper); };
        if constexpr (RankedKeys<Traits>) {
            if (b && !(leaf && layout_type::slotted_leaves) && cnt > 4 * rank_window(false)) {
                if (b->has_where)
                    fill_.learn(header_of(n)->level.get(), cnt, Traits::key_rank(b->hi) - Traits::key_rank(b->lo));
                const std::uint32_t g = rank_guess(n, leaf, cnt, k, *b);
                if (leaf) __builtin_prefetch(lay_.payload(n, true, g < cnt ? g : cnt - 1)); // the value, likely
                // The answer a is in [lo, hi]: first within rank_window of
                // the guess if keys lo-1 and hi say so (independent compares),
                // else rank_window * 4 further on the side they point to,
                // else the rest of that side.
                // The window is the 2w keys [lo, hi) around the guess,
                // moved inside the node at its ends (cnt > 2w here), so that
                // its search takes a fixed number of steps.
                static_assert(4 * rank_window(false) >= 2 * rank_window(true)); // the gate: cnt > 2w
                const std::uint32_t w = rank_window(leaf);
                std::uint32_t lo = g > w ? g - w : 0;
                if (lo > cnt - 2 * w) lo = cnt - 2 * w;
                std::uint32_t hi = lo + 2 * w;
                const bool below = lo > 0 && !before(lo - 1);
                const bool above = hi < cnt && before(hi);
                if constexpr (NativeU64Keys<Traits>)
                    if (!below && !above)
                        return leaf ? bisect_fixed<2 * rank_window(true)>(n, true, k, upper, lo)
                                    : bisect_fixed<2 * rank_window(false)>(n, false, k, upper, lo);
                const std::uint32_t far = 4 * w;
                if (below) { // a <= lo - 1
                    hi = lo - 1;
                    lo = hi > far ? hi - far : 0;
                    if (lo > 0 && !before(lo - 1)) hi = lo - 1, lo = 0;
                } else if (above) { // a >= hi + 1
                    lo = hi + 1;
                    hi = lo + far < cnt ? lo + far : cnt;
                    if (hi < cnt && before(hi)) lo = hi + 1, hi = cnt;
                }
                return bisect(n, leaf, k, upper, lo, hi - lo);
            }
        }
        return bisect(n, leaf, k, upper, 0, cnt);
    }
    // Where k would sit among the cnt keys of node n, within bounds b,
    // interpolated by rank: in [0, cnt].
    //
    // The window: a leaf's random keys stray from their interpolated place
    // by about sqrt(count)/2 entries (a binomial spread: 7 in a 4 KiB u64
    // leaf), so +-8 missed one leaf search in six, each a mispredicted
    // branch and a second search; +-16 misses about one in fifty for one
    // more halving step. Internal entries (first keys of subtrees split
    // evenly) fall at even quantiles: +-8 almost never misses there.
    [[nodiscard]] static constexpr std::uint32_t rank_window(bool leaf) noexcept { return leaf ? 16 : 8; }
    [[nodiscard]] JBTREE_HOT std::uint32_t rank_guess(const unsigned char* n, bool leaf, std::uint32_t cnt,
                                                      const key_type& k, const key_bounds& b) const noexcept
        requires RankedKeys<Traits>
    {
        if (b.has_where) return at_where(b.where, cnt);
        // The node's keys lie in [lo, hi): its bounds from above, or its own
        // first and last keys (the root, the rightmost path).
        const std::uint64_t lo = Traits::key_rank(b.has_lo ? b.lo : key_at(n, leaf, 0));
        const std::uint64_t hi = b.has_hi ? Traits::key_rank(b.hi) : Traits::key_rank(key_at(n, leaf, cnt - 1));
        return at_where(rank_where(Traits::key_rank(k), lo, hi), cnt);
    }
    // Where rank r lies in [lo, hi), in 1/65536ths: 0 at or below lo,
    // 65536 at or above hi. One 32-bit division: both differences are
    // shifted to at most 16 bits first (the kernel has no floating point),
    // which is far finer than a node's entries.
    static constexpr unsigned where_bits = 16;
    [[nodiscard]] JBTREE_HOT static std::uint32_t rank_where(std::uint64_t r, std::uint64_t lo,
                                                             std::uint64_t hi) noexcept {
        if (r <= lo || hi <= lo) return 0;
        if (r >= hi) return 1u << where_bits;
        std::uint64_t span = hi - lo, off = r - lo;
        const int w = static_cast<int>(std::bit_width(span));
        if (w > static_cast<int>(where_bits)) {
            span >>= (w - static_cast<int>(where_bits));
            off >>= (w - static_cast<int>(where_bits));
        }
        if (span == 0) return 0; // cannot happen (w bits kept): keeps the division safe
        return (static_cast<std::uint32_t>(off) << where_bits) / static_cast<std::uint32_t>(span);
    }
    // The index that fraction `where` of cnt evenly spread entries falls on: in [0, cnt].
    [[nodiscard]] JBTREE_HOT static std::uint32_t at_where(std::uint32_t where, std::uint32_t cnt) noexcept {
        return static_cast<std::uint32_t>((std::uint64_t{where} * cnt) >> where_bits);
    }
    // Binary search of the len keys from index base: the answer is in
    // [base, base + len]. Branch-free halving (the comparison selects the
    // next base with a conditional move) with both possible next probes
    // prefetched, so the cache misses of a large node overlap instead of
    // queueing behind mispredicted branches.
    [[nodiscard]] JBTREE_HOT std::uint32_t bisect(const unsigned char* n, bool leaf, const key_type& k, bool upper,
                                       std::uint32_t base, std::uint32_t len) const noexcept {
        const unsigned char* keys = lay_.key(n, leaf, 0);
        const std::size_t stride = leaf && layout_type::slotted_leaves ? 0 : key_size;
        auto before = [&](std::uint32_t i) noexcept { return key_before(n, leaf, i, k, upper); };
        const unsigned char* payloads = stride ? lay_.payload(n, leaf, 0) : nullptr;
        const std::uint32_t pstride = layout_type::payload_field_for(leaf);
        // Halve down to a window of at most linear_window keys, then count the
        // window: its compares do not depend on each other.
        // Integer keys halve all the way (below), prefetching only while the
        // range spans more lines than a search window of search() (whose
        // lines prefetch_around() fetched).
        constexpr std::uint32_t linear_window = NativeU64Keys<Traits> ? 2 * rank_window(true) : 8;
        const bool halved = len > linear_window; // a range that size is likely not in cache yet
        while (len > linear_window) {
            const std::uint32_t half = len / 2;
            if (stride) {
                __builtin_prefetch(keys + (base + half / 2) * stride);
                __builtin_prefetch(keys + (base + half + half / 2) * stride);
                // Near the end the answer is within a few entries: fetch its
                // payload line now, in parallel with the last key line.
                if (len <= 16) __builtin_prefetch(payloads + (base + half) * pstride);
            }
            base = before(base + half - 1) ? base + half : base;
            len -= half;
        }
        if constexpr (NativeU64Keys<Traits>) {
            if (stride) {
                // The answer is within these len keys: after halving a
                // large range, its payload line now, in parallel with the
                // last key lines (the loop above stops before its own
                // payload prefetch for integer keys).
                if (halved && len) __builtin_prefetch(payloads + (base + len / 2) * pstride);
                // Integer keys: keep halving (a load, a compare and a
                // conditional move per step, on lines already fetched).
                while (len > 1) {
                    const std::uint32_t half = len / 2;
                    base = before(base + half - 1) ? base + half : base;
                    len -= half;
                }
                return base + (len && before(base) ? 1u : 0u);
            }
        }
        std::uint32_t ahead = 0;
        for (std::uint32_t i = 0; i < len; ++i) ahead += before(base + i) ? 1u : 0u;
        return base + ahead;
    }
    // bisect() of exactly Len keys from index base (Len a power of two, the
    // keys in a fixed layout's key array): log2(Len) + 1 compares in a loop
    // of constant trip count, so no branch depends on where the key lies.
    template <std::uint32_t Len>
    [[nodiscard]] JBTREE_HOT std::uint32_t bisect_fixed(const unsigned char* n, bool leaf, const key_type& k,
                                                        bool upper, std::uint32_t base) const noexcept {
        static_assert(Len > 0 && (Len & (Len - 1)) == 0);
        // (An addition of the compare's result, not a conditional: unrolled,
        // GCC turns `c ? base + half : base` into branches.)
        for (std::uint32_t half = Len / 2; half > 0; half /= 2)
            base += half * static_cast<std::uint32_t>(key_before(n, leaf, base + half - 1, k, upper));
        return base + static_cast<std::uint32_t>(key_before(n, leaf, base, k, upper));
    }
    // Key i of node n sorts before the answer of a search for k: key < k
    // (upper == false) or key <= k (upper == true).
    [[nodiscard]] JBTREE_HOT bool key_before(const unsigned char* n, bool leaf, std::uint32_t i, const key_type& k,
                                             bool upper) const noexcept {
        if constexpr (NativeU64Keys<Traits>) {
            if (!(leaf && layout_type::slotted_leaves)) { // the fixed layout's key array
                const std::uint64_t x = load_le<std::uint64_t>(lay_.key(n, leaf, i));
                return upper ? x <= k : x < k;
            }
        }
        const int c = Traits::compare(key_at(n, leaf, i), k);
        return upper ? c <= 0 : c < 0;
    }
    [[nodiscard]] JBTREE_HOT std::uint32_t leaf_lower_bound(const unsigned char* n, const key_type& k,
                                                 const key_bounds* b = nullptr) noexcept {
        return search(n, true, k, false, b);
    }
    [[nodiscard]] JBTREE_HOT std::uint32_t upper_bound_in(const unsigned char* n, bool leaf, const key_type& k,
                                               const key_bounds* b = nullptr) noexcept {
        return search(n, leaf, k, true, b);
    }
    // Child to descend into for k: the last entry whose key is <= k (entry 0
    // for keys below the tree's first key).
    [[nodiscard]] JBTREE_HOT std::uint32_t child_index(const unsigned char* n, const key_type& k,
                                            const key_bounds* b = nullptr) noexcept {
        const std::uint32_t i = upper_bound_in(n, false, k, b);
        return i ? i - 1 : 0;
    }

    // Descend to the leaf that holds (or would hold) k; k == nullptr: the
    // leftmost leaf.
    // The leaf's bounds go to *out (if given).
    [[nodiscard]] result<buffer> descend_to_leaf(const key_type& k, key_bounds* out = nullptr) noexcept {
        return descend_to_leaf_ptr(&k, out);
    }
    [[nodiscard]] result<buffer> descend_to_leaf_ptr(const key_type* k, key_bounds* out = nullptr) noexcept {
        auto r = read_node(an_.root, an_.height - 1u);
        if (!r) return r.error();
        buffer node = rvalue(*r);
        key_bounds local;
        key_bounds& b = out ? *out : local;
        b = key_bounds{};
        for (unsigned l = an_.height - 1u; l > 0; --l) {
            auto c = read_child(node, k ? child_index(node.data(), *k, &b) : 0, l - 1, b, k);
            if (!c) return c.error();
            node = rvalue(*c);
        }
        return node;
    }

    // The nodes from the root down to a leaf, with the entry index taken at
    // each level (leaf: the key's lower-bound position).
    // (No default initialisers: descend_path() sets every field of the
    // levels from the root down, and making a path then costs nothing.)
    struct path_level {
        buffer buf;
        std::uint32_t index;
        key_bounds bounds; // of buf's node
    };
    struct path_t {
        path_level lv[max_height];
    };
    [[nodiscard]] errc descend_path(const key_type& k, path_t& p, bool& exact) noexcept {
        key_bounds b{};
        for (unsigned l = an_.height; l-- > 0;) {
            auto r = l + 1 == an_.height ? read_node(an_.root, l)
                                         : read_child(p.lv[l + 1].buf, p.lv[l + 1].index, l, b, &k, true);
            if (!r) return r.error();
            p.lv[l].buf = rvalue(*r);
            p.lv[l].bounds = b;
            const unsigned char* n = p.lv[l].buf.data();
            if (l == 0) {
                const std::uint32_t i = leaf_lower_bound(n, k, &b);
                p.lv[0].index = i;
                exact = i < layout_type::count(n) && Traits::compare(key_at(n, true, i), k) == 0;
                if (i == layout_type::count(n)) JBTREE_TRY(check_leaf_end(p.lv[0].buf, b));
            } else {
                p.lv[l].index = child_index(n, k, &b);
            }
        }
        return errc::ok;
    }
    // A sibling of the path's node at level l (< height - 1): child i of the
    // path's node at level l + 1, checked against that node's bounds.
    [[nodiscard]] result<buffer> read_path_sibling(path_t& p, unsigned l, std::uint32_t i) noexcept {
        key_bounds b = p.lv[l + 1].bounds;
        return read_child(p.lv[l + 1].buf, i, l, b);
    }

    // Largest high key of a node's entries, encoded into out (interval mode).
    void node_high(const unsigned char* n, bool leaf, unsigned char* out) const noexcept
        requires interval
    {
        const std::uint32_t cnt = layout_type::count(n);
        key_type best{};
        for (std::uint32_t i = 0; i < cnt; ++i) {
            key_type hk;
            if (leaf) {
                value_type v{};
                const key_type k = key_at(n, true, i);
                // A value that does not decode counts as covering only its key;
                // verify() reports it. (if constexpr although the function
                // requires interval: clang 14 instantiates it anyway in an
                // explicit instantiation of the class.)
                hk = k;
                if constexpr (interval)
                    if (decode_value_at(n, i, v) == errc::ok) hk = Traits::high_key(k, v);
            } else {
                hk = Traits::decode_key(lay_.payload(n, false, i));
            }
            if (i == 0 || Traits::compare(hk, best) > 0) best = hk;
        }
        Traits::encode_key(best, out);
    }

    // ---- per-operation journaling context ---------------------------------
    //
    // Collects the blocks one operation changes: get_*_access once per block,
    // and at the end stamp, seal and dirty each, then forget and free the
    // blocks the operation released.
    struct op_context {
        static constexpr unsigned max_blocks = 3 * max_height + 4;
        op_context(btree* tree, handle* hd) noexcept : t(tree), h(hd) {}
        btree* t;
        handle* h;
        unsigned ntouched = 0;
        unsigned nfreed = 0;
        // Only [0, ntouched) and [0, nfreed) are ever read: left uninitialised
        // so that starting an operation does not clear them.
        buffer* touched[max_blocks];
        std::uint64_t freed[max_height + 1];

        // Call before changing b.
        [[nodiscard]] errc touch(buffer& b, bool created = false) noexcept {
            for (unsigned i = 0; i < ntouched; ++i)
                if (touched[i]->blkno() == b.blkno()) return errc::ok;
            if (ntouched == max_blocks) return errc::range; // cannot happen: bounded by the credit model
            JBTREE_TRY(created ? t->jr_->get_create_access(*h, b) : t->jr_->get_write_access(*h, b));
            touched[ntouched++] = &b;
            return errc::ok;
        }
        void release(std::uint64_t blkno) noexcept {
            if (nfreed < max_height + 1) freed[nfreed++] = blkno;
        }
        [[nodiscard]] bool is_freed(std::uint64_t blkno) const noexcept {
            for (unsigned i = 0; i < nfreed; ++i)
                if (freed[i] == blkno) return true;
            return false;
        }
        // Stamp, seal and dirty the changed blocks; then release freed ones.
        [[nodiscard]] errc finish() noexcept {
            errc first = errc::ok;
            const std::uint64_t tid = t->jr_->transaction_id(*h);
            for (unsigned i = 0; i < ntouched; ++i) {
                buffer& b = *touched[i];
                if (is_freed(b.blkno())) continue;
                t->seal(b, tid);
                const errc e = t->jr_->dirty_metadata(*h, b);
                if (first == errc::ok) first = e;
            }
            for (unsigned i = 0; i < nfreed; ++i) {
                errc e = t->jr_->forget(*h, freed[i]);
                if (e == errc::ok) e = t->st_->free(freed[i]);
                if (first == errc::ok) first = e;
            }
            return first;
        }
    };

    // Stamp the transaction and seal the checksum: now, or, when the
    // storage seals changed nodes itself (SealDeferringBuffer), once before
    // the block's bytes leave the storage however often it changes first.
    void seal(buffer& b, std::uint64_t tid) noexcept {
        header_of(b.data())->txid.set(tid);
        if (!st_->checksums()) return;
        if constexpr (SealDeferringBuffer<buffer>)
            if (b.defer_seal()) return;
        seal_node(b.data(), lay_.block_size(), st_->checksum_seed());
    }

    // Allocate and format a new node (not yet journaled).
    [[nodiscard]] result<buffer> new_node(unsigned level) noexcept {
        auto r = st_->allocate();
        if (!r) return r.error();
        lay_.init(r->data(), r->blkno(), level, an_.tree_id);
        return rvalue(r);
    }

    // Make parent entry i describe `child` exactly (first key, high key).
    // Returns true if the entry changed.
    [[nodiscard]] result<bool> refresh_entry(op_context& ctx, buffer& parent, std::uint32_t i, const unsigned char* child,
                                             bool child_leaf) noexcept {
        unsigned char* p = parent.data();
        bool changed = false;
        const unsigned char* ck = lay_.key(child, child_leaf, 0);
        unsigned char* pk = lay_.key(p, false, i);
        if (compare_bytes(ck, pk, key_size) != 0) {
            JBTREE_TRY(ctx.touch(parent));
            copy_bytes(pk, ck, key_size);
            changed = true;
        }
        if constexpr (interval) {
            unsigned char hk[key_size];
            node_high(child, child_leaf, hk);
            unsigned char* ph = lay_.payload(p, false, i);
            if (compare_bytes(hk, ph, key_size) != 0) {
                JBTREE_TRY(ctx.touch(parent));
                copy_bytes(ph, hk, key_size);
                changed = true;
            }
        }
        return changed;
    }

    // refresh_entry for one child; `changed` accumulates.
    [[nodiscard]] errc refresh_into(op_context& ctx, buffer& parent, std::uint32_t i, buffer& child, bool child_leaf,
                                    bool& changed) noexcept {
        auto r = refresh_entry(ctx, parent, i, child.data(), child_leaf);
        if (!r) return r.error();
        changed = changed || *r;
        return errc::ok;
    }
    // Above the highest level an operation restructured, only separator keys
    // and high keys can change: carry them up the path while they do.
    [[nodiscard]] errc carry_up(op_context& ctx, path_t& p, unsigned top, unsigned h0, bool changed) noexcept {
        for (unsigned m = top + 1; changed && m + 1 < h0; ++m) {
            auto r = refresh_entry(ctx, p.lv[m + 1].buf, p.lv[m + 1].index, p.lv[m].buf.data(), false);
            if (!r) return r.error();
            changed = *r;
        }
        return errc::ok;
    }

    // Encoded internal entry describing a node.
    struct internal_entry {
        unsigned char key[key_size];
        unsigned char payload[layout_type::internal_payload];
    };
    void describe_node(const buffer& b, bool leaf, internal_entry& e) const noexcept {
        const unsigned char* n = const_cast<buffer&>(b).data();
        // b always holds a node here; without this test GCC 12 (-O2 and up)
        // follows a journal buffer's "no data" path (nullptr) into the copy
        // and warns -Warray-bounds.
        if (!n) {
            fill_bytes(&e, 0, sizeof e);
            return;
        }
        copy_bytes(e.key, lay_.key(n, leaf, 0), key_size);
        if constexpr (interval) node_high(n, leaf, e.payload);
        store_le<std::uint64_t>(e.payload + layout_type::child_offset, const_cast<buffer&>(b).blkno());
    }

    // ---- insertion ------------------------------------------------------------
    enum class upsert_mode : std::uint8_t { insert_only, assign_only, either };
    enum class shape : std::uint8_t { fits, to_left, to_right, split };

    // How one level absorbs a new entry (see plan_level).
    struct level_plan {
        // Fields are set by plan_insert for each level it plans (no default
        // initialisers: an array of these is made per operation).
        shape how;
        std::uint32_t pos; // where the new entry goes among the node's entries
        std::uint32_t cut; // entries [0, cut) of the virtual sequence go left
        buffer sib;            // left/right sibling, or the new right node of a split
        buffer far;            // leaf split: the old right neighbour (left link changes)
        bool has_far;
    };

    // The "virtual sequence" of a level is the node's entries with the new
    // entry inserted at pos. A cut c sends elements [0, c) to the left node
    // and [c, n] to the right one; choose_cut picks the most even valid cut,
    // given what the left and right nodes already hold outside the sequence.
    struct virtual_seq {
        const btree* t;
        const unsigned char* n;
        bool leaf;
        std::uint32_t pos;       // where the new entry sits
        std::uint32_t new_units; // its size
        bool replace;            // the new entry replaces the node's entry at pos
        std::uint32_t size() const noexcept { return layout_type::count(n) + (replace ? 0 : 1); }
        std::uint32_t units(std::uint32_t j) const noexcept {
            if (j == pos) return new_units;
            return t->lay_.entry_units(n, leaf, j < pos || replace ? j : j - 1);
        }
    };
    // Returns 0 when no cut fits.
    [[nodiscard]] std::uint32_t choose_cut(const virtual_seq& s, std::uint32_t base_left, std::uint32_t base_right,
                                           std::uint32_t lo, std::uint32_t hi) const noexcept {
        const std::uint32_t cap = lay_.capacity(s.leaf);
        if (!(s.leaf && layout_type::slotted_leaves)) {
            // One unit per entry: left(c) = base_left + c. Clamp the even cut
            // into the range where both sides fit.
            const std::int64_t total = std::int64_t{base_left} + base_right + s.size();
            std::int64_t first = lo, last = hi;
            if (total - base_left - cap > first) first = total - base_left - cap;
            if (std::int64_t{cap} - base_left < last) last = std::int64_t{cap} - base_left;
            if (first > last) return 0;
            std::int64_t c = (total + 1) / 2 - base_left;
            c = c < first ? first : c > last ? last : c;
            return static_cast<std::uint32_t>(c);
        }
        return choose_cut_slow(s, base_left, base_right, lo, hi);
    }
    [[nodiscard]] std::uint32_t choose_cut_slow(const virtual_seq& s, std::uint32_t base_left,
                                                std::uint32_t base_right, std::uint32_t lo,
                                                std::uint32_t hi) const noexcept {
        const std::uint32_t cap = lay_.capacity(s.leaf);
        std::uint64_t total = base_left + base_right;
        const std::uint32_t n = s.size();
        for (std::uint32_t j = 0; j < n; ++j) total += s.units(j);
        std::uint32_t best = 0;
        std::uint64_t best_diff = ~0ull;
        std::uint64_t left = base_left;
        for (std::uint32_t c = 1; c <= hi && c < n + 1; ++c) {
            left += s.units(c - 1);
            if (c < lo) continue;
            const std::uint64_t right = total - left;
            if (left > cap) break;
            if (right > cap) continue;
            const std::uint64_t diff = left > right ? left - right : right - left;
            if (diff < best_diff) {
                best_diff = diff;
                best = c;
            }
        }
        return best;
    }

    [[nodiscard]] errc upsert(handle& h, const key_type& k, const value_type& v, upsert_mode mode,
                              bool* inserted) noexcept;
    [[nodiscard]] JBTREE_COLD errc upsert_planned(op_context& ctx, path_t& p, bool exact, const unsigned char* ek,
                                                  const unsigned char* ev, std::uint32_t vlen,
                                                  bool* inserted) noexcept;
    [[nodiscard]] errc plan_insert(path_t& p, level_plan* plan, unsigned& top, std::uint32_t leaf_units,
                                   std::uint32_t removed_units, buffer& new_root, std::uint64_t* allocated,
                                   unsigned& nallocated) noexcept;
    void free_unused(std::uint64_t* allocated, unsigned n) noexcept {
        for (unsigned i = 0; i < n; ++i) (void)st_->free(allocated[i]);
    }

    // ---- erase ------------------------------------------------------------------
    enum class fixup : std::uint8_t { none, merge_left, merge_right, borrow_left, borrow_right, drop, collapse, empty };
    struct erase_plan {
        // Set by erase()'s plan for each level it plans (no default initialisers).
        fixup how;
        std::uint32_t pos;   // entry removed from this level's node
        std::uint32_t moved; // borrow: entries moved from the sibling
        buffer sib;  // the sibling merged or borrowed from; drop: the left neighbour leaf
        buffer far;  // a neighbour leaf whose link changes
        bool has_sib, has_far;
    };
    [[nodiscard]] std::uint32_t min_units(bool leaf) const noexcept { return lay_.capacity(leaf) / 2; }

    // ---- traversal helpers ---------------------------------------------------------
    [[nodiscard]] result<cursor> seek(const key_type* k, bool upper) noexcept {
        cursor c(this);
        JBTREE_TRY(c.seek(k, upper));
        return c;
    }
    template <class F>
    [[nodiscard]] errc walk(const key_type* lo, const key_type* hi, F& f) noexcept;
    template <class F>
    [[nodiscard]] errc overlap_visit(buffer& node, unsigned level, const key_bounds& b, const key_type& lo,
                                     const key_type& hi, F& f, bool& go_on, std::uint64_t g) noexcept;

    // ---- bulk load ---------------------------------------------------------------
    struct bulk_level {
        buffer prev, cur;
        bool has_prev = false, has_cur = false;
    };
    [[nodiscard]] std::uint32_t bulk_budget(bool leaf, unsigned fill) const noexcept {
        const std::uint32_t cap = lay_.capacity(leaf);
        std::uint32_t b = static_cast<std::uint32_t>(static_cast<std::uint64_t>(cap) * fill / 100);
        const std::uint32_t floor = leaf ? layout_type::max_entry_units(true) : 2;
        return b < floor ? floor : b;
    }
    [[nodiscard]] errc bulk_append(handle& h, bulk_level* lv, unsigned l, const unsigned char* k,
                                   const unsigned char* p, std::uint32_t plen, unsigned fill) noexcept;
    [[nodiscard]] errc bulk_close(handle& h, bulk_level* lv, unsigned l, buffer& b, unsigned fill) noexcept;
    void bulk_abort(handle& h, bulk_level* lv) noexcept;
    void free_subtree(handle& h, std::uint64_t blk, unsigned level) noexcept;

    // ---- verify ------------------------------------------------------------------
    struct verify_state {
        verify_report* r;
        std::uint64_t prev_leaf = 0;       // last valid leaf visited
        std::uint64_t prev_leaf_right = 0; // its right link
        bool lost_leaves = false;          // a subtree was skipped: do not judge the next link
    };
    // Checks the subtree at blk; on success fills first/high (encoded).
    bool verify_node(verify_state& vs, std::uint64_t blk, unsigned level, const unsigned char* hi_bound,
                     unsigned char* first, unsigned char* high) noexcept;
    errc stats_node(tree_stats& s, std::uint64_t blk, unsigned level) noexcept;

    Storage* st_;
    JournalT* jr_;
    layout_type lay_;
    tree_anchor an_;
    std::uint64_t gen_ = 0;
    node_fault_info fault_{};
    // How many entries a node holds per unit of rank span, per level,
    // learned from the nodes searched: how full prefetch_around() expects
    // the next node at that level to be. A sample is taken from one node in
    // sample_every (a division each), folded into a moving average
    // (1/4 weight), so the estimate itself is one multiplication.
    struct fill_model {
        static constexpr unsigned sample_every = 8;
        // Entries per (span >> shift) unit, 32.32 fixed point (0: nothing learned yet).
        std::uint64_t density[max_height] = {};
        unsigned shift[max_height] = {};
        unsigned countdown[max_height] = {};
        void learn(unsigned level, std::uint32_t c, std::uint64_t s) noexcept {
            if (level >= max_height || s == 0) return;
            if (countdown[level]) {
                --countdown[level];
                return;
            }
            countdown[level] = sample_every - 1;
            std::uint64_t v = s >> shift[level];
            // (Re)start at this span's scale (v in [2^23, 2^24] unless the
            // span is smaller) when nothing is learned or the spans moved
            // far from the scale.
            if (density[level] == 0 || v == 0 || v > (1ull << 32) || (shift[level] && v < (1ull << 16))) {
                const int w = static_cast<int>(std::bit_width(s));
                shift[level] = w > 24 ? static_cast<unsigned>(w - 24) : 0;
                v = s >> shift[level];
                density[level] = 0;
            }
            if (c >= (1u << 24)) return; // not a node's count
            const std::uint64_t sample = (std::uint64_t{c} << 32) / v;
            density[level] = density[level] ? density[level] - density[level] / 4 + sample / 4 : sample;
        }
        [[nodiscard]] std::uint32_t estimate(unsigned level, std::uint64_t s, std::uint32_t most) const noexcept {
            if (level >= max_height || density[level] == 0) return 0;
            std::uint64_t e;
            if (__builtin_mul_overflow(s >> shift[level], density[level], &e)) return most;
            e >>= 32;
            return e > most ? most : static_cast<std::uint32_t>(e);
        }
    };
    fill_model fill_;
};

} // namespace jbtree

#define JBTREE_BTREE_TEMPLATE                                                                                          \
    template <RecordTraits Traits, BlockStorage Storage, class JournalT>                                               \
        requires Journal<JournalT, Storage>
#define JBTREE_BTREE btree<Traits, Storage, JournalT>
#include "jbtree/engine/detail/btree_cursor.hpp"
#include "jbtree/engine/detail/btree_insert.hpp"
#include "jbtree/engine/detail/btree_erase.hpp"
#include "jbtree/engine/detail/btree_bulk.hpp"
#include "jbtree/engine/detail/btree_verify.hpp"
#undef JBTREE_BTREE_TEMPLATE
#undef JBTREE_BTREE
#undef JBTREE_HOT
