// SPDX-License-Identifier: MIT
// jbtree: the reverse map (rmap): physical block range -> owner.
//
//   rmap<Storage, Journal>   a typed facade over btree<rmap_traits, ...>
//
// One record per (range, owner, logical offset): a block shared by several
// owners (reflink, a shared xattr block) has one record per owner, and a
// block one file maps at several logical offsets (a clone or dedupe
// inside the file) one record per offset. Records are keyed by
// (start, owner, offset), like XFS's rmapbt, and the tree runs in interval
// mode (high key = (start + length - 1, max, max)) so that "who owns blocks
// [a, b]?" reads only subtrees that can overlap. All tree work is the
// engine's: this file has the record codec and the domain operations.
//
// Owners are inode numbers, or one of the special owners below (values
// near 2^64, like XFS's negative owners). Offsets are the logical block in
// the owner; they mean nothing for special owners and extent-tree (bmbt)
// blocks, which store 0 ("offset-less" records).
//
// Mutations run in a journal handle and follow the engine's contract: the
// arguments, the handle's credits and every read are checked before the
// first change, so a logical failure (invalid, exists, not_found,
// no_credits) changes nothing. A resource failure in the middle of a
// multi-step change (I/O error, no free block, a journal abort) can leave
// the change half made: the running transaction must then be aborted, as
// ext4 aborts a handle when jbd2 fails.
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
#include "jbtree/policy/block_storage.hpp"
#include "jbtree/policy/journal.hpp"

namespace jbtree {

// ---- owners and flags --------------------------------------------------------

struct rmap_owner {
    // Owners >= special_base are not inodes. Only the values named below
    // are valid; the rest of the range is reserved.
    static constexpr std::uint64_t special_base = 0xFFFF'FFFF'FFFF'FF00ull;
    static constexpr std::uint64_t none = ~0ull;             // never stored (a query bound)
    static constexpr std::uint64_t fs = ~0ull - 1;           // superblock (and backups), group descriptors
    static constexpr std::uint64_t reserved_gdt = ~0ull - 2; // reserved GDT blocks (online resize)
    static constexpr std::uint64_t bitmaps = ~0ull - 3;      // block and inode bitmaps
    static constexpr std::uint64_t inode_table = ~0ull - 4;  // inode tables
    static constexpr std::uint64_t journal = ~0ull - 5;      // the journal (ext4's inode 8, a jbtree volume's log)
    static constexpr std::uint64_t jbtree = ~0ull - 6;       // nodes of the maps themselves
    static constexpr std::uint64_t unknown = ~0ull - 7;      // in use, owner unknown or other (e.g. MMP, found by a scan)
    static constexpr std::uint64_t lowest_special = unknown;

    [[nodiscard]] static constexpr bool is_special(std::uint64_t o) noexcept { return o >= special_base; }
    [[nodiscard]] static constexpr bool is_inode(std::uint64_t o) noexcept { return o != 0 && o < special_base; }
    // May be stored in a record: an inode (not 0) or a named special owner.
    [[nodiscard]] static constexpr bool valid(std::uint64_t o) noexcept {
        return is_inode(o) || (o >= lowest_special && o != none);
    }
};

struct rmap_flags {
    static constexpr std::uint32_t xattr = 1u;     // an extended-attribute block of the owner
    static constexpr std::uint32_t bmbt = 2u;      // a mapping block of the owner (ext4 extent-tree block)
    static constexpr std::uint32_t unwritten = 4u; // data extent allocated but unwritten
    static constexpr std::uint32_t all = 7u;
};

// Offset-less records (special owners, bmbt blocks) store offset 0, and
// merge or match without regard to logical offsets.
[[nodiscard]] constexpr bool rmap_offsetless(std::uint64_t owner, std::uint32_t flags) noexcept {
    return rmap_owner::is_special(owner) || (flags & rmap_flags::bmbt) != 0;
}
// Does this record count as a data owner for the refcount map? An inode's
// file data (written or not). Special owners, extent-tree blocks and xattr
// blocks do not: a shared xattr block keeps its own count (h_refcount).
[[nodiscard]] constexpr bool rmap_is_data(std::uint64_t owner, std::uint32_t flags) noexcept {
    return rmap_owner::is_inode(owner) && (flags & (rmap_flags::xattr | rmap_flags::bmbt)) == 0;
}
// The owner/offset/flags combination is allowed (see docs: flags rules).
[[nodiscard]] constexpr bool rmap_valid_attrs(std::uint64_t owner, std::uint64_t offset, std::uint32_t flags) noexcept {
    if (!rmap_owner::valid(owner) || (flags & ~rmap_flags::all) != 0) return false;
    if (rmap_owner::is_special(owner)) return flags == 0 && offset == 0;
    if (flags & rmap_flags::bmbt) return (flags & (rmap_flags::xattr | rmap_flags::unwritten)) == 0 && offset == 0;
    if (flags & rmap_flags::xattr) return (flags & rmap_flags::unwritten) == 0;
    return true;
}

// ---- records -------------------------------------------------------------------

struct rmap_key {
    std::uint64_t start = 0;
    std::uint64_t owner = 0;
    std::uint64_t offset = 0;
    friend constexpr bool operator==(const rmap_key&, const rmap_key&) = default;
};

struct rmap_value {
    std::uint64_t length = 0;
    std::uint32_t flags = 0;
    friend constexpr bool operator==(const rmap_value&, const rmap_value&) = default;
};

struct rmap_record {
    std::uint64_t start = 0;  // first physical block
    std::uint64_t length = 0; // blocks, >= 1
    std::uint64_t owner = 0;
    std::uint64_t offset = 0; // logical block of `start` in the owner (0 if offset-less)
    std::uint32_t flags = 0;

    [[nodiscard]] constexpr std::uint64_t last() const noexcept { return start + length - 1; }
    [[nodiscard]] constexpr rmap_key key() const noexcept { return {start, owner, offset}; }
    [[nodiscard]] constexpr rmap_value value() const noexcept { return {length, flags}; }
    [[nodiscard]] static constexpr rmap_record from(const rmap_key& k, const rmap_value& v) noexcept {
        return {k.start, v.length, k.owner, k.offset, v.flags};
    }
    friend constexpr bool operator==(const rmap_record&, const rmap_record&) = default;
};

// Record codec. Key: start le64 | owner le64 | offset le64 (24 bytes);
// value: length le64 | flags le32 (12 bytes).
struct rmap_traits {
    using key_type = rmap_key;
    using value_type = rmap_value;
    static constexpr std::uint32_t magic = 0x4a42'5231; // "JBR1" (bytes on disk 31 52 42 4A)
    static constexpr std::size_t key_size = 24;
    static constexpr std::size_t value_size = 12;

    static void encode_key(const key_type& k, unsigned char* out) noexcept {
        store_le<std::uint64_t>(out, k.start);
        store_le<std::uint64_t>(out + 8, k.owner);
        store_le<std::uint64_t>(out + 16, k.offset);
    }
    [[nodiscard]] static key_type decode_key(const unsigned char* in) noexcept {
        return {load_le<std::uint64_t>(in), load_le<std::uint64_t>(in + 8), load_le<std::uint64_t>(in + 16)};
    }
    [[nodiscard]] static int compare(const key_type& a, const key_type& b) noexcept {
        if (a.start != b.start) return a.start < b.start ? -1 : 1;
        if (a.owner != b.owner) return a.owner < b.owner ? -1 : 1;
        if (a.offset != b.offset) return a.offset < b.offset ? -1 : 1;
        return 0;
    }
    static void encode_value(const value_type& v, unsigned char* out) noexcept {
        store_le<std::uint64_t>(out, v.length);
        store_le<std::uint32_t>(out + 8, v.flags);
    }
    [[nodiscard]] static value_type decode_value(const unsigned char* in) noexcept {
        return {load_le<std::uint64_t>(in), load_le<std::uint32_t>(in + 8)};
    }
    // Interval mode: a record covers blocks [start, start + length - 1]; the
    // owner and offset parts are maximal so the high key sorts after every
    // key starting at its last block. A length of 0 (invalid, reported by
    // verify) counts as 1; a range running past 2^64 saturates.
    [[nodiscard]] static key_type high_key(const key_type& k, const value_type& v) noexcept {
        const std::uint64_t last = k.start + (v.length ? v.length - 1 : 0);
        return {last < k.start ? ~0ull : last, ~0ull, ~0ull};
    }
    // A record map() could have written: length >= 1, the physical and
    // (offset-ful) logical ranges inside 2^64, a valid owner/flags/offset
    // combination. Checked by the engine on every fresh read of a leaf.
    [[nodiscard]] static bool valid_record(const key_type& k, const value_type& v) noexcept {
        if (v.length == 0 || v.length - 1 > ~0ull - k.start) return false;
        if (!rmap_valid_attrs(k.owner, k.offset, v.flags)) return false;
        return rmap_offsetless(k.owner, v.flags) || v.length - 1 <= ~0ull - k.offset;
    }
};

enum class rmap_problem : std::uint8_t {
    walk_error,    // the record walk failed (error holds why)
    bad_length,    // length 0, or the range runs past block 2^64-1
    bad_owner,     // owner 0 or an unnamed special owner
    bad_flags,     // unknown flag bits or a forbidden owner/flags/offset combination
    bad_offset,    // logical range runs past 2^64-1
    owner_overlap, // two records of one owner map a block at the same offset, or one is offset-less (detail: the owner)
};

[[nodiscard]] constexpr const char* describe(rmap_problem p) noexcept {
    switch (p) {
    case rmap_problem::walk_error: return "record walk failed";
    case rmap_problem::bad_length: return "bad length";
    case rmap_problem::bad_owner: return "bad owner";
    case rmap_problem::bad_flags: return "bad flags for this owner";
    case rmap_problem::bad_offset: return "logical range overflows";
    case rmap_problem::owner_overlap: return "two records of one owner map a block at the same offset";
    }
    return "unknown problem";
}

using rmap_verify_report = map_verify_report<rmap_problem>;

// ---- the map ---------------------------------------------------------------------

template <BlockStorage S, Journal<S> J>
class rmap {
public:
    using tree_type = btree<rmap_traits, S, J>;
    using handle = typename J::handle;
    using cursor = typename tree_type::cursor;

    // ---- opening ----------------------------------------------------------
    [[nodiscard]] static result<rmap> create(S& storage, J& journal, std::uint32_t tree_id) noexcept {
        auto t = tree_type::create(storage, journal, tree_id);
        if (!t) return t.error();
        return rmap(rvalue(*t), journal);
    }
    [[nodiscard]] static result<rmap> open(S& storage, J& journal, const tree_anchor& anchor) noexcept {
        auto t = tree_type::open(storage, journal, anchor);
        if (!t) return t.error();
        return rmap(rvalue(*t), journal);
    }

    [[nodiscard]] const tree_anchor& anchor() const noexcept { return t_.anchor(); }
    [[nodiscard]] tree_type& tree() noexcept { return t_; }
    [[nodiscard]] std::uint64_t size() const noexcept { return t_.size(); }
    [[nodiscard]] bool empty() const noexcept { return t_.empty(); }

    // ---- credits ------------------------------------------------------------
    //
    // map: at worst erase the right neighbour (it merges) and insert the new
    // record, at the current height.
    [[nodiscard]] std::uint32_t map_credits() const noexcept { return t_.erase_credits() + t_.insert_credits(); }
    // unmap: from a read-only plan of the records it touches: one erase per
    // record that starts inside the range, one assign if a record sticks out
    // on the left (trimmed in place), one insert if one sticks out on the
    // right (its remainder gets a new key). Errors as unmap() would give,
    // except no_credits.
    [[nodiscard]] result<std::uint32_t> unmap_credits(std::uint64_t start, std::uint64_t len, std::uint64_t owner,
                                                      std::uint64_t offset) noexcept {
        unmap_plan p{};
        JBTREE_TRY(plan_unmap(start, len, owner, offset, p));
        return p.credits(t_);
    }

    // ---- mutations -------------------------------------------------------------

    // Record that blocks [start, start + len) belong to `owner` at logical
    // offset `offset` with `flags`. The new range merges with a record of
    // the same owner ending at start - 1 and one starting at start + len
    // when they have the same flags and continue it logically (offset-less
    // records: physically is enough). The owner may already map some of
    // these blocks at other logical offsets (a clone inside one file): the
    // records then overlap, as in XFS's rmapbt.
    // errc::invalid: len 0, the range or logical range runs past 2^64-1, a bad
    //   owner, or flags/offset not allowed for the owner (rmap_valid_attrs);
    // errc::exists: some block of the range is already mapped to `owner` at
    //   the same logical offset (or, offset-less, at all: collides());
    // errc::no_credits: the handle has fewer than map_credits().
    [[nodiscard]] errc map(handle& h, std::uint64_t start, std::uint64_t len, std::uint64_t owner,
                           std::uint64_t offset, std::uint32_t flags) noexcept {
        JBTREE_TRY(check_range(start, len, owner, offset, flags));
        if (j_->credits_left(h) < map_credits()) return errc::no_credits;
        const std::uint64_t last = start + len - 1;
        const std::uint64_t lo = start ? start - 1 : start;
        const std::uint64_t hi = last != ~0ull ? last + 1 : last;
        rmap_record left{}, right{};
        bool has_left = false, has_right = false, clash = false;
        rmap_record nr{start, len, owner, offset, flags};
        JBTREE_TRY(t_.for_each_overlapping(lo_key(lo), hi_key(hi), [&](const rmap_key& k, const rmap_value& v) {
            if (k.owner != owner) return true;
            const rmap_record r = rmap_record::from(k, v);
            if (r.start <= last && r.last() >= start) {
                clash = collides(r, nr);
                return !clash;
            }
            // Neighbours that continue the new range (the owner may have
            // several records ending or starting there, at other offsets).
            if (start && r.last() == start - 1 && mergeable(r, nr)) {
                left = r;
                has_left = true;
            } else if (last != ~0ull && r.start == last + 1 && mergeable(nr, r)) {
                right = r;
                has_right = true;
            }
            return true;
        }));
        if (clash) return errc::exists;
        const bool ml = has_left;
        bool mr = has_right;
        if (ml && mr && left.length + len > ~0ull - right.length) mr = false; // would not fit a length
        // Apply: erase first (the height can only shrink), then write.
        if (mr) JBTREE_TRY(t_.erase(h, right.key()));
        if (ml) {
            left.length += len + (mr ? right.length : 0);
            return t_.assign(h, left.key(), left.value());
        }
        if (mr) nr.length += right.length;
        return t_.insert(h, nr.key(), nr.value());
    }

    // Remove exactly blocks [start, start + len) from `owner`: the records
    // of `owner` covering them are trimmed, split or erased (the range may
    // span several records). Every block b of the range must be mapped to
    // `owner`, at logical offset offset + (b - start) by an offset-ful
    // record, or by an offset-less record with offset == 0.
    // errc::invalid: bad arguments as for map();
    // errc::not_found: some block is not mapped that way (nothing changes);
    // errc::no_credits: fewer credits than unmap_credits() of these arguments.
    [[nodiscard]] errc unmap(handle& h, std::uint64_t start, std::uint64_t len, std::uint64_t owner,
                             std::uint64_t offset) noexcept {
        unmap_plan p{};
        JBTREE_TRY(plan_unmap(start, len, owner, offset, p));
        if (j_->credits_left(h) < p.credits(t_)) return errc::no_credits;
        const std::uint64_t last = start + len - 1;
        const bool head = p.first.start < start;
        const bool tail = p.last.last() > last;
        // Erase every record that starts inside the range, left to right.
        std::uint64_t pos = p.first.start;
        for (std::uint64_t i = 0; i < p.count; ++i) {
            rmap_record r{};
            if (i == 0) {
                r = p.first;
            } else {
                auto c = continuing(pos, owner, start, offset);
                if (!c) return c.error() == errc::not_found ? errc::corrupted : c.error();
                r = *c;
            }
            if (!(i == 0 && head)) JBTREE_TRY(t_.erase(h, r.key()));
            pos = r.last() + 1; // wraps only after the last record
        }
        if (head) {
            rmap_record hr = p.first;
            hr.length = start - hr.start;
            JBTREE_TRY(t_.assign(h, hr.key(), hr.value()));
        }
        if (tail) {
            rmap_record tr = p.last;
            tr.start = last + 1;
            tr.length = p.last.last() - last;
            tr.offset = rmap_offsetless(tr.owner, tr.flags) ? 0 : p.last.offset + (tr.start - p.last.start);
            JBTREE_TRY(t_.insert(h, tr.key(), tr.value()));
        }
        return errc::ok;
    }

    // ---- lookups -------------------------------------------------------------------

    // The record with exactly this key; errc::not_found if none.
    [[nodiscard]] result<rmap_record> find(std::uint64_t start, std::uint64_t owner, std::uint64_t offset) noexcept {
        const rmap_key k{start, owner, offset};
        auto v = t_.find(k);
        if (!v) return v.error();
        return rmap_record::from(k, *v);
    }

    // f(const rmap_record&) -> bool (false stops) for every record covering
    // `block`, each exactly once, in key order: by the record's start block,
    // then owner, then offset (so a record that starts further left comes
    // first, whatever its owner). That is the tree's order, and the only
    // one a caller may rely on; to group by owner, sort what you collect.
    template <class F>
    [[nodiscard]] errc owners_of(std::uint64_t block, F&& f) noexcept {
        return overlapping(block, block, f);
    }
    // Every record with a block in [a, b], in key order (records are not
    // clipped to [a, b]). An interval query: subtrees whose [low, high] keys
    // miss [a, b] are not read.
    template <class F>
    [[nodiscard]] errc overlapping(std::uint64_t a, std::uint64_t b, F&& f) noexcept {
        return t_.for_each_overlapping(lo_key(a), hi_key(b), [&f](const rmap_key& k, const rmap_value& v) {
            return static_cast<bool>(f(rmap_record::from(k, v)));
        });
    }
    // Every record of `owner`, in block order. A full scan: the key leads
    // with the block, so this reads every leaf (O(records)). A "block map"
    // per owner is the forward map's job (the inode's extent tree).
    template <class F>
    [[nodiscard]] errc ranges_of(std::uint64_t owner, F&& f) noexcept {
        return t_.for_each([&f, owner](const rmap_key& k, const rmap_value& v) {
            if (k.owner != owner) return true;
            return static_cast<bool>(f(rmap_record::from(k, v)));
        });
    }
    // Every record, in key order.
    template <class F>
    [[nodiscard]] errc for_each(F&& f) noexcept {
        return t_.for_each([&f](const rmap_key& k, const rmap_value& v) {
            return static_cast<bool>(f(rmap_record::from(k, v)));
        });
    }

    // The records as owner extents in start order, for refcount_map's
    // rebuild and cross-check (data: rmap_is_data()). The source must not
    // outlive the map; rewind() before use.
    class extent_source {
    public:
        [[nodiscard]] errc rewind() noexcept {
            auto c = m_->t_.first();
            if (!c) return c.error();
            c_ = rvalue(*c);
            ready_ = true;
            return errc::ok;
        }
        [[nodiscard]] result<bool> next(owner_extent& out) noexcept {
            if (!ready_) return errc::invalid;
            if (c_.at_end()) return false;
            auto v = c_.value();
            if (!v) return v.error();
            const rmap_key k = c_.key();
            out = owner_extent{k.start, v->length, rmap_is_data(k.owner, v->flags)};
            JBTREE_TRY(c_.next());
            return true;
        }

    private:
        friend class rmap;
        explicit extent_source(rmap* m) noexcept : m_(m) {}
        rmap* m_;
        cursor c_{};
        bool ready_ = false;
    };
    [[nodiscard]] extent_source extents() noexcept { return extent_source(this); }

    // ---- checking ----------------------------------------------------------------

    // The engine's verify(), then (if the structure is sound) every record:
    // length, owner, flags and offset rules, and no two records of one owner
    // sharing a block. The overlap check is one interval query per record,
    // O(n log n). `mergeable` counts same-owner neighbours that map() would
    // have merged (0 for a map only changed through map/unmap).
    [[nodiscard]] rmap_verify_report verify() noexcept {
        rmap_verify_report rep{};
        rep.tree = t_.verify();
        if (!rep.tree.clean()) return rep;
        errc inner = errc::ok;
        const errc e = t_.for_each([&](const rmap_key& k, const rmap_value& v) {
            const rmap_record r = rmap_record::from(k, v);
            ++rep.records;
            if (r.length == 0 || r.last() < r.start) {
                rep.add(rmap_problem::bad_length, r.start, r.owner);
                return true;
            }
            if (!rmap_owner::valid(r.owner)) rep.add(rmap_problem::bad_owner, r.start, r.owner);
            else if (!rmap_valid_attrs(r.owner, r.offset, r.flags)) rep.add(rmap_problem::bad_flags, r.start, r.owner);
            else if (!rmap_offsetless(r.owner, r.flags) && r.offset + (r.length - 1) < r.offset)
                rep.add(rmap_problem::bad_offset, r.start, r.owner);
            // Another record of the same owner mapping a shared block at the
            // same logical offset (each pair is reported from both sides).
            bool clash = false;
            inner = t_.for_each_overlapping(lo_key(r.start), hi_key(r.last()),
                                            [&](const rmap_key& ok, const rmap_value& ov) {
                                                if (ok.owner == r.owner && !(ok == k))
                                                    clash = collides(r, rmap_record::from(ok, ov));
                                                return !clash;
                                            });
            if (inner != errc::ok) return false;
            if (clash) rep.add(rmap_problem::owner_overlap, r.start, r.owner);
            // A same-owner neighbour map() would have merged: the record
            // starting right after r at the offset that continues it.
            if (r.last() != ~0ull) {
                const rmap_key nk{r.last() + 1, r.owner,
                                  rmap_offsetless(r.owner, r.flags) ? 0 : r.offset + r.length};
                auto nv = t_.find(nk);
                if (!nv && nv.error() != errc::not_found) {
                    inner = nv.error();
                    return false;
                }
                if (nv && mergeable(r, rmap_record::from(nk, *nv))) ++rep.mergeable;
            }
            return true;
        });
        const errc bad = e != errc::ok ? e : inner;
        if (bad != errc::ok) rep.add(rmap_problem::walk_error, 0, 0, bad);
        return rep;
    }
    [[nodiscard]] result<tree_stats> stats() noexcept { return t_.stats(); }

private:
    rmap(tree_type&& t, J& j) noexcept : t_(rvalue(t)), j_(&j) {}

    [[nodiscard]] static constexpr rmap_key lo_key(std::uint64_t b) noexcept { return {b, 0, 0}; }
    [[nodiscard]] static constexpr rmap_key hi_key(std::uint64_t b) noexcept { return {b, ~0ull, ~0ull}; }

    [[nodiscard]] static errc check_range(std::uint64_t start, std::uint64_t len, std::uint64_t owner,
                                          std::uint64_t offset, std::uint32_t flags) noexcept {
        if (len == 0 || len - 1 > ~0ull - start) return errc::invalid;
        if (!rmap_valid_attrs(owner, offset, flags)) return errc::invalid;
        if (!rmap_offsetless(owner, flags) && len - 1 > ~0ull - offset) return errc::invalid;
        return errc::ok;
    }

    // b directly follows a (a.last() + 1 == b.start): can they be one record?
    [[nodiscard]] static bool mergeable(const rmap_record& a, const rmap_record& b) noexcept {
        if (a.owner != b.owner || a.flags != b.flags) return false;
        if (a.length > ~0ull - b.length) return false;
        return rmap_offsetless(a.owner, a.flags) || a.offset + a.length == b.offset;
    }

    // Does record r map its blocks in [start, ...] to logical offsets
    // offset + (b - start)? (Offset-less records: offset must be 0.)
    [[nodiscard]] static bool matches(const rmap_record& r, std::uint64_t start, std::uint64_t offset) noexcept {
        if (rmap_offsetless(r.owner, r.flags)) return offset == 0;
        const std::uint64_t b = r.start > start ? r.start : start;
        return r.offset + (b - r.start) == offset + (b - start);
    }
    // The owner's record starting at pos that continues an unmap of
    // [start, ...] at `offset`: the one keyed at the logical offset the
    // range has there, or an offset-less one (key offset 0) if offset is 0.
    [[nodiscard]] result<rmap_record> continuing(std::uint64_t pos, std::uint64_t owner, std::uint64_t start,
                                                 std::uint64_t offset) noexcept {
        const std::uint64_t tries[2] = {offset + (pos - start), 0};
        for (unsigned i = 0; i < (tries[0] == 0 ? 1u : 2u); ++i) {
            const rmap_key k{pos, owner, tries[i]};
            auto v = t_.find(k);
            if (!v && v.error() != errc::not_found) return v.error();
            if (v) {
                const rmap_record r = rmap_record::from(k, *v);
                if (matches(r, start, offset)) return r;
            }
        }
        return errc::not_found;
    }
    // Two records of one owner that share a block collide when they map it
    // at the same logical offset, or either is offset-less (a special
    // owner's or a mapping block's: one per block). Records at different
    // offsets (a clone inside one file) may overlap.
    [[nodiscard]] static bool collides(const rmap_record& a, const rmap_record& b) noexcept {
        if (a.owner != b.owner || a.start > b.last() || b.start > a.last()) return false;
        if (rmap_offsetless(a.owner, a.flags) || rmap_offsetless(b.owner, b.flags)) return true;
        return matches(a, b.start, b.offset);
    }

    // What unmap will touch: the records of the owner covering the range,
    // left to right (count of them, the first and the last).
    struct unmap_plan {
        rmap_record first, last;
        std::uint64_t count;
        std::uint64_t start, end;
        [[nodiscard]] std::uint32_t credits(const tree_type& t) const noexcept {
            const bool head = first.start < start;
            const bool tail = last.last() > end;
            const std::uint64_t erases = count - (head ? 1 : 0);
            const std::uint64_t c = erases * t.erase_credits() + (head ? t.assign_credits() : 0) +
                                    (tail ? t.insert_credits() : 0);
            return c > 0xFFFF'FFFFull ? 0xFFFF'FFFFu : static_cast<std::uint32_t>(c);
        }
    };

    [[nodiscard]] errc plan_unmap(std::uint64_t start, std::uint64_t len, std::uint64_t owner, std::uint64_t offset,
                                  unmap_plan& p) noexcept {
        if (len == 0 || len - 1 > ~0ull - start || !rmap_owner::valid(owner)) return errc::invalid;
        if (rmap_owner::is_special(owner) && offset != 0) return errc::invalid;
        const std::uint64_t last = start + len - 1;
        p.start = start;
        p.end = last;
        // The owner's record covering `start` at that logical offset (it may
        // have others there, at other offsets).
        bool found = false;
        JBTREE_TRY(t_.for_each_overlapping(lo_key(start), hi_key(start), [&](const rmap_key& k, const rmap_value& v) {
            if (k.owner != owner) return true;
            const rmap_record r = rmap_record::from(k, v);
            if (!matches(r, start, offset)) return true;
            p.first = r;
            found = true;
            return false;
        }));
        if (!found) return errc::not_found;
        p.last = p.first;
        p.count = 1;
        // Then the owner's records starting right after each other, each at
        // the logical offset that continues the range.
        for (std::uint64_t steps = 0; p.last.last() < last; ++steps) {
            if (steps > t_.size()) return errc::corrupted; // more records than the tree holds
            auto r = continuing(p.last.last() + 1, owner, start, offset);
            if (!r) return r.error();
            p.last = *r;
            ++p.count;
        }
        return errc::ok;
    }

    tree_type t_;
    J* j_;
};

} // namespace jbtree
