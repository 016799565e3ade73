// SPDX-License-Identifier: MIT
// jbtree: check the maps stored in an image against the image (what
// `jbtree-e2fs check`, debugfs's maps_check and e2fsck's maps pass run).
//
//   map_check_summary s;
//   auto report = [](const map_check_problem& p) { ... p.kind, p.text ... };
//   check_stamp(sm, report, s);                  stale?
//   if (check_trees(sm, report, s)) {            trees verify, volume accounting
//       scan_result r = ...;                     scan_filesystem() or a scan_collector
//       check_against(fs, sm, r, report, s);     bitmap, rmap both ways,
//   }                                            refcount, parent pointers
//
// Each problem found is reported once, in words naming the first instance
// (and the map node holding it where one is to blame); the summary counts
// them. The checks only read. Hosted code (std::vector, std::string).
#pragma once

#include "jbtree/ext2fs/libext2fs.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "jbtree/base/errc.hpp"
#include "jbtree/ext2fs/scan.hpp"
#include "jbtree/ext2fs/stored_maps.hpp"
#include "jbtree/volume/ownership.hpp"

namespace jbtree::ext2fs_adapter {

enum class map_check_kind : std::uint8_t {
    stale = 1,      // the filesystem changed since the build
    damaged,        // a tree fails verification, or cannot be read
    volume,         // the maps' volume accounts its blocks wrongly
    free_but_owned, // a block something owns is free in the block bitmap
    rmap_missing,   // filesystem extents the rmap lacks
    rmap_extra,     // rmap records the filesystem does not have
    refcount,       // refcount stretches that disagree with the rmap
    parent,         // parent pointers that disagree with the directory entries
};

struct map_check_problem {
    map_check_kind kind;
    errc cause = errc::corrupted; // errc::io when a read failed rather than found damage
    std::uint64_t count = 1;      // records / stretches concerned
    std::string text;
};

struct map_check_summary {
    unsigned problems = 0;
    bool stale = false, damaged = false, io_error = false;
    std::uint64_t rmap_missing = 0, rmap_extra = 0, refcount_mismatches = 0, parent_mismatches = 0;

    [[nodiscard]] bool clean() const noexcept { return problems == 0; }
};

// The name of a special rmap owner ("<journal>", ...), or the inode number.
[[nodiscard]] inline const char* special_owner_name(std::uint64_t o) noexcept {
    switch (o) {
    case rmap_owner::fs: return "<superblock/descriptors>";
    case rmap_owner::reserved_gdt: return "<reserved GDT>";
    case rmap_owner::bitmaps: return "<bitmaps>";
    case rmap_owner::inode_table: return "<inode table>";
    case rmap_owner::journal: return "<journal>";
    case rmap_owner::jbtree: return "<jbtree maps>";
    case rmap_owner::unknown: return "<unknown>";
    }
    return nullptr;
}
[[nodiscard]] inline std::string owner_name(std::uint64_t o) {
    const char* s = special_owner_name(o);
    return s ? std::string(s) : std::to_string(o);
}

namespace detail {
template <class Sink>
void report(Sink& sink, map_check_summary& s, map_check_kind k, errc cause, std::uint64_t count, std::string text) {
    ++s.problems;
    if (k == map_check_kind::stale) s.stale = true;
    if (cause == errc::io) s.io_error = true;
    else if (k == map_check_kind::damaged || k == map_check_kind::volume || k == map_check_kind::free_but_owned ||
             k == map_check_kind::refcount)
        s.damaged = true;
    sink(map_check_problem{k, cause, count, std::move(text)});
}
[[nodiscard]] inline errc read_cause(errc e) noexcept { return e == errc::io || e == errc::no_memory ? errc::io : errc::corrupted; }
} // namespace detail

// Why the maps are stale, in words ("mounted since; allocation changed").
[[nodiscard]] inline std::string describe_staleness(const map_stamp& st, const map_stamp& now) {
    std::string d;
    if (st.version.get() == map_stamp_live_v2 && st.magic.get() == map_stamp_magic)
        return "the live stamp of an older kernel (version 2), which cannot tell a superblock write outside the "
               "kernel within the second of its mount: rebuild them";
    if (st.version.get() == map_stamp_live) {
        // Kept live by the kernel: stale once another mount happened, once
        // the superblock was written outside the kernel, or once the
        // kernel gave them up.
        if (st.flags.get() & map_stamp_abandoned) return "the kernel stopped keeping them: a change of the maps failed";
        if (st.flags.get() != 0) return "unknown live stamp flags";
        if (st.mnt_count.get() == now.mnt_count.get() && st.fs_mtime.get() == now.fs_mtime.get()) {
            if (st.kbytes_written.get() == 0)
                return "kept live by the kernel during mount " + std::to_string(st.mnt_count.get()) +
                       " of a filesystem whose superblock counts no bytes written (s_kbytes_written 0): a write "
                       "outside the kernel would not show";
            return "kept live by the kernel during mount " + std::to_string(st.mnt_count.get()) +
                   ", and the superblock was written outside the kernel since (e2fsck, or another tool)";
        }
        return "kept live by the kernel during mount " + std::to_string(st.mnt_count.get()) +
               ", the superblock now names mount " + std::to_string(now.mnt_count.get()) +
               (st.mnt_count.get() == now.mnt_count.get() ? " with another mount time" : "");
    }
    if (st.version.get() != map_stamp_full) return "stamp version " + std::to_string(st.version.get()) + " unknown";
    if (st.mnt_count.get() != now.mnt_count.get() || st.fs_mtime.get() != now.fs_mtime.get()) d += "mounted since; ";
    if (st.fs_wtime.get() != now.fs_wtime.get() || st.kbytes_written.get() != now.kbytes_written.get())
        d += "superblock written since; ";
    if (st.free_blocks.get() != now.free_blocks.get() || st.free_inodes.get() != now.free_inodes.get() ||
        st.gdt_crc.get() != now.gdt_crc.get())
        d += "allocation changed; ";
    if (d.size() >= 2) d.resize(d.size() - 2);
    return d;
}

// The build stamp against the filesystem now.
template <class Sink>
void check_stamp(stored_maps& sm, Sink&& sink, map_check_summary& s) {
    if (sm.stale())
        detail::report(sink, s, map_check_kind::stale, errc::ok, 1,
                       "stale: the filesystem changed since the build (" +
                           describe_staleness(sm.stored_stamp(), sm.current_stamp()) + ")");
}

// How deep check_trees() looks.
enum class tree_check_depth : std::uint8_t {
    full,      // the engine's structure and each map's own rules (rmap: no
               // owner maps a block twice, merged neighbours; parent
               // pointers: hashes, duplicate names): what `jbtree-e2fs
               // check` runs
    structure, // the engine's structure only (keys, separators, high keys,
               // links, counts): enough when check_against() follows, whose
               // exact comparison with the canonical scan implies the maps'
               // own rules (e2fsck's pass; O(n) instead of O(n log n))
};

// The trees verify, and the volume accounts for exactly their nodes. True
// if both hold (the cross-checks need sound trees).
template <class Sink>
[[nodiscard]] bool check_trees(stored_maps& sm, Sink&& sink, map_check_summary& s,
                               tree_check_depth depth = tree_check_depth::full) {
    using rm_report = decltype(sm.rm().verify());
    using rc_report = decltype(sm.rc().verify());
    using pm_report = decltype(sm.pm().verify());
    rm_report rv{};
    rc_report cv{};
    pm_report pv{};
    if (depth == tree_check_depth::full) {
        rv = sm.rm().verify();
        cv = sm.rc().verify();
        pv = sm.pm().verify();
    } else {
        rv.tree = sm.rm().tree().verify();
        cv.tree = sm.rc().tree().verify();
        pv.tree = sm.pm().tree().verify();
    }
    auto failed = [&](std::uint32_t slot, const auto& rep, std::uint64_t problems) {
        detail::report(sink, s, map_check_kind::damaged, errc::corrupted, 1,
                       std::string("the ") + stored_maps::map_name(slot) + " tree fails verification (" +
                           std::to_string(problems) + (problems == 1 ? " problem" : " problems") +
                           "; first: " + sm.describe_verify(slot, rep) + ")");
    };
    if (!rv.clean()) failed(map_slot_rmap, rv, rv.tree.problem_count + rv.problem_count);
    if (!cv.clean()) failed(map_slot_refcount, cv, cv.tree.problem_count + cv.problem_count);
    if (!pv.clean()) failed(map_slot_parent, pv, pv.tree.problem_count + pv.problem_count + (pv.walk_error != errc::ok));
    if (!rv.clean() || !cv.clean() || !pv.clean()) return false;
    std::vector<unsigned char> seen((sm.vol().end_block() - sm.vol().data_start() + 7) / 8);
    auto own = check_ownership(sm.vol(), seen.data(), seen.size(), sm.rm().tree(), sm.rc().tree(), sm.pm().tree());
    if (own.clean()) return true;
    const auto& p = own.problems[0];
    detail::report(sink, s, map_check_kind::volume, errc::corrupted, own.problem_count,
                   "the maps' volume accounts its blocks wrongly (" + std::to_string(own.problem_count) +
                       " problems: leaked, unallocated or doubly owned nodes; first: block " + std::to_string(p.block) +
                       ": " + describe(p.kind) + (p.error != errc::ok ? std::string(": ") + describe(p.error) : "") + ")");
    return false;
}

// The maps against `r`, what the filesystem holds (scan_filesystem(), or a
// scan_collector): every owned block in use in the block bitmap (read if
// not loaded), the rmap both ways, the refcount map against the rmap, the
// parent pointers both ways against the directory entries. Run it only
// after check_trees() said yes. A map that cannot be read is reported
// (damaged, with errc::io as the cause when the read failed) and ends the
// checks that need it.
template <class Sink>
void check_against(ext2_filsys fs, stored_maps& sm, const scan_result& r, Sink&& sink, map_check_summary& s) {
    // ext4 must not be able to hand out what the maps hold (nor anything
    // else that is owned): every owned block marked in use.
    if (errcode_t be = ext2fs_read_bitmaps(fs)) {
        detail::report(sink, s, map_check_kind::free_but_owned, is_damage(be) ? errc::corrupted : errc::io, 1,
                       std::string("the block bitmap cannot be read: ") + error_message(be));
    } else {
        std::uint64_t owner = 0;
        if (const std::uint64_t hole = first_owned_but_free(fs, r.rmap, &owner))
            detail::report(sink, s, map_check_kind::free_but_owned, errc::corrupted, 1,
                           "block " + std::to_string(hole) + " (owner " + owner_name(owner) +
                               ") is marked free in the block bitmap: ext4 could hand it out (run e2fsck)");
    }
    // The rmap both ways, in one ordered merge of the stored records (key
    // order) with the scan's (canonical: key order already; sorted here
    // only if not).
    auto less = [](const rmap_record& a, const rmap_record& b) {
        return std::tie(a.start, a.owner, a.offset, a.length, a.flags) < std::tie(b.start, b.owner, b.offset, b.length, b.flags);
    };
    std::vector<rmap_record> sorted_copy;
    const std::vector<rmap_record>* scan_records = &r.rmap;
    if (!std::is_sorted(r.rmap.begin(), r.rmap.end(), less)) {
        sorted_copy = r.rmap;
        std::sort(sorted_copy.begin(), sorted_copy.end(), less);
        scan_records = &sorted_copy;
    }
    const std::vector<rmap_record>& scanned = *scan_records;
    std::size_t si = 0;
    std::uint64_t missing = 0, extra = 0;
    rmap_record first_missing{}, first_extra{};
    auto miss = [&](const rmap_record& x) {
        if (missing++ == 0) first_missing = x;
    };
    const errc fe = sm.rm().for_each([&](const rmap_record& x) {
        for (; si < scanned.size() && less(scanned[si], x); ++si) miss(scanned[si]);
        if (si < scanned.size() && !less(x, scanned[si])) ++si; // the same record
        else if (extra++ == 0) first_extra = x;
        return true;
    });
    if (fe != errc::ok) {
        detail::report(sink, s, map_check_kind::damaged, detail::read_cause(fe), 1,
                       "the rmap cannot be read: " + sm.describe_error(map_slot_rmap, fe));
        return;
    }
    for (; si < scanned.size(); ++si) miss(scanned[si]);
    s.rmap_missing = missing, s.rmap_extra = extra;
    auto show = [](const rmap_record& x) {
        return "blocks " + std::to_string(x.start) + "+" + std::to_string(x.length) + " owner " + owner_name(x.owner);
    };
    if (missing)
        detail::report(sink, s, map_check_kind::rmap_missing, errc::corrupted, missing,
                       std::to_string(missing) + " filesystem extents missing from the rmap (first: " + show(first_missing) + ")");
    if (extra) {
        const std::string where = sm.node_holding(first_extra);
        detail::report(sink, s, map_check_kind::rmap_extra, errc::corrupted, extra,
                       std::to_string(extra) + " rmap records the filesystem does not have (first: " + show(first_extra) +
                           (where.empty() ? "" : ", in the " + where) + ")");
    }
    // Refcount against the rmap it derives from.
    std::vector<std::uint64_t> ends(map_sweep_capacity);
    auto src = sm.rm().extents();
    std::uint64_t rc_first = 0, rc_len = 0;
    std::uint32_t rc_expected = 0, rc_actual = 0;
    auto cc = sm.rc().cross_check(src, {ends.data(), ends.size()}, [&](std::uint64_t b, std::uint64_t n, std::uint32_t want, std::uint32_t have) {
        if (rc_len == 0) rc_first = b, rc_len = n, rc_expected = want, rc_actual = have;
    });
    if (!cc) { // it reads both maps: name the one with a damaged node
        std::string w = sm.describe_error(map_slot_refcount, cc.error());
        if (sm.rc().tree().last_fault().what == node_fault::none && w.find(" node at block ") == std::string::npos)
            w = sm.describe_error(map_slot_rmap, cc.error());
        detail::report(sink, s, map_check_kind::damaged, detail::read_cause(cc.error()), 1, "refcount cross-check failed: " + w);
    } else if (*cc) {
        // The first stretch, and the node of the refcount record there (or,
        // without one, of an rmap record the count came from).
        std::string where = sm.node_covering(map_slot_refcount, rc_first);
        if (where.empty()) where = sm.node_covering(map_slot_rmap, rc_first);
        s.refcount_mismatches = *cc;
        detail::report(sink, s, map_check_kind::refcount, errc::corrupted, *cc,
                       std::to_string(*cc) + " refcount stretches disagree with the rmap (first: blocks " +
                           std::to_string(rc_first) + "+" + std::to_string(rc_len) + ": refcount " + std::to_string(rc_actual) +
                           ", the rmap has " + std::to_string(rc_expected) + (where.empty() ? "" : "; " + where) + ")");
    }
    // Parent pointers both ways against the entries: the links as the
    // records they must be (keyed_links(): key order), merged with the
    // stored records in one ordered walk.
    const std::vector<keyed_link> want = keyed_links(r.links);
    std::size_t wi = 0;
    std::uint64_t pp_diff = 0;
    std::string first_pp;
    auto mismatch = [&](dirent_mismatch m, const parent_key& k, std::string_view name) {
        if (pp_diff++ == 0)
            first_pp = std::string(describe(m)) + ": inode " + std::to_string(k.child) + " in directory " +
                       std::to_string(k.parent) + " as \"" + std::string(name) + "\"";
    };
    using ptraits = parent_map_traits<>;
    const errc pe = sm.pm().tree().for_each([&](const parent_key& k, const parent_record& v) {
        const std::string_view have(reinterpret_cast<const char*>(v.name), v.name_len);
        for (; wi < want.size() && ptraits::compare(want[wi].key, k) < 0; ++wi)
            mismatch(dirent_mismatch::missing, want[wi].key, want[wi].link->name);
        if (wi < want.size() && ptraits::compare(want[wi].key, k) == 0 && want[wi].link->name == have) {
            if (want[wi].link->parent_gen != v.parent_gen) mismatch(dirent_mismatch::stale_generation, k, have);
            ++wi;
        } else {
            mismatch(dirent_mismatch::extra, k, have);
        }
        return true;
    });
    if (pe != errc::ok) {
        detail::report(sink, s, map_check_kind::damaged, detail::read_cause(pe), 1,
                       "parent pointer cross-check failed: " + sm.describe_error(map_slot_parent, pe));
        return;
    }
    for (; wi < want.size(); ++wi) mismatch(dirent_mismatch::missing, want[wi].key, want[wi].link->name);
    if (pp_diff) {
        s.parent_mismatches = pp_diff;
        detail::report(sink, s, map_check_kind::parent, errc::corrupted, pp_diff,
                       std::to_string(pp_diff) + " parent pointers disagree with the directories (first: " + first_pp + ")");
    }
}

} // namespace jbtree::ext2fs_adapter
