// SPDX-License-Identifier: MIT
// jbtree: the stamp of the maps an ext4 image stores in its map file
// (docs/format.md section 8): its layout, and the rule that says whether
// it still describes the filesystem. The one definition of both, shared by
// jbtree-e2fs (ext2fs/map_file.hpp, which reads the filesystem's state
// with libext2fs) and the kernel glue (examples/kernel_module/e4maps.cpp,
// which gets it from ext4 and writes the stamps the patched kernel keeps).
// Freestanding: no libext2fs, no allocation, no exceptions.
//
// The stamp is the map volume's owner_data (64 bytes, little-endian), one
// of two kinds:
//
//  * version 1, the *full stamp*: the filesystem as it was when the maps
//    were last known current (jbtree-e2fs build; the patched kernel at a
//    clean unmount, after ext4's last superblock write). Fresh while every
//    field but built_at equals the filesystem's.
//  * version 3, the *live stamp*: "kept live by the kernel since mount M",
//    written by the patched kernel in its first handle after it opens the
//    maps at a read-write mount, M named by what that mount wrote into the
//    superblock (ext4_setup_super, at once: s_mnt_count, s_mtime, s_wtime
//    and s_kbytes_written). Fresh while the superblock still holds those
//    four and the kernel did not give the maps up (flags zero): any later
//    mount increments s_mnt_count; every superblock write by libext2fs
//    (e2fsck, which may release orphans outside the maps, included) sets
//    s_wtime, which counts seconds, and raises s_kbytes_written by the
//    bytes its io channel wrote (ext2fs_close; e2fsck's journal replay
//    adds those of the replay), which tells a write within the second of
//    the mount's apart. libext2fs counts only on a filesystem whose
//    s_kbytes_written is not zero (mke2fs starts it at its own writes), so
//    a live stamp naming zero is never fresh. Version 2, the live stamp
//    without s_kbytes_written (written by older kernels), is never fresh
//    either: it cannot see such a write.
#pragma once

#include <cstdint>

#include "jbtree/base/endian.hpp"

namespace jbtree {

// The stamp's bytes. Version 3 uses fs_wtime, fs_mtime, kbytes_written,
// mnt_count, flags and built_at; its other fields are zero.
struct map_stamp {
    le32 magic;          // 0x00 map_stamp_magic
    le32 version;        // 0x04 map_stamp_full (1) or map_stamp_live (3)
    le64 fs_wtime;       // 0x08 s_wtime (with s_wtime_hi)
    le64 fs_mtime;       // 0x10 s_mtime (with s_mtime_hi): the last mount
    le64 kbytes_written; // 0x18 s_kbytes_written
    le64 free_blocks;    // 0x20 free blocks count (version 1)
    le32 free_inodes;    // 0x28 free inodes count (version 1)
    le32 mnt_count;      // 0x2C s_mnt_count
    le32 gdt_crc;        // 0x30 crc32c_raw(~0) of every group descriptor (version 1)
    le32 flags;          // 0x34 version 1: zero; version 3: map_stamp_abandoned
    le64 built_at;       // 0x38 when the build committed / the stamp was written (seconds since the epoch)
};
static_assert(sizeof(map_stamp) == 64, "the volume's owner_data");

inline constexpr std::uint32_t map_stamp_magic = 0x3445424Au; // "JBE4"
inline constexpr std::uint32_t map_stamp_full = 1;            // the filesystem as it was
inline constexpr std::uint32_t map_stamp_live = 3;            // kept live since a mount
// The live stamp of older kernels, without s_kbytes_written: never fresh.
inline constexpr std::uint32_t map_stamp_live_v2 = 2;
// The live stamp's flags: the kernel stopped keeping the maps during that
// mount (a change of the maps failed): never fresh again.
inline constexpr std::uint32_t map_stamp_abandoned = 1;

// The filesystem's state as a stamp sees it: the superblock's fields (the
// 64-bit times and counts with their _hi parts) and the group
// descriptors' crc.
struct map_fs_state {
    std::uint64_t wtime = 0, mtime = 0, kbytes_written = 0, free_blocks = 0;
    std::uint32_t free_inodes = 0, mnt_count = 0, gdt_crc = 0;
};

// The full stamp (version 1) of `s`.
[[nodiscard]] inline map_stamp full_stamp(const map_fs_state& s, std::uint64_t built_at) noexcept {
    map_stamp m{};
    m.magic.set(map_stamp_magic);
    m.version.set(map_stamp_full);
    m.fs_wtime.set(s.wtime);
    m.fs_mtime.set(s.mtime);
    m.kbytes_written.set(s.kbytes_written);
    m.free_blocks.set(s.free_blocks);
    m.free_inodes.set(s.free_inodes);
    m.mnt_count.set(s.mnt_count);
    m.gdt_crc.set(s.gdt_crc);
    m.built_at.set(built_at);
    return m;
}

// The state a full stamp records (whatever its version: the fields as they are).
[[nodiscard]] inline map_fs_state state_in(const map_stamp& m) noexcept {
    map_fs_state s;
    s.wtime = m.fs_wtime.get();
    s.mtime = m.fs_mtime.get();
    s.kbytes_written = m.kbytes_written.get();
    s.free_blocks = m.free_blocks.get();
    s.free_inodes = m.free_inodes.get();
    s.mnt_count = m.mnt_count.get();
    s.gdt_crc = m.gdt_crc.get();
    return s;
}

// The live stamp (version 3) of the mount that left `mount` in the
// superblock (its mnt_count, mtime, wtime and kbytes_written; the rest is
// not recorded), written at `written_at`, with `flags`.
[[nodiscard]] inline map_stamp live_stamp(const map_fs_state& mount, std::uint64_t written_at,
                                          std::uint32_t flags = 0) noexcept {
    map_stamp m{};
    m.magic.set(map_stamp_magic);
    m.version.set(map_stamp_live);
    m.fs_wtime.set(mount.wtime);
    m.fs_mtime.set(mount.mtime);
    m.kbytes_written.set(mount.kbytes_written);
    m.mnt_count.set(mount.mnt_count);
    m.flags.set(flags);
    m.built_at.set(written_at);
    return m;
}

// Does the stored stamp still describe the filesystem, whose state is
// `now`? stale: no (or not a stamp, or a version this reader does not
// trust); full: it is the full stamp of `now`; live: it is a live stamp,
// not abandoned, naming the mount `now` names (the rule above).
enum class stamp_match : std::uint8_t { stale, full, live };
[[nodiscard]] inline stamp_match match_stamp(const map_stamp& stored, const map_fs_state& now) noexcept {
    if (stored.magic.get() != map_stamp_magic) return stamp_match::stale;
    const map_fs_state s = state_in(stored);
    switch (stored.version.get()) {
    case map_stamp_full:
        return s.wtime == now.wtime && s.mtime == now.mtime && s.kbytes_written == now.kbytes_written &&
                       s.free_blocks == now.free_blocks && s.free_inodes == now.free_inodes &&
                       s.mnt_count == now.mnt_count && s.gdt_crc == now.gdt_crc
                   ? stamp_match::full
                   : stamp_match::stale;
    case map_stamp_live:
        return stored.flags.get() == 0 && s.mnt_count == now.mnt_count && s.mtime == now.mtime &&
                       s.wtime == now.wtime && s.kbytes_written == now.kbytes_written && s.kbytes_written != 0
                   ? stamp_match::live
                   : stamp_match::stale;
    default: return stamp_match::stale; // version 2 included
    }
}

// The same, `now` given as a full stamp of the filesystem (jbtree-e2fs
// computes one: stamp_of()); anything else as `now` matches nothing.
[[nodiscard]] inline bool stamp_matches(const map_stamp& stored, const map_stamp& now) noexcept {
    return now.magic.get() == map_stamp_magic && now.version.get() == map_stamp_full &&
           match_stamp(stored, state_in(now)) != stamp_match::stale;
}

} // namespace jbtree
