// SPDX-License-Identifier: MIT
// jbtree: the implementation of jbtree/c/e2fs.h, the C interface to the
// maps stored in an ext4 image, over the C++ adapter (ext2fs/).
//
// Compile it in exactly one C++ translation unit of a C program:
//
//   #define JBTREE_E2FS_C_IMPLEMENTATION
//   #include <jbtree/c/detail/e2fs_implementation.hpp>
//
// with -std=c++20 -fno-exceptions -fno-rtti -fno-threadsafe-statics: it
// refuses to compile with exceptions or RTTI on, and needs no C++ runtime
// at link time (detail/no_cxx_runtime.hpp supplies the allocation
// functions and libstdc++'s hooks). Link with libext2fs and libcom_err.
#pragma once

#ifndef JBTREE_E2FS_C_IMPLEMENTATION
#error "define JBTREE_E2FS_C_IMPLEMENTATION in the one translation unit that includes this"
#endif
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#error "jbtree's e2fs C implementation must be compiled with -fno-exceptions (C programs link it without a C++ runtime)"
#endif
#if defined(__cpp_rtti) || defined(__GXX_RTTI)
#error "jbtree's e2fs C implementation must be compiled with -fno-rtti (C programs link it without a C++ runtime)"
#endif

// libstdc++ declares its common instantiations (std::allocator<char>,
// std::string, ...) as extern templates, defined in libstdc++.so: calls to
// them that are not inlined (any unoptimized build) would need the C++
// runtime at link time. Turned off for this translation unit, which then
// instantiates what it uses itself; so this header must come before any
// standard header.
#include <version>
#if defined(__GLIBCXX__)
#if defined(_GLIBCXX_ALLOCATOR_H) || defined(_GLIBCXX_STRING)
#error "include jbtree/c/detail/e2fs_implementation.hpp before any standard header"
#endif
#undef _GLIBCXX_EXTERN_TEMPLATE
#define _GLIBCXX_EXTERN_TEMPLATE 0
#endif

#include "jbtree/ext2fs/libext2fs.hpp" // before anything that includes ext2fs.h (its clamp macro)

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "jbtree/c/e2fs.h"
#include "jbtree/ext2fs/check_maps.hpp"
#include "jbtree/ext2fs/scan_collector.hpp"
#include "jbtree/ext2fs/stored_maps.hpp"

#ifndef JBTREE_E2FS_C_NO_RUNTIME
#include "jbtree/c/detail/no_cxx_runtime.hpp"
#endif

namespace jbtree::e2fs_c {

using namespace jbtree::ext2fs_adapter;

static_assert(JBT_E2FS_OWNER_FS == rmap_owner::fs && JBT_E2FS_OWNER_RESERVED_GDT == rmap_owner::reserved_gdt &&
              JBT_E2FS_OWNER_BITMAPS == rmap_owner::bitmaps && JBT_E2FS_OWNER_INODE_TABLE == rmap_owner::inode_table &&
              JBT_E2FS_OWNER_JOURNAL == rmap_owner::journal && JBT_E2FS_OWNER_JBTREE == rmap_owner::jbtree &&
              JBT_E2FS_OWNER_UNKNOWN == rmap_owner::unknown);
static_assert(JBT_E2FS_XATTR == rmap_flags::xattr && JBT_E2FS_TREE == rmap_flags::bmbt &&
              JBT_E2FS_UNWRITTEN == rmap_flags::unwritten);
static_assert(static_cast<int>(map_check_kind::stale) == JBT_E2FS_PROBLEM_STALE &&
              static_cast<int>(map_check_kind::damaged) == JBT_E2FS_PROBLEM_DAMAGED &&
              static_cast<int>(map_check_kind::volume) == JBT_E2FS_PROBLEM_VOLUME &&
              static_cast<int>(map_check_kind::free_but_owned) == JBT_E2FS_PROBLEM_FREE_BUT_OWNED &&
              static_cast<int>(map_check_kind::rmap_missing) == JBT_E2FS_PROBLEM_RMAP_MISSING &&
              static_cast<int>(map_check_kind::rmap_extra) == JBT_E2FS_PROBLEM_RMAP_EXTRA &&
              static_cast<int>(map_check_kind::refcount) == JBT_E2FS_PROBLEM_REFCOUNT &&
              static_cast<int>(map_check_kind::parent) == JBT_E2FS_PROBLEM_PARENT);

inline void say(char* why, std::size_t size, const std::string& text) noexcept {
    if (!why || size == 0) return;
    const std::size_t n = text.size() < size - 1 ? text.size() : size - 1;
    std::memcpy(why, text.data(), n);
    why[n] = '\0';
}

// An error of the maps (a query, a cross-check) as the C API's errno.
[[nodiscard]] inline int query_errno(errc e) noexcept {
    if (e == errc::corrupted || e == errc::bad_checksum || e == errc::range) return JBT_E2FS_CORRUPT;
    return static_cast<int>(e);
}

// A failure of work on the stored maps that is neither a finding nor the
// caller's mistake (reading the map file, writing its stamp): -ENOMEM or -EIO.
[[nodiscard]] inline int io_errno(errc e) noexcept { return e == errc::no_memory ? -ENOMEM : -EIO; }

} // namespace jbtree::e2fs_c

struct jbt_e2fs_maps {
    jbtree::ext2fs_adapter::stored_maps maps;
    std::string last_error;
};

struct jbt_e2fs_scan {
    explicit jbt_e2fs_scan(ext2_filsys fs) : collector(fs) {}
    jbtree::ext2fs_adapter::scan_collector collector;
    jbtree::ext2fs_adapter::scan_result result;
    bool finished = false; // result holds the records (collector used up)

    jbtree::ext2fs_adapter::scan_result& records() {
        if (!finished) collector.finish(result), finished = true;
        return result;
    }
};

extern "C" {

int jbt_e2fs_open(ext2_filsys fs, unsigned flags, jbt_e2fs_maps** out, char* why, size_t why_size) {
    using namespace jbtree;
    using namespace jbtree::e2fs_c;
    if (out) *out = nullptr;
    if (!fs || !out || (flags & ~(JBT_E2FS_OPEN_STALE | JBT_E2FS_OPEN_CHECK))) {
        say(why, why_size, "invalid argument");
        return -EINVAL;
    }
    auto* m = new (std::nothrow) jbt_e2fs_maps;
    if (!m) {
        say(why, why_size, "out of memory");
        return -ENOMEM;
    }
    std::string w;
    const errc e = m->maps.open(fs, w, (flags & JBT_E2FS_OPEN_CHECK) != 0);
    int r = 0;
    if (e == errc::not_found) r = m->maps.file().state == ext2fs_adapter::map_file_state::foreign ? JBT_E2FS_FOREIGN : JBT_E2FS_ABSENT;
    else if (e == errc::busy) r = ext2fs_has_feature_journal_needs_recovery(fs->super) ? JBT_E2FS_NEEDS_REPLAY : -EBUSY;
    else if (e == errc::io) r = -EIO;
    else if (e != errc::ok) r = JBT_E2FS_CORRUPT;
    else if (m->maps.stale() && !(flags & JBT_E2FS_OPEN_STALE)) {
        r = JBT_E2FS_STALE;
        w = "the maps are stale: the filesystem changed since they were built (" +
            describe_staleness(m->maps.stored_stamp(), m->maps.current_stamp()) + ")";
    }
    if (r != 0) {
        say(why, why_size, w);
        delete m;
        return r;
    }
    say(why, why_size, "");
    *out = m;
    return 0;
}

void jbt_e2fs_close(jbt_e2fs_maps* m) { delete m; }

void jbt_e2fs_info(const jbt_e2fs_maps* cm, struct jbt_e2fs_info* out) {
    if (!cm || !out) return;
    auto& m = const_cast<jbt_e2fs_maps*>(cm)->maps; // sizes and the stamp only: nothing is read
    *out = {};
    out->rmap_records = m.rm().size();
    out->refcount_records = m.rc().size();
    out->parent_records = m.pm().size();
    out->first_block = m.file().first;
    out->blocks = m.file().blocks;
    out->built_at = m.stored_stamp().built_at.get();
    out->stale = m.stale() ? 1 : 0;
}

const char* jbt_e2fs_last_error(const jbt_e2fs_maps* m) { return m ? m->last_error.c_str() : ""; }

const char* jbt_e2fs_owner_name(uint64_t owner) { return jbtree::ext2fs_adapter::special_owner_name(owner); }

int jbt_e2fs_owners(jbt_e2fs_maps* m, uint64_t block, uint64_t count, jbt_e2fs_owner_fn fn, void* ctx) {
    using namespace jbtree;
    if (!m || !fn || count == 0 || block + count < block) return -EINVAL;
    m->last_error.clear();
    bool stopped = false;
    const errc e = m->maps.rm().overlapping(block, block + count - 1, [&](const rmap_record& r) {
        const jbt_e2fs_owner o{r.start, r.length, r.owner, r.offset, r.flags};
        if (fn(ctx, &o) != 0) stopped = true;
        return !stopped;
    });
    if (e != errc::ok) {
        m->last_error = "owners of blocks " + std::to_string(block) + "+" + std::to_string(count) + ": " +
                        m->maps.describe_error(ext2fs_adapter::map_slot_rmap, e);
        return e2fs_c::query_errno(e);
    }
    return 0;
}

int jbt_e2fs_paths(jbt_e2fs_maps* m, uint32_t ino, jbt_e2fs_path_fn fn, void* ctx) {
    using namespace jbtree;
    using PM = ext2fs_adapter::stored_maps::parent_map_type;
    if (!m || !fn || ino == 0) return -EINVAL;
    m->last_error.clear();
    // Every record the paths come from must hold the name its key hashes.
    parent_key bad{};
    if (const errc ne = ext2fs_adapter::check_parent_names(m->maps.pm(), ino, bad); ne != errc::ok) {
        std::string where = ne == errc::corrupted ? m->maps.node_holding(bad) : std::string();
        m->last_error = "paths of inode " + std::to_string(ino) + ": " +
                        (ne != errc::corrupted ? m->maps.describe_error(ext2fs_adapter::map_slot_parent, ne)
                         : where.empty()       ? "a parent pointer record of inode " + std::to_string(bad.child) +
                                                     " in directory " + std::to_string(bad.parent) +
                                                     ": the name does not match its key's hash"
                                               : where + ": the name does not match its key's hash");
        return e2fs_c::query_errno(ne);
    }
    std::vector<unsigned char> buf(PM::path_buffer_size(256));
    bool stopped = false;
    auto r = m->maps.pm().paths_of(ino, EXT2_ROOT_INO, 256, buf.data(), buf.size(), [&](const path_event& e) {
        if (stopped || e.kind != path_kind::complete) return;
        if (fn(ctx, reinterpret_cast<const char*>(e.path), e.size) != 0) stopped = true;
    });
    if (!r) {
        m->last_error = "paths of inode " + std::to_string(ino) + ": " +
                        m->maps.describe_error(ext2fs_adapter::map_slot_parent, r.error());
        return e2fs_c::query_errno(r.error());
    }
    return 0;
}

int jbt_e2fs_refcount(jbt_e2fs_maps* m, uint64_t block, uint64_t count, jbt_e2fs_refcount_fn fn, void* ctx) {
    using namespace jbtree;
    if (!m || !fn || count == 0 || block + count < block) return -EINVAL;
    m->last_error.clear();
    // Block by block, checked against the rmap (checked_refcount), merged
    // into stretches of one count.
    std::uint64_t run_start = block, run_len = 0;
    std::uint32_t run_count = 0;
    for (std::uint64_t b = block; b < block + count; ++b) {
        const auto c = ext2fs_adapter::checked_refcount(m->maps.rc(), m->maps.rm(), b);
        if (c.disagree) {
            std::string where = m->maps.node_covering(ext2fs_adapter::map_slot_refcount, b);
            if (where.empty()) where = m->maps.node_covering(ext2fs_adapter::map_slot_rmap, b);
            m->last_error = "refcount of block " + std::to_string(b) + ": the refcount map says " +
                            std::to_string(c.refcount) + ", the rmap has " + std::to_string(c.data_owners) +
                            " data owners" + (where.empty() ? "" : ": " + where);
            return JBT_E2FS_CORRUPT;
        }
        if (c.error != errc::ok) {
            m->last_error = "refcount of block " + std::to_string(b) + ": " + m->maps.describe_error(c.slot, c.error);
            return e2fs_c::query_errno(c.error);
        }
        const std::uint32_t n = c.refcount >= 2 ? c.refcount : static_cast<std::uint32_t>(c.data_owners);
        if (run_len && n == run_count) {
            ++run_len;
            continue;
        }
        if (run_len && fn(ctx, run_start, run_len, run_count) != 0) return 0;
        run_start = b, run_len = 1, run_count = n;
    }
    if (run_len) (void)fn(ctx, run_start, run_len, run_count);
    return 0;
}

int jbt_e2fs_scan_new(ext2_filsys fs, jbt_e2fs_scan** out) {
    if (out) *out = nullptr;
    if (!fs || !out) return -EINVAL;
    auto* s = new (std::nothrow) jbt_e2fs_scan(fs);
    if (!s) return -ENOMEM;
    *out = s;
    return 0;
}

int jbt_e2fs_scan_filesystem(ext2_filsys fs, jbt_e2fs_scan** out) {
    using namespace jbtree;
    if (out) *out = nullptr;
    if (!fs || !out) return -EINVAL;
    auto* s = new (std::nothrow) jbt_e2fs_scan(fs);
    if (!s) return -ENOMEM;
    s->finished = true;
    const errc e = ext2fs_adapter::scan_filesystem(fs, s->result, [](std::uint64_t, std::uint64_t) {});
    if (e != errc::ok) {
        delete s;
        return e == errc::corrupted ? JBT_E2FS_CORRUPT : static_cast<int>(e);
    }
    *out = s;
    return 0;
}

void jbt_e2fs_scan_free(jbt_e2fs_scan* s) { delete s; }

int jbt_e2fs_scan_inode(jbt_e2fs_scan* s, uint32_t ino, const struct ext2_inode* inode) {
    if (!s || !inode || ino == 0 || s->finished) return -EINVAL;
    return s->collector.add_inode(ino, *inode) ? 1 : 0;
}

int jbt_e2fs_scan_blocks(jbt_e2fs_scan* s, uint32_t ino, uint64_t lblk, uint64_t pblk, uint64_t len, unsigned flags) {
    if (!s || s->finished) return -EINVAL;
    const jbtree::errc e = s->collector.add_blocks(ino, lblk, pblk, len, flags);
    return e == jbtree::errc::ok ? 0 : e == jbtree::errc::range ? -ERANGE : -EINVAL;
}

int jbt_e2fs_scan_link(jbt_e2fs_scan* s, uint32_t dir, uint32_t ino, const char* name, size_t len) {
    if (!s || s->finished) return -EINVAL;
    return s->collector.add_link(dir, ino, name, len) == jbtree::errc::ok ? 0 : -EINVAL;
}

int jbt_e2fs_check(jbt_e2fs_maps* m, jbt_e2fs_scan* scan, jbt_e2fs_problem_fn fn, void* ctx,
                   struct jbt_e2fs_check_result* out) {
    using namespace jbtree;
    using namespace jbtree::ext2fs_adapter;
    if (out) *out = jbt_e2fs_check_result{};
    if (!m) return -EINVAL;
    m->last_error.clear();
    map_check_summary sum;
    auto report = [&](const map_check_problem& p) {
        if (!fn) return;
        const jbt_e2fs_problem cp{static_cast<jbt_e2fs_problem_kind>(p.kind), p.count, p.text.c_str()};
        fn(ctx, &cp);
    };
    check_stamp(m->maps, report, sum);
    int r = 0;
    // The structure of the trees; their own rules follow from the exact
    // comparison with the scan below (check_maps.hpp).
    if (check_trees(m->maps, report, sum, tree_check_depth::structure)) {
        scan_result own;
        const scan_result* records = nullptr;
        if (scan) records = &scan->records();
        else {
            errcode_t ee = 0;
            const errc e = scan_filesystem(m->maps.filesystem(), own, [](std::uint64_t, std::uint64_t) {}, &ee);
            if (e != errc::ok) {
                m->last_error = std::string("the filesystem cannot be scanned: ") + describe(e) +
                                (ee ? std::string(": ") + error_message(ee) : std::string());
                r = e == errc::corrupted ? JBT_E2FS_CORRUPT : static_cast<int>(e);
            }
            records = &own;
        }
        if (r == 0) check_against(m->maps.filesystem(), m->maps, *records, report, sum);
    }
    if (out) {
        out->problems = sum.problems;
        out->stale = sum.stale;
        out->damaged = sum.damaged || sum.io_error;
        out->rmap_missing = sum.rmap_missing;
        out->rmap_extra = sum.rmap_extra;
        out->refcount_mismatches = sum.refcount_mismatches;
        out->parent_mismatches = sum.parent_mismatches;
    }
    return r;
}

int jbt_e2fs_build(ext2_filsys fs, jbt_e2fs_scan* scan, struct jbt_e2fs_build_result* out, char* why, size_t why_size) {
    using namespace jbtree;
    using namespace jbtree::ext2fs_adapter;
    if (out) *out = jbt_e2fs_build_result{};
    if (!fs) {
        e2fs_c::say(why, why_size, "invalid argument");
        return -EINVAL;
    }
    build_report rep;
    std::string w;
    const errc e = build_stored_maps(fs, scan ? &scan->records() : nullptr, rep, w);
    e2fs_c::say(why, why_size, w);
    if (out) {
        out->rmap_records = rep.rmap_records;
        out->refcount_records = rep.refcount_records;
        out->parent_records = rep.parent_records;
        out->first_block = rep.first;
        out->blocks = rep.blocks;
        out->replaced = rep.replaced ? 1 : 0;
    }
    if (e == errc::ok) return 0;
    switch (rep.problem) {
    case build_problem::unsupported: return JBT_E2FS_UNSUPPORTED;
    case build_problem::needs_recovery: return JBT_E2FS_NEEDS_REPLAY;
    case build_problem::not_clean:
    case build_problem::damaged: return JBT_E2FS_CORRUPT;
    case build_problem::no_space: return JBT_E2FS_NO_SPACE;
    case build_problem::in_use: return JBT_E2FS_BUSY;
    case build_problem::io: return -EIO;
    default: break;
    }
    return e == errc::invalid ? -EINVAL : e2fs_c::io_errno(e);
}

static_assert(sizeof(jbt_e2fs_state::opaque) == sizeof(jbtree::ext2fs_adapter::map_stamp));

void jbt_e2fs_state_of(ext2_filsys fs, struct jbt_e2fs_state* out) {
    if (!out) return;
    const jbtree::ext2fs_adapter::map_stamp st = fs ? jbtree::ext2fs_adapter::stamp_of(fs) : jbtree::ext2fs_adapter::map_stamp{};
    std::memcpy(out->opaque, &st, sizeof st);
}

int jbt_e2fs_current_in(ext2_filsys fs, const struct jbt_e2fs_state* state) {
    using namespace jbtree::ext2fs_adapter;
    if (!fs || !state) return -EINVAL;
    map_stamp then;
    std::memcpy(&then, state->opaque, sizeof then);
    bool current = false;
    if (const jbtree::errc e = maps_current_for(fs, then, current); e != jbtree::errc::ok)
        return jbtree::e2fs_c::io_errno(e);
    return current ? 1 : 0;
}

int jbt_e2fs_carry_live_stamp(ext2_filsys fs, const struct jbt_e2fs_state* before) {
    using namespace jbtree::ext2fs_adapter;
    // Read-write, with nothing pending (what is cleared below would be lost).
    if (!fs || !before || !(fs->flags & EXT2_FLAG_RW) || (fs->flags & (EXT2_FLAG_DIRTY | EXT2_FLAG_BB_DIRTY | EXT2_FLAG_IB_DIRTY)))
        return -EINVAL;
    map_stamp b;
    std::memcpy(&b, before->opaque, sizeof b);
    bool carried = false;
    if (const jbtree::errc e = carry_live_stamp(fs, b, &carried); e != jbtree::errc::ok)
        return jbtree::e2fs_c::io_errno(e);
    if (!carried) return 0;
    // What the carry wrote must not reach s_kbytes_written, nor anything
    // else the superblock: ext2fs_close() then writes nothing.
    stop_writing(fs);
    return 1;
}

} // extern "C"
