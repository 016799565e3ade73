// SPDX-License-Identifier: MIT
// jbtree: the refcount map: shared extent -> number of data owners.
//
//   refcount_map<Storage, Journal>   a typed facade over btree<refcount_traits, ...>
//   refcount_sweep<Source>           rmap -> refcount records, for repair and checking
//
// Only blocks with two or more data owners are stored, as records
// (start, length, refcount >= 2) that never overlap. A block in no record
// has refcount 1, or is free, or belongs to metadata: the map does not
// know which (the rmap does). Which rmap records count as data owners:
// rmap_is_data() (an inode's file data; not special owners, extent-tree or
// xattr blocks). So for every block, its number of data owners in the rmap
// equals refcount_of(block) when it has at least one, and a block with
// fewer than two is in no record. cross_check() tests exactly that.
//
// adjust() changes the count of a range by +1 or -1 (reflink, unshare,
// punch). It can be long (one step per record and gap in the range), so it
// is restartable: it does as many steps as the handle's credits allow and
// returns where it stopped; the caller continues in the next handle (the
// range from `next` on). Between two handles the map is valid and exact
// for the blocks done; only the merge at the stop point may be pending,
// and the continuing call makes it.
//
// Mutations follow the engine's contract: a logical failure (invalid,
// range, no_credits) is found before the first change and changes
// nothing. A resource failure in the middle of a multi-step change (I/O
// error, no free block, a journal abort) can leave the change half made:
// the running transaction must then be aborted, as ext4 aborts a handle
// when jbd2 fails.
//
// On-disk record: docs/format.md §6; operations and checks: docs/maps.md.
#pragma once

#include <cstddef>
#include <cstdint>

#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"
#include "jbtree/engine/btree.hpp"
#include "jbtree/engine/tree_anchor.hpp"
#include "jbtree/maps/extent_source.hpp"
#include "jbtree/maps/map_verify_report.hpp"
#include "jbtree/node/header.hpp"
#include "jbtree/policy/block_storage.hpp"
#include "jbtree/policy/journal.hpp"

namespace jbtree {

struct refcount_value {
    std::uint32_t length = 0;
    std::uint32_t refcount = 0;
    friend constexpr bool operator==(const refcount_value&, const refcount_value&) = default;
};

struct refcount_record {
    std::uint64_t start = 0;    // first block
    std::uint32_t length = 0;   // blocks, >= 1
    std::uint32_t refcount = 0; // data owners, >= 2

    [[nodiscard]] constexpr std::uint64_t last() const noexcept { return start + length - 1; }
    friend constexpr bool operator==(const refcount_record&, const refcount_record&) = default;
};

// Record codec. Key: start le64 (8 bytes); value: length le32 | refcount le32.
struct refcount_traits {
    using key_type = std::uint64_t;
    using value_type = refcount_value;
    static constexpr std::uint32_t magic = 0x4a42'4331; // "JBC1" (bytes on disk 31 43 42 4A)
    static constexpr std::size_t key_size = 8;
    static constexpr std::size_t value_size = 8;

    static void encode_key(const key_type& k, unsigned char* out) noexcept { store_le<std::uint64_t>(out, k); }
    [[nodiscard]] static key_type decode_key(const unsigned char* in) noexcept { return load_le<std::uint64_t>(in); }
    [[nodiscard]] static int compare(const key_type& a, const key_type& b) noexcept { return (a > b) - (a < b); }
    static void encode_value(const value_type& v, unsigned char* out) noexcept {
        store_le<std::uint32_t>(out, v.length);
        store_le<std::uint32_t>(out + 4, v.refcount);
    }
    [[nodiscard]] static value_type decode_value(const unsigned char* in) noexcept {
        return {load_le<std::uint32_t>(in), load_le<std::uint32_t>(in + 4)};
    }
    // A record the map can hold: length >= 1, inside 2^64, refcount >= 2.
    // Checked by the engine on every fresh read of a leaf.
    [[nodiscard]] static bool valid_record(const key_type& k, const value_type& v) noexcept {
        return v.length != 0 && v.length - 1 <= ~0ull - k && v.refcount >= 2;
    }
};

inline constexpr std::uint32_t refcount_max_length = 0xFFFF'FFFFu;
inline constexpr std::uint32_t refcount_max = 0xFFFF'FFFFu;

// Where adjust() stopped: done, or the first block it did not process
// (continue with start = next, len = old end - next).
struct adjust_result {
    bool done = false;
    std::uint64_t next = 0; // when done: start + len (mod 2^64)
};

enum class refcount_problem : std::uint8_t {
    walk_error,   // the record walk failed (error holds why)
    bad_length,   // length 0, or the extent runs past block 2^64-1
    bad_refcount, // refcount below 2
    overlap,      // the record starts inside the previous one (detail: the previous start)
};

[[nodiscard]] constexpr const char* describe(refcount_problem p) noexcept {
    switch (p) {
    case refcount_problem::walk_error: return "record walk failed";
    case refcount_problem::bad_length: return "bad length";
    case refcount_problem::bad_refcount: return "refcount below 2";
    case refcount_problem::overlap: return "records overlap";
    }
    return "unknown problem";
}

using refcount_verify_report = map_verify_report<refcount_problem>;

// ---- the sweep: sorted owner extents -> refcount records ------------------------
//
// Level-triggered, as XFS's repair and xfs_repair rebuild refcounts: walk
// the data extents in start order keeping the end blocks of the extents
// alive at the current point in a min-heap (the caller's sweep_scratch).
// Between two events (an extent starting or ending) the number of data
// owners is constant; every stretch with two or more becomes part of a
// record. Stretches with the same count that touch merge, and a record
// longer than 2^32-1 blocks is cut into pieces of that size from its left
// end. So the output is the map's canonical form: maximal records.
// O(n log d) for n extents and at most d owners of one block.
template <extent_source Src>
class refcount_sweep {
public:
    refcount_sweep(Src& src, sweep_scratch scratch) noexcept : src_(&src), sc_(scratch) {}

    // Start (again) from the first extent.
    [[nodiscard]] errc rewind() noexcept {
        JBTREE_TRY(src_->rewind());
        n_ = 0;
        have_in_ = in_done_ = any_in_ = have_run_ = false;
        x_ = prev_start_ = 0;
        ready_ = true;
        return errc::ok;
    }

    // The next record (in start order); false at the end.
    // errc::invalid: the source is unsorted or has a bad extent;
    // errc::no_memory: more extents alive at one point than the scratch holds;
    // errc::range: more than 2^32-1 data owners of one block.
    [[nodiscard]] result<bool> next(refcount_record& out) noexcept {
        if (!ready_) return errc::invalid;
        for (;;) {
            if (have_run_ && run_last_ - run_start_ >= refcount_max_length) { // longer than a record holds
                out = refcount_record{run_start_, refcount_max_length, run_count_};
                run_start_ += refcount_max_length;
                return true;
            }
            segment s{};
            auto r = next_segment(s);
            if (!r) return r.error();
            if (!*r) {
                if (!have_run_) return false;
                out = run_record();
                have_run_ = false;
                return true;
            }
            const bool shared = s.depth >= 2;
            if (shared && s.depth > refcount_max) return errc::range;
            if (shared && have_run_ && run_count_ == s.depth && run_last_ != ~0ull && run_last_ + 1 == s.start) {
                run_last_ = s.last;
                continue;
            }
            const bool emit = have_run_;
            if (emit) out = run_record();
            have_run_ = shared;
            if (shared) {
                run_start_ = s.start;
                run_last_ = s.last;
                run_count_ = static_cast<std::uint32_t>(s.depth);
            }
            if (emit) return true;
        }
    }

private:
    struct segment {
        std::uint64_t start, last, depth;
    };

    [[nodiscard]] refcount_record run_record() const noexcept {
        return {run_start_, static_cast<std::uint32_t>(run_last_ - run_start_ + 1), run_count_};
    }

    // Look ahead to the next data extent.
    [[nodiscard]] errc fill() noexcept {
        while (!have_in_ && !in_done_) {
            owner_extent e{};
            auto r = src_->next(e);
            if (!r) return r.error();
            if (!*r) {
                in_done_ = true;
                break;
            }
            if (e.length == 0 || e.length - 1 > ~0ull - e.start) return errc::invalid;
            if (any_in_ && e.start < prev_start_) return errc::invalid; // not sorted by start
            any_in_ = true;
            prev_start_ = e.start;
            if (!e.data) continue;
            in_ = e;
            have_in_ = true;
        }
        return errc::ok;
    }

    // The next stretch [start, last] over which the number of live data
    // extents (depth, >= 1) is constant.
    [[nodiscard]] result<bool> next_segment(segment& s) noexcept {
        if (n_ == 0) {
            JBTREE_TRY(fill());
            if (!have_in_) return false;
            x_ = in_.start;
        }
        for (;;) { // every extent starting at x_ goes live
            JBTREE_TRY(fill());
            if (!have_in_ || in_.start != x_) break;
            JBTREE_TRY(push(in_.start + (in_.length - 1)));
            have_in_ = false;
        }
        std::uint64_t last = sc_.ends[0];
        if (have_in_ && in_.start - 1 < last) last = in_.start - 1; // in_.start > x_ here
        s = segment{x_, last, n_};
        while (n_ && sc_.ends[0] == last) pop();
        x_ = last + 1; // wraps only at the end of the block space, with nothing live or left
        return true;
    }

    [[nodiscard]] errc push(std::uint64_t v) noexcept {
        if (n_ >= sc_.capacity || !sc_.ends) return errc::no_memory;
        std::size_t i = n_++;
        while (i > 0) {
            const std::size_t parent = (i - 1) / 2;
            if (sc_.ends[parent] <= v) break;
            sc_.ends[i] = sc_.ends[parent];
            i = parent;
        }
        sc_.ends[i] = v;
        return errc::ok;
    }
    void pop() noexcept {
        const std::uint64_t v = sc_.ends[--n_];
        std::size_t i = 0;
        for (;;) {
            std::size_t c = 2 * i + 1;
            if (c >= n_) break;
            if (c + 1 < n_ && sc_.ends[c + 1] < sc_.ends[c]) ++c;
            if (v <= sc_.ends[c]) break;
            sc_.ends[i] = sc_.ends[c];
            i = c;
        }
        if (n_) sc_.ends[i] = v;
    }

    Src* src_;
    sweep_scratch sc_;
    std::size_t n_ = 0; // live extents (heap size)
    owner_extent in_{}; // lookahead
    bool have_in_ = false, in_done_ = false, any_in_ = false;
    std::uint64_t prev_start_ = 0;
    std::uint64_t x_ = 0; // first block not yet swept (while extents are live)
    bool have_run_ = false;
    std::uint64_t run_start_ = 0, run_last_ = 0;
    std::uint32_t run_count_ = 0;
    bool ready_ = false;
};

// ---- the map ---------------------------------------------------------------------------

template <BlockStorage S, Journal<S> J>
class refcount_map {
public:
    using tree_type = btree<refcount_traits, S, J>;
    using handle = typename J::handle;
    using cursor = typename tree_type::cursor;

    // Default fill of a rebuilt tree: 75 %, XFS's choice for bulk loads
    // ("without any immediate split penalties"), since the map keeps changing.
    static constexpr unsigned default_rebuild_fill = 75;

    // ---- opening ----------------------------------------------------------
    [[nodiscard]] static result<refcount_map> create(S& storage, J& journal, std::uint32_t tree_id) noexcept {
        auto t = tree_type::create(storage, journal, tree_id);
        if (!t) return t.error();
        return refcount_map(rvalue(*t), journal);
    }
    [[nodiscard]] static result<refcount_map> open(S& storage, J& journal, const tree_anchor& anchor) noexcept {
        auto t = tree_type::open(storage, journal, anchor);
        if (!t) return t.error();
        return refcount_map(rvalue(*t), journal);
    }

    [[nodiscard]] const tree_anchor& anchor() const noexcept { return t_.anchor(); }
    [[nodiscard]] tree_type& tree() noexcept { return t_; }
    [[nodiscard]] std::uint64_t size() const noexcept { return t_.size(); }
    [[nodiscard]] bool empty() const noexcept { return t_.empty(); }

    // ---- lookups ------------------------------------------------------------

    // The number of data owners of `block` if it is shared, else 1 (which
    // also stands for "free" and "metadata": ask the rmap).
    [[nodiscard]] result<std::uint32_t> refcount_of(std::uint64_t block) noexcept {
        refcount_record r{};
        bool found = false;
        JBTREE_TRY(covering(block, r, found));
        return found ? r.refcount : 1u;
    }
    // f(const refcount_record&) -> bool (false stops) for every record with
    // a block in [a, b], in order (records are not clipped to [a, b]).
    template <class F>
    [[nodiscard]] errc shared_in(std::uint64_t a, std::uint64_t b, F&& f) noexcept {
        if (a > b) return errc::ok;
        refcount_record r{};
        bool found = false;
        JBTREE_TRY(covering(a, r, found));
        if (found && r.start < a && !f(static_cast<const refcount_record&>(r))) return errc::ok;
        return t_.for_each(a, b, [&f](const std::uint64_t& k, const refcount_value& v) {
            return static_cast<bool>(f(refcount_record{k, v.length, v.refcount}));
        });
    }
    // Every record, in order.
    template <class F>
    [[nodiscard]] errc for_each(F&& f) noexcept {
        return t_.for_each([&f](const std::uint64_t& k, const refcount_value& v) {
            return static_cast<bool>(f(refcount_record{k, v.length, v.refcount}));
        });
    }

    // ---- adjust -----------------------------------------------------------------

    // Credits that let an adjust() starting now make progress: the most one
    // step can cost (a record split at both ends of the range: trim, insert
    // the middle, insert the tail, the tree growing by a level in between).
    [[nodiscard]] std::uint32_t adjust_step_credits() const noexcept {
        const unsigned h0 = t_.height();
        return i_cost(h0) + i_cost(h0) + i_cost(model_height(h0, 1));
    }
    // Credits adjust(start, len, delta) needs to finish in one handle, from
    // a read-only run of the same plan (reads the range's records once).
    // 0 when nothing stored changes (a decrement of blocks in no record):
    // then adjust() needs no credits and adjust_all() no handle.
    // errc::invalid / errc::range as adjust() would give.
    [[nodiscard]] result<std::uint64_t> adjust_credits(std::uint64_t start, std::uint64_t len, int delta) noexcept {
        JBTREE_TRY(check_adjust(start, len, delta));
        const std::uint64_t e = start + (len - 1);
        const unsigned h0 = t_.height();
        std::uint64_t total = 0, inserts = 0, p = start;
        carry c{};
        for (bool first = true;; first = false) {
            step_plan sp{};
            JBTREE_TRY(plan_step(p, e, delta, first, c, sp));
            total += step_cost(sp, h0, inserts);
            inserts += sp.inserts();
            if (sp.q == e) return total;
            c = sp.after;
            p = sp.q + 1;
        }
    }

    // Add delta (+1 or -1) to the refcount of blocks [start, start + len).
    // Records crossing the range's ends are split; gaps (refcount 1) become
    // records of 2 on +1; records dropping to 1 go; afterwards records with
    // equal counts that touch are merged (inside the range and with the
    // neighbours at both ends). On -1, gaps mean 1 -> 0: the blocks lose
    // their last data owner (the caller frees them). -1 can never go below 0:
    // a gap is 1 and a record is at least 2.
    //
    // report(std::uint64_t start, std::uint64_t len, std::uint32_t after) is
    // called, in block order, for each stretch no longer shared: after == 1
    // (a record dropped to 1) or after == 0 (a gap, on -1: now free).
    //
    // Steps are planned one at a time (reads only) and charged against the
    // handle's credits before they change anything; when the next step does
    // not fit, adjust stops there and returns {false, next}. errc::no_credits
    // only if not even the first step fits (nothing done). A count that
    // would pass 2^32-1 gives errc::range when its step comes first, else
    // the call stops before it ({false, next}).
    template <class Report>
    [[nodiscard]] result<adjust_result> adjust(handle& h, std::uint64_t start, std::uint64_t len, int delta,
                                               Report&& report) noexcept {
        JBTREE_TRY(check_adjust(start, len, delta));
        const std::uint64_t e = start + (len - 1);
        const unsigned h0 = t_.height();
        const std::uint32_t have = j_->credits_left(h);
        std::uint64_t budget = have == unlimited_credits ? ~0ull : have;
        std::uint64_t inserts = 0, p = start;
        carry c{};
        for (bool first = true;; first = false) {
            step_plan sp{};
            const errc pe = plan_step(p, e, delta, first, c, sp);
            if (pe == errc::range && !first) return adjust_result{false, p};
            JBTREE_TRY(pe);
            const std::uint64_t cost = step_cost(sp, h0, inserts);
            if (cost > budget) {
                if (first) return errc::no_credits;
                return adjust_result{false, p};
            }
            JBTREE_TRY(apply_step(h, sp));
            budget -= cost;
            inserts += sp.inserts();
            if (sp.report) report(sp.p, sp.q - sp.p + 1, sp.newc);
            if (sp.q == e) return adjust_result{true, e + 1};
            c = sp.after;
            p = sp.q + 1;
        }
    }
    [[nodiscard]] result<adjust_result> adjust(handle& h, std::uint64_t start, std::uint64_t len, int delta) noexcept {
        return adjust(h, start, len, delta, [](std::uint64_t, std::uint64_t, std::uint32_t) noexcept {});
    }

    // The whole range, in as many handles as it takes (each one atomic, the
    // whole not): in_handle(credits, step) must start a handle of `credits`,
    // call step(handle) -> errc, stop the handle and return the first error
    // (as errc or a negative int). Each handle asks for what the rest of the
    // range needs, capped at max_credits (what one handle may hold), and
    // never for 0: when the rest writes nothing, no handle is started.
    template <class InHandle>
    [[nodiscard]] errc adjust_all(std::uint64_t start, std::uint64_t len, int delta, std::uint64_t max_credits,
                                  InHandle&& in_handle) noexcept {
        for (std::uint64_t at = start, end = start + len;;) {
            auto need = adjust_credits(at, end - at, delta);
            if (!need) return need.error();
            // Nothing to write (a decrement of unshared blocks): no handle.
            if (*need == 0) return errc::ok;
            bool done = false;
            const errc e = static_cast<errc>(in_handle(*need < max_credits ? *need : max_credits, [&](handle& h) noexcept {
                auto a = adjust(h, at, end - at, delta);
                if (!a) return a.error();
                done = a->done;
                at = a->next;
                return errc::ok;
            }));
            if (e != errc::ok || done) return e;
        }
    }

    // ---- rebuild and cross-check from an rmap ----------------------------------------

    // Records the sweep of `src` produces (the n for rebuild_from_rmap).
    template <extent_source Src>
    [[nodiscard]] static result<std::uint64_t> rebuild_count(Src& src, sweep_scratch scratch) noexcept {
        refcount_sweep<Src> sw(src, scratch);
        JBTREE_TRY(sw.rewind());
        std::uint64_t n = 0;
        for (refcount_record r{};;) {
            auto m = sw.next(r);
            if (!m) return m.error();
            if (!*m) return n;
            ++n;
        }
    }
    // Credits rebuild_from_rmap(n records, fill) needs (0: impossible).
    [[nodiscard]] std::uint64_t rebuild_credits(std::uint64_t n, unsigned fill = default_rebuild_fill) const noexcept {
        return n ? t_.bulk_load_credits(n, fill) : 0;
    }
    // Fill this (empty) map from a sweep of `src` (e.g. rmap::extents()):
    // the records where two or more data extents overlap, bulk-loaded in
    // one pass at `fill` percent. `n` from rebuild_count() on the same
    // source; if the source now gives a different number of records, the
    // load fails with errc::invalid and the map stays empty. For repair:
    // build into a new tree (another tree id) beside the damaged one, then
    // switch the anchors in one transaction.
    // errc::not_empty, errc::no_credits (fewer than rebuild_credits()), and
    // the sweep's errors.
    template <extent_source Src>
    [[nodiscard]] errc rebuild_from_rmap(handle& h, Src& src, sweep_scratch scratch, std::uint64_t n,
                                         unsigned fill = default_rebuild_fill) noexcept {
        if (!t_.empty()) return errc::not_empty;
        refcount_sweep<Src> sw(src, scratch);
        JBTREE_TRY(sw.rewind());
        refcount_record extra{};
        if (n == 0) {
            auto m = sw.next(extra);
            if (!m) return m.error();
            return *m ? errc::invalid : errc::ok;
        }
        errc serr = errc::ok;
        std::uint64_t produced = 0;
        const errc e = t_.bulk_load(
            h, n,
            [&](std::uint64_t& k, refcount_value& v) noexcept {
                refcount_record r{};
                auto m = sw.next(r);
                if (!m) {
                    serr = m.error();
                    return false;
                }
                if (!*m) return false;
                k = r.start;
                v = refcount_value{r.length, r.refcount};
                if (++produced == n) { // the source must end here
                    auto more = sw.next(extra);
                    if (!more || *more) {
                        serr = more ? errc::invalid : more.error();
                        return false;
                    }
                }
                return true;
            },
            fill);
        return e != errc::ok && serr != errc::ok ? serr : e;
    }

    // Compare the map with the refcounts a sweep of `src` implies, block by
    // block (so records cut or merged differently still agree). For every
    // stretch that differs: f(std::uint64_t start, std::uint64_t len,
    // std::uint32_t expected, std::uint32_t actual), with 1 standing for "no
    // record" on either side. Returns the number of such stretches.
    template <extent_source Src, class F>
    [[nodiscard]] result<std::uint64_t> cross_check(Src& src, sweep_scratch scratch, F&& f) noexcept {
        refcount_sweep<Src> sw(src, scratch);
        JBTREE_TRY(sw.rewind());
        auto cr = t_.first();
        if (!cr) return cr.error();
        cursor cur = rvalue(*cr);
        refcount_record E{}, A{};
        bool has_e = false, has_a = false;
        std::uint64_t x = 0, mismatches = 0;
        // Next record of each side that ends at or after x.
        auto pull_e = [&]() noexcept -> errc {
            for (;;) {
                auto m = sw.next(E);
                if (!m) return m.error();
                has_e = *m;
                if (!has_e || E.last() >= x) return errc::ok;
            }
        };
        auto pull_a = [&]() noexcept -> errc {
            for (;;) {
                if (cur.at_end()) {
                    has_a = false;
                    return errc::ok;
                }
                JBTREE_TRY(load(cur, A));
                JBTREE_TRY(cur.next());
                has_a = true;
                if (A.last() >= x) return errc::ok;
            }
        };
        JBTREE_TRY(pull_e());
        JBTREE_TRY(pull_a());
        while (has_e || has_a) {
            const bool in_e = has_e && E.start <= x, in_a = has_a && A.start <= x;
            std::uint64_t last = ~0ull;
            if (has_e) last = min(last, in_e ? E.last() : E.start - 1);
            if (has_a) last = min(last, in_a ? A.last() : A.start - 1);
            const std::uint32_t ec = in_e ? E.refcount : 1u, ac = in_a ? A.refcount : 1u;
            if (ec != ac) {
                f(x, last - x + 1, ec, ac);
                ++mismatches;
            }
            if (last == ~0ull) break;
            x = last + 1;
            if (in_e && E.last() < x) JBTREE_TRY(pull_e());
            if (in_a && A.last() < x) JBTREE_TRY(pull_a());
        }
        return mismatches;
    }

    // ---- checking ------------------------------------------------------------------------

    // The engine's verify(), then (if the structure is sound) every record:
    // length >= 1 and inside the block space, refcount >= 2, no overlap with
    // the previous record. `mergeable` counts touching records with equal
    // counts (0 after complete adjusts; an adjust stopped between handles
    // may leave one at its stop point: not an error).
    [[nodiscard]] refcount_verify_report verify() noexcept {
        refcount_verify_report rep{};
        rep.tree = t_.verify();
        if (!rep.tree.clean()) return rep;
        refcount_record prev{};
        bool has_prev = false;
        const errc e = t_.for_each([&](const std::uint64_t& k, const refcount_value& v) {
            const refcount_record r{k, v.length, v.refcount};
            ++rep.records;
            if (r.length == 0 || r.last() < r.start) {
                rep.add(refcount_problem::bad_length, r.start);
                return true;
            }
            if (r.refcount < 2) rep.add(refcount_problem::bad_refcount, r.start, r.refcount);
            if (has_prev && prev.last() >= r.start) rep.add(refcount_problem::overlap, r.start, prev.start);
            else if (has_prev && prev.last() + 1 == r.start && prev.refcount == r.refcount &&
                     std::uint64_t{prev.length} + r.length <= refcount_max_length)
                ++rep.mergeable;
            prev = r;
            has_prev = true;
            return true;
        });
        if (e != errc::ok) rep.add(refcount_problem::walk_error, 0, 0, e);
        return rep;
    }
    [[nodiscard]] result<tree_stats> stats() noexcept { return t_.stats(); }

private:
    refcount_map(tree_type&& t, J& j) noexcept : t_(rvalue(t)), j_(&j) {}

    [[nodiscard]] static constexpr std::uint64_t min(std::uint64_t a, std::uint64_t b) noexcept { return a < b ? a : b; }

    [[nodiscard]] static errc check_adjust(std::uint64_t start, std::uint64_t len, int delta) noexcept {
        if (len == 0 || len - 1 > ~0ull - start || (delta != 1 && delta != -1)) return errc::invalid;
        return errc::ok;
    }

    // The record under a cursor; a record that breaks the map's rules is
    // corruption (the node checks cannot see inside values).
    [[nodiscard]] static errc load(cursor& c, refcount_record& r) noexcept {
        auto v = c.value();
        if (!v) return v.error();
        r = refcount_record{c.key(), v->length, v->refcount};
        if (r.length == 0 || r.last() < r.start || r.refcount < 2) return errc::corrupted;
        return errc::ok;
    }
    // The record covering `block`, if any.
    [[nodiscard]] errc covering(std::uint64_t block, refcount_record& r, bool& found) noexcept {
        found = false;
        auto c = t_.upper_bound(block);
        if (!c) return c.error();
        JBTREE_TRY(c->prev());
        if (c->at_end()) return errc::ok;
        JBTREE_TRY(load(*c, r));
        found = r.last() >= block;
        return errc::ok;
    }

    // ---- the adjust plan ----------------------------------------------------------
    //
    // One step handles one piece of the range: the part of one record, or
    // one gap (capped at 2^32-1 blocks on +1). Its tree operations, in the
    // order they run: erase the record (it merges left or drops to 1) and,
    // at the range's end, the record right after it (it merges); trim a
    // record sticking out on the left (assign, same key); write the piece
    // (assign: in place, or into the left neighbour; insert: a new key);
    // insert the part of a record sticking out on the right.

    struct carry { // the record ending right before the next piece, after this step
        bool has = false;
        refcount_record rec{};
    };
    enum class out_op : std::uint8_t { none, assign, insert };
    struct step_plan {
        std::uint64_t p = 0, q = 0;   // the piece [p, q]
        std::uint32_t newc = 0;       // its count afterwards (0, 1: no record)
        bool report = false;          // newc < 2: report it
        unsigned nerase = 0;
        std::uint64_t erase[2] = {0, 0};
        bool head = false;
        refcount_record head_rec{};
        out_op out = out_op::none;
        refcount_record out_rec{};
        bool tail = false;
        refcount_record tail_rec{};
        carry after{};
        [[nodiscard]] std::uint64_t inserts() const noexcept {
            return (out == out_op::insert ? 1u : 0u) + (tail ? 1u : 0u);
        }
    };

    [[nodiscard]] errc plan_step(std::uint64_t p, std::uint64_t e, int delta, bool first, const carry& in,
                                 step_plan& sp) noexcept {
        sp = step_plan{};
        sp.p = p;
        // The first record starting after p, the record covering p (R) and,
        // for the first step, the record ending at p - 1 (later steps carry it).
        auto cr = t_.upper_bound(p);
        if (!cr) return cr.error();
        cursor& c = *cr;
        const bool has_next = !c.at_end();
        refcount_record next{};
        if (has_next) JBTREE_TRY(load(c, next));
        // upper_bound(p) starts after p: anything else is a damaged tree,
        // and following it could make the plan go backwards.
        if (has_next && next.start <= p) return errc::corrupted;
        JBTREE_TRY(c.prev());
        carry left = first ? carry{} : in;
        bool has_r = false;
        refcount_record R{};
        if (!c.at_end()) {
            refcount_record C{};
            JBTREE_TRY(load(c, C));
            if (C.start > p) return errc::corrupted; // the record before upper_bound(p) starts after p
            if (C.last() >= p) {
                R = C;
                has_r = true;
            } else if (first && p && C.last() == p - 1) {
                left = carry{true, C};
            }
            if (has_r && first && R.start == p && p) {
                JBTREE_TRY(c.prev());
                if (!c.at_end()) {
                    refcount_record L{};
                    JBTREE_TRY(load(c, L));
                    if (L.last() == p - 1) left = carry{true, L};
                }
            }
        }
        if (has_r) {
            const std::uint32_t c0 = R.refcount;
            if (delta > 0 && c0 == refcount_max) return errc::range;
            const std::uint32_t c1 = delta > 0 ? c0 + 1 : c0 - 1;
            sp.q = min(R.last(), e);
            const std::uint64_t n = sp.q - p + 1; // <= R.length
            const bool head = R.start < p;         // only in the first step
            const bool tail = R.last() > sp.q;     // only in the last step
            sp.newc = c1;
            if (head) {
                sp.head = true;
                sp.head_rec = refcount_record{R.start, static_cast<std::uint32_t>(p - R.start), c0};
            }
            if (c1 >= 2) {
                if (!head && left.has && left.rec.refcount == c1 && left.rec.length + n <= refcount_max_length) {
                    sp.erase[sp.nerase++] = R.start;
                    sp.out = out_op::assign;
                    sp.out_rec = refcount_record{left.rec.start, static_cast<std::uint32_t>(left.rec.length + n), c1};
                } else {
                    sp.out = head ? out_op::insert : out_op::assign; // without a head, R's own key
                    sp.out_rec = refcount_record{p, static_cast<std::uint32_t>(n), c1};
                }
            } else {
                if (!head) sp.erase[sp.nerase++] = R.start;
                sp.report = true;
            }
            if (tail) {
                sp.tail = true;
                sp.tail_rec = refcount_record{sp.q + 1, static_cast<std::uint32_t>(R.last() - sp.q), c0};
            }
        } else {
            sp.q = min(has_next ? next.start - 1 : ~0ull, e);
            if (delta > 0) {
                if (sp.q - p >= refcount_max_length) sp.q = p + (refcount_max_length - 1);
                const std::uint64_t n = sp.q - p + 1;
                sp.newc = 2;
                if (left.has && left.rec.refcount == 2 && left.rec.length + n <= refcount_max_length) {
                    sp.out = out_op::assign;
                    sp.out_rec = refcount_record{left.rec.start, static_cast<std::uint32_t>(left.rec.length + n), 2};
                } else {
                    sp.out = out_op::insert;
                    sp.out_rec = refcount_record{p, static_cast<std::uint32_t>(n), 2};
                }
            } else {
                sp.newc = 0;
                sp.report = true;
            }
        }
        // At the range's end: merge with the record right after it.
        if (sp.q == e && sp.out != out_op::none && !sp.tail && has_next && e != ~0ull && next.start == e + 1 &&
            next.refcount == sp.out_rec.refcount &&
            std::uint64_t{sp.out_rec.length} + next.length <= refcount_max_length) {
            sp.erase[sp.nerase++] = next.start;
            sp.out_rec.length += next.length;
        }
        sp.after = sp.out != out_op::none ? carry{true, sp.out_rec} : carry{};
        return errc::ok;
    }

    [[nodiscard]] errc apply_step(handle& h, const step_plan& sp) noexcept {
        for (unsigned i = 0; i < sp.nerase; ++i) JBTREE_TRY(t_.erase(h, sp.erase[i]));
        if (sp.head)
            JBTREE_TRY(t_.assign(h, sp.head_rec.start, refcount_value{sp.head_rec.length, sp.head_rec.refcount}));
        const refcount_value ov{sp.out_rec.length, sp.out_rec.refcount};
        if (sp.out == out_op::assign) JBTREE_TRY(t_.assign(h, sp.out_rec.start, ov));
        else if (sp.out == out_op::insert) JBTREE_TRY(t_.insert(h, sp.out_rec.start, ov));
        if (sp.tail)
            JBTREE_TRY(t_.insert(h, sp.tail_rec.start, refcount_value{sp.tail_rec.length, sp.tail_rec.refcount}));
        return errc::ok;
    }

    // ---- the credit model ------------------------------------------------------------
    //
    // An operation at height H costs at most 2H+1 (erase) or 2H+2 (insert,
    // assign) credits (H at least 1), the engine's own figures. Erases and
    // assigns never grow the tree; inserts can, but only a full root splits
    // and a new root starts with two entries, so after the first growth the
    // height rises at most once per (capacity - 1) further inserts, where
    // capacity is the smaller of leaf and internal node capacity. Each step
    // is charged at that bound for the inserts before it, so the model
    // (and therefore where adjust stops) does not depend on how the tree
    // actually splits, and adjust_credits() matches adjust() exactly.
    [[nodiscard]] unsigned model_height(unsigned h0, std::uint64_t inserts_before) const noexcept {
        if (inserts_before == 0) return h0;
        const std::uint32_t lc = t_.layout().capacity(true), ic = t_.layout().capacity(false);
        const std::uint64_t d = (lc < ic ? lc : ic) - 1; // >= 2 for any usable layout
        const std::uint64_t h = h0 + 1 + (inserts_before - 1) / d;
        return h > max_height ? max_height : static_cast<unsigned>(h);
    }
    [[nodiscard]] static std::uint32_t e_cost(unsigned H) noexcept { return 2u * (H ? H : 1u) + 1u; }
    [[nodiscard]] static std::uint32_t i_cost(unsigned H) noexcept { return 2u * (H ? H : 1u) + 2u; }
    [[nodiscard]] std::uint64_t step_cost(const step_plan& sp, unsigned h0, std::uint64_t inserts) const noexcept {
        std::uint64_t c = 0;
        for (unsigned i = 0; i < sp.nerase; ++i) c += e_cost(model_height(h0, inserts));
        if (sp.head) c += i_cost(model_height(h0, inserts)); // assign costs what an insert does
        if (sp.out != out_op::none) c += i_cost(model_height(h0, inserts));
        if (sp.out == out_op::insert) ++inserts;
        if (sp.tail) c += i_cost(model_height(h0, inserts));
        return c;
    }

    tree_type t_;
    J* j_;
};

} // namespace jbtree
