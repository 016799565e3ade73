// SPDX-License-Identifier: MIT
// jbtree: where an ext4 image keeps its jbtree maps, and how to recognise
// them (docs/format.md section 8, docs/e2fsprogs.md).
//
// The maps live in one jbtree volume (external journal: the image's own
// jbd2 journal) that fills the blocks of the *map file*: the reserved
// inode 5 (EXT2_BOOT_LOADER_INO), made a regular, extent-mapped file whose
// data blocks are one physically contiguous run [first, first + blocks),
// its i_generation set to map_inode_marker. Up to 4 extents (131,072
// blocks) fit in the inode; a longer run gets an extent tree of whatever
// depth it needs, its blocks packed full and placed right after the run
// (write_map_file_tree()). e2fsck checks a reserved inode's
// blocks like any file's (they are counted as in use, owned once, inside
// the filesystem), does not look inside, and needs no directory entry for
// it; the kernel never reads inode 5 (only EXT4_IOC_SWAP_BOOT does, and an
// image whose inode 5 is in use for that is refused: "foreign").
//
// The volume's owner_data holds the maps' stamp (jbtree/maps/map_stamp.hpp,
// shared with the kernel glue). Version 1, the full stamp: what the
// filesystem looked like right after the build (or, written by the patched
// kernel, right after its clean unmount), so that a later change of the
// filesystem (a mount, a write through libext2fs, a repair) shows the maps
// as stale. Version 3, the live stamp: written by the patched kernel
// (contrib/linux/) in its first handle after it opens the maps at mount,
// "kept live since mount M", M named by the s_mnt_count, s_mtime, s_wtime
// and s_kbytes_written that mount wrote into the superblock; the maps are
// then current at every commit of the journal, so after a crash and any
// replay they are fresh while the superblock still names that mount
// (docs/kernel.md, "Crashes").
//
// Needs libext2fs (pkg-config ext2fs); not part of the freestanding core.
#pragma once

#include "jbtree/ext2fs/libext2fs.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "jbtree/base/crc32c.hpp"
#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"
#include "jbtree/maps/map_stamp.hpp"
#include "jbtree/volume/volume.hpp"

namespace jbtree::ext2fs_adapter {

inline constexpr ext2_ino_t map_inode = EXT2_BOOT_LOADER_INO;
inline constexpr std::uint32_t map_inode_marker = 0x4A425452u; // i_generation, "JBTR"
// An initialised extent maps at most this many blocks; the inode holds
// at most 4 extents (or index entries) itself.
inline constexpr std::uint32_t extent_max_blocks = 32768;
inline constexpr std::uint32_t extents_in_inode = 4;

// Tree slots of the maps' volume.
inline constexpr std::uint32_t map_slot_rmap = 0, map_slot_refcount = 1, map_slot_parent = 2;

// The maps' stamp (the volume's owner_data): its layout and the rule
// that says whether it is fresh are jbtree/maps/map_stamp.hpp's, shared
// with the kernel glue; here, the filesystem's state read with libext2fs.
using jbtree::full_stamp;
using jbtree::live_stamp;
using jbtree::map_fs_state;
using jbtree::map_stamp;
using jbtree::map_stamp_abandoned;
using jbtree::map_stamp_full;
using jbtree::map_stamp_live;
using jbtree::map_stamp_live_v2;
using jbtree::map_stamp_magic;
using jbtree::match_stamp;
using jbtree::stamp_match;
using jbtree::stamp_matches;
using jbtree::state_in;
static_assert(sizeof(map_stamp) == volume_owner_data_size);

// The filesystem's state (the superblock libext2fs holds, and its group
// descriptors).
[[nodiscard]] inline map_fs_state fs_state_of(ext2_filsys fs) noexcept {
    ext2_super_block* s = fs->super; // libext2fs's accessors take it non-const
    map_fs_state st;
    st.wtime = s->s_wtime | (std::uint64_t{s->s_wtime_hi} << 32);
    st.mtime = s->s_mtime | (std::uint64_t{s->s_mtime_hi} << 32);
    st.kbytes_written = s->s_kbytes_written;
    st.free_blocks = ext2fs_free_blocks_count(s);
    st.free_inodes = s->s_free_inodes_count;
    st.mnt_count = s->s_mnt_count;
    std::uint32_t c = ~0u;
    const std::size_t desc = EXT2_DESC_SIZE(s);
    for (dgrp_t g = 0; g < fs->group_desc_count; ++g)
        c = crc32c_raw(c, reinterpret_cast<const unsigned char*>(ext2fs_group_desc(fs, fs->group_desc, g)), desc);
    st.gdt_crc = c;
    return st;
}

// The filesystem's state as a full stamp (built_at left 0).
[[nodiscard]] inline map_stamp stamp_of(ext2_filsys fs) noexcept { return full_stamp(fs_state_of(fs), 0); }

enum class map_file_state : std::uint8_t {
    absent,  // inode 5 unused: no maps stored
    present, // a map file: [first, first + blocks), its first block a volume superblock
    foreign, // inode 5 is in use by something else: left alone
    damaged, // marked as the map file, but its inode or mapping is wrong
};

[[nodiscard]] constexpr const char* describe(map_file_state s) noexcept {
    switch (s) {
    case map_file_state::absent: return "no maps stored";
    case map_file_state::present: return "maps stored";
    case map_file_state::foreign: return "inode 5 is in use by something other than jbtree";
    case map_file_state::damaged: return "the map file (inode 5) is damaged";
    }
    return "unknown";
}

struct map_file {
    map_file_state state = map_file_state::absent;
    std::uint64_t first = 0;  // first block (the volume superblock)
    std::uint64_t blocks = 0; // length of the run
    const char* problem = ""; // for damaged: what is wrong
};

// Is this inode (read by the caller) marked as the map file?
[[nodiscard]] inline bool is_map_inode(ext2_ino_t ino, const ext2_inode& inode) noexcept {
    return ino == map_inode && inode.i_generation == map_inode_marker && LINUX_S_ISREG(inode.i_mode);
}

// Find the map file: read inode 5 and walk its extents; `present` also
// needs a volume superblock magic at the first block (the volume checks the
// rest when it opens). errc::io (and *ext2_error) when libext2fs fails.
[[nodiscard]] inline errc locate_map_file(ext2_filsys fs, map_file& out, errcode_t* ext2_error = nullptr) noexcept {
    out = map_file{};
    auto fail = [&](errcode_t e) noexcept {
        if (ext2_error) *ext2_error = e;
        return errc::io;
    };
    auto damaged = [&](const char* why) noexcept {
        out.state = map_file_state::damaged;
        out.problem = why;
        return errc::ok;
    };
    ext2_inode inode{};
    if (errcode_t e = ext2fs_read_inode(fs, map_inode, &inode)) return fail(e);
    if (!is_map_inode(map_inode, inode)) {
        bool empty = inode.i_mode == 0 && inode.i_blocks == 0 && inode.i_links_count == 0;
        out.state = empty ? map_file_state::absent : map_file_state::foreign;
        return errc::ok;
    }
    if (!(inode.i_flags & EXT4_EXTENTS_FL)) return damaged("not extent-mapped");
    const std::uint64_t size = EXT2_I_SIZE(&inode), bs = fs->blocksize, nblocks = ext2fs_blocks_count(fs->super);
    if (size == 0 || size % bs || size / bs > nblocks) return damaged("size out of range");
    ext2_extent_handle_t h = nullptr;
    if (errcode_t e = ext2fs_extent_open2(fs, map_inode, &inode, &h)) {
        if (e == EXT2_ET_EXTENT_HEADER_BAD || e == EXT2_ET_EXTENT_INDEX_BAD) return damaged("bad extent header");
        return fail(e);
    }
    ext2fs_extent x{};
    std::uint64_t first = 0, next = 0;
    const char* why = nullptr;
    errcode_t e = ext2fs_extent_get(h, EXT2_EXTENT_ROOT, &x);
    for (; e == 0; e = ext2fs_extent_get(h, EXT2_EXTENT_NEXT, &x)) { // every entry of a tree of any depth
        if (!(x.e_flags & EXT2_EXTENT_FLAGS_LEAF) || (x.e_flags & EXT2_EXTENT_FLAGS_SECOND_VISIT)) continue;
        if (next == 0) first = x.e_pblk;
        if (x.e_lblk != next || x.e_pblk != first + next || (x.e_flags & EXT2_EXTENT_FLAGS_UNINIT) || x.e_len == 0) {
            why = "not one contiguous run of initialised blocks";
            break;
        }
        next += x.e_len;
    }
    ext2fs_extent_free(h);
    if (why) return damaged(why);
    if (e && e != EXT2_ET_EXTENT_NO_NEXT && e != EXT2_ET_EXTENT_NO_DOWN) {
        if (e == EXT2_ET_EXTENT_HEADER_BAD || e == EXT2_ET_EXTENT_INDEX_BAD) return damaged("bad extent tree");
        return fail(e);
    }
    if (next * bs != size) return damaged("blocks do not cover its size");
    if (first == 0 || first >= nblocks || next > nblocks - first) return damaged("blocks outside the filesystem");
    struct free_deleter {
        void operator()(unsigned char* p) const noexcept { std::free(p); }
    };
    std::unique_ptr<unsigned char, free_deleter> sb(static_cast<unsigned char*>(std::malloc(bs)));
    if (!sb) return errc::no_memory;
    if (errcode_t re = io_channel_read_blk64(fs->io, first, 1, sb.get())) return fail(re);
    if (load_le<std::uint32_t>(sb.get()) != volume_magic) return damaged("no volume superblock in its first block");
    out.state = map_file_state::present;
    out.first = first;
    out.blocks = next;
    return errc::ok;
}

// The shape of the map file's extent tree for a run of `blocks` blocks:
// its depth (0: every extent in the inode) and the tree blocks it needs
// outside the inode (every level packed full, as few blocks as possible,
// so e2fsck never finds it worth narrowing or collapsing).
struct map_file_tree_shape {
    std::uint32_t depth = 0;
    std::uint64_t tree_blocks = 0;
};

// Entries (extents or index entries) of one extent-tree block: the
// 12-byte header, then 12-byte entries; the 4-byte checksum tail of
// metadata_csum fits after them at every block size.
[[nodiscard]] constexpr std::uint64_t extent_entries_per_block(std::uint32_t block_size) noexcept {
    return (block_size - 12u) / 12u;
}

[[nodiscard]] constexpr map_file_tree_shape map_file_tree_of(std::uint64_t blocks, std::uint32_t block_size) noexcept {
    map_file_tree_shape t;
    const std::uint64_t per = extent_entries_per_block(block_size);
    for (std::uint64_t n = (blocks + extent_max_blocks - 1) / extent_max_blocks; n > extents_in_inode;
         n = (n + per - 1) / per) {
        t.tree_blocks += (n + per - 1) / per;
        ++t.depth;
    }
    return t;
}

// One entry of an extent-tree node: an extent (in a node of depth 0:
// logical start, physical start, length, unwritten) or an index entry
// (depth > 0: the first logical block below it and its child's block).
struct extent_entry {
    std::uint64_t lblk = 0, pblk = 0, len = 0;
    bool unwritten = false;
};

// Encode an extent-tree node (the inode's i_block, or a tree block) at p:
// the header (eh_magic 0xF30A, eh_entries, eh_max, eh_depth,
// eh_generation 0), then 12-byte entries: an extent is ee_block, ee_len
// (plus 32768 when unwritten), ee_start_hi, ee_start_lo; an index entry
// ei_block, ei_leaf_lo, ei_leaf_hi, ei_unused. The bytes after the
// entries are the caller's.
inline void store_extent_node(unsigned char* p, const extent_entry* e, std::size_t n, std::uint64_t max,
                              std::uint32_t depth) noexcept {
    store_le<std::uint16_t>(p, 0xF30A);
    store_le<std::uint16_t>(p + 2, static_cast<std::uint16_t>(n));
    store_le<std::uint16_t>(p + 4, static_cast<std::uint16_t>(max));
    store_le<std::uint16_t>(p + 6, static_cast<std::uint16_t>(depth));
    store_le<std::uint32_t>(p + 8, 0);
    for (std::size_t i = 0; i < n; ++i) {
        unsigned char* q = p + 12 + i * 12;
        store_le<std::uint32_t>(q, static_cast<std::uint32_t>(e[i].lblk));
        if (depth == 0) {
            store_le<std::uint16_t>(q + 4, static_cast<std::uint16_t>(e[i].len + (e[i].unwritten ? 32768 : 0)));
            store_le<std::uint16_t>(q + 6, static_cast<std::uint16_t>(e[i].pblk >> 32));
            store_le<std::uint32_t>(q + 8, static_cast<std::uint32_t>(e[i].pblk));
        } else {
            store_le<std::uint32_t>(q + 4, static_cast<std::uint32_t>(e[i].pblk));
            store_le<std::uint16_t>(q + 8, static_cast<std::uint16_t>(e[i].pblk >> 32));
            store_le<std::uint16_t>(q + 10, 0);
        }
    }
}

// Write the map file's extent tree for the run [first, first + blocks)
// (logical block 0 at `first`): its tree blocks at tree_first,
// tree_first + step, ... (step: the cluster size, so that each tree block
// has a cluster of its own under bigalloc), checksummed for inode `ino`
// (already written with its i_generation: the checksum covers it), and
// its root into inode.i_block (i_flags, i_size and i_blocks are the
// caller's). The blocks are written through fs->io, so inside a journaled
// build they go into the transaction. The caller has marked every block in
// use. A libext2fs error code, or 0.
[[nodiscard]] inline errcode_t write_map_file_tree(ext2_filsys fs, ext2_ino_t ino, ext2_inode& inode, std::uint64_t first,
                                                   std::uint64_t blocks, std::uint64_t tree_first, std::uint64_t step) {
    const std::uint32_t bs = fs->blocksize;
    const std::uint64_t per = extent_entries_per_block(bs);
    std::vector<extent_entry> level;
    level.reserve(static_cast<std::size_t>((blocks + extent_max_blocks - 1) / extent_max_blocks));
    for (std::uint64_t l = 0; l < blocks; l += extent_max_blocks)
        level.push_back({l, first + l, std::min<std::uint64_t>(extent_max_blocks, blocks - l)});
    std::vector<unsigned char> buf(bs);
    std::uint64_t next = tree_first;
    std::uint32_t depth = 0;
    while (level.size() > extents_in_inode) { // one level of tree blocks, bottom up
        std::vector<extent_entry> up;
        up.reserve(static_cast<std::size_t>((level.size() + per - 1) / per));
        for (std::size_t i = 0; i < level.size(); i += per) {
            const std::size_t n = std::min<std::size_t>(per, level.size() - i);
            std::fill(buf.begin(), buf.end(), 0);
            store_extent_node(buf.data(), level.data() + i, n, per, depth);
            if (errcode_t e = ext2fs_extent_block_csum_set(fs, ino, reinterpret_cast<ext3_extent_header*>(buf.data())))
                return e;
            if (errcode_t e = io_channel_write_blk64(fs->io, next, 1, buf.data())) return e;
            up.push_back({level[i].lblk, next});
            next += step;
        }
        level = std::move(up);
        ++depth;
    }
    unsigned char root[sizeof inode.i_block] = {};
    store_extent_node(root, level.data(), level.size(), extents_in_inode, depth);
    std::memcpy(inode.i_block, root, sizeof root);
    return 0;
}

// The stamp the maps of `fs` carry, read from the map file's volume
// superblock into `st`, with the block itself into `blk` (allocated here,
// fs->blocksize bytes) and the map file's place into `mf`. `found` is false
// when there is no stamp to read: no map file (absent, foreign, damaged) or
// a volume superblock whose magic or checksum is wrong. errc::io when
// libext2fs fails, errc::no_memory.
[[nodiscard]] inline errc read_map_stamp(ext2_filsys fs, map_file& mf, std::unique_ptr<unsigned char[]>& blk, map_stamp& st,
                                         bool& found) noexcept {
    found = false;
    blk.reset(new (std::nothrow) unsigned char[fs->blocksize]);
    if (!blk) return errc::no_memory;
    if (locate_map_file(fs, mf) != errc::ok) return errc::io;
    if (mf.state != map_file_state::present) return errc::ok;
    if (io_channel_read_blk64(fs->io, mf.first, 1, blk.get())) return errc::io;
    const auto* vsb = reinterpret_cast<const volume_superblock*>(blk.get());
    if (vsb->magic.get() != volume_magic || vsb->checksum.get() != volume_sb_checksum(blk.get())) return errc::ok;
    std::memcpy(&st, vsb->owner_data, sizeof st);
    found = true;
    return errc::ok;
}

// Whether the maps of `fs` were current when the filesystem was in state
// `then` (stamp_of() taken at that moment): a full stamp equal to it, or a
// live stamp naming its mount. Sets *current; false also when no maps are
// stored. errc::io when libext2fs fails.
[[nodiscard]] inline errc maps_current_for(ext2_filsys fs, const map_stamp& then, bool& current) noexcept {
    map_file mf;
    std::unique_ptr<unsigned char[]> blk;
    map_stamp st;
    bool found = false;
    const errc e = read_map_stamp(fs, mf, blk, st, found);
    current = e == errc::ok && found && stamp_matches(st, then);
    return e;
}

// After a tool that changed nothing but what a journal replay restores
// (jbtree-e2fs replay, the patched e2fsck) wrote the superblock, which sets
// s_wtime and raises s_kbytes_written: if the maps carry a live stamp that
// was fresh for `before` (stamp_of() of the replayed filesystem, taken
// before the tool's writes), move it to the s_wtime and s_kbytes_written of
// `fs`, so that they read as fresh as they did before. As a backstop for
// a tool that changed more than it knows, the group descriptors must be
// what they were in `before` (a block or inode freed or allocated since
// changes their counts): else nothing is carried. `fs` must be the
// filesystem opened again after the tool's last superblock write
// (ext2fs_close writes it once more, with the bytes written added), and
// must not write the superblock itself afterwards (close_without_writing):
// its superblock is then exactly what is on disk. The volume superblock is
// rewritten in place (generation + 1, checksum), as the kernel writes its
// stamps. errc::io when libext2fs fails; a map file that is absent,
// foreign or damaged, or any other stamp, is left alone (errc::ok, and
// *carried, if given, false).
[[nodiscard]] inline errc carry_live_stamp(ext2_filsys fs, const map_stamp& before, bool* carried = nullptr) noexcept {
    if (carried) *carried = false;
    map_file mf;
    std::unique_ptr<unsigned char[]> blk;
    map_stamp st;
    bool found = false;
    if (const errc e = read_map_stamp(fs, mf, blk, st, found); e != errc::ok) return e;
    if (!found || st.version.get() != map_stamp_live || !stamp_matches(st, before)) return errc::ok;
    const map_fs_state now = fs_state_of(fs);
    if (now.gdt_crc != before.gdt_crc.get()) return errc::ok; // allocations changed since `before`
    st.fs_wtime.set(now.wtime);
    st.kbytes_written.set(now.kbytes_written);
    auto* vsb = reinterpret_cast<volume_superblock*>(blk.get());
    std::memcpy(vsb->owner_data, &st, sizeof st);
    vsb->generation.set(vsb->generation.get() + 1);
    vsb->checksum.set(volume_sb_checksum(blk.get()));
    if (io_channel_write_blk64(fs->io, mf.first, 1, blk.get()) || io_channel_flush(fs->io)) return errc::io;
    if (carried) *carried = true;
    return errc::ok;
}

} // namespace jbtree::ext2fs_adapter
