// SPDX-License-Identifier: MIT
// jbtree: scan an ext4 filesystem with libext2fs into the records of the
// three maps (what `jbtree-e2fs build` loads).
//
//   ext2fs_adapter::scan_result r;
//   errc e = ext2fs_adapter::scan_filesystem(fs, r, [](std::uint64_t done, std::uint64_t total) {...});
//
// rmap records (canonical: merged, in key order):
//   - every inode in use: data blocks with their logical offsets (extents,
//     unwritten ones flagged `unwritten`, or block maps), extent-tree /
//     indirect blocks as `bmbt` records, the
//     extended-attribute block (i_file_acl) as an `xattr` record (a shared
//     xattr block gets one record per inode), an ea_inode's blocks as its
//     own data;
//   - the journal inode's blocks under rmap_owner::journal, the resize
//     inode's (reserved GDT blocks and its indirect block) under
//     rmap_owner::reserved_gdt, the bad-blocks inode's under
//     rmap_owner::unknown; the map file's (inode 5 marked by jbtree,
//     map_file.hpp) under rmap_owner::jbtree;
//   - per group: superblock copies and group descriptor blocks
//     (rmap_owner::fs), block and inode bitmaps (rmap_owner::bitmaps), the
//     inode table (rmap_owner::inode_table); the MMP block
//     (rmap_owner::unknown); for 1 KiB blocks, block 0 (the boot block) as fs.
// Parent links: every directory entry but "." and "..", with the
// directory's i_generation.
//
// The scan allocates (std::vector, std::string) and runs on the host, like
// libext2fs itself; it is not part of the freestanding core. Errors:
// errc::corrupted when an inode maps blocks outside the filesystem or
// libext2fs finds damaged metadata (a bad checksum, extent header,
// directory block: one of its own error codes but short reads and memory),
// errc::io when libext2fs fails otherwise; *ext2_error holds its code.
#pragma once

#include "jbtree/ext2fs/libext2fs.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "jbtree/base/errc.hpp"
#include "jbtree/ext2fs/map_file.hpp"
#include "jbtree/hosted/radix_sort.hpp"
#include "jbtree/maps/rmap.hpp"

namespace jbtree::ext2fs_adapter {

struct scan_link {
    std::uint64_t child = 0, parent = 0;
    std::uint32_t parent_gen = 0;
    std::string name;
};

struct scan_result {
    std::vector<rmap_record> rmap; // canonical, sorted by rmap key
    std::vector<scan_link> links;  // in directory order
    std::uint64_t inodes = 0;      // inodes in use
    std::uint64_t directories = 0;
    std::uint64_t blocks_owned = 0; // sum of rmap record lengths (0 when spilled to a sink)
};

// Where a scan in bounded memory puts its records (ext2fs/scan_spill.hpp):
// once the rmap records pass rmap_limit records, or the links
// link_limit bytes (link_bytes() each), they are handed to drain_rmap /
// drain_links (unsorted, as collected), which take them away (the vector
// is left empty). A drain that fails ends the scan with its error. Once
// something was drained, the rest is drained at the end of the scan too,
// and the scan's vector is freed: scan_result then holds only the counts.
struct scan_sink {
    std::size_t rmap_limit = 0; // records
    std::size_t link_limit = 0; // bytes
    errc (*drain_rmap)(void* ctx, std::vector<rmap_record>& v) = nullptr;
    errc (*drain_links)(void* ctx, std::vector<scan_link>& v) = nullptr;
    void* ctx = nullptr;
    bool rmap_drained = false, links_drained = false; // set by the scan
};

// What a link costs in memory while collected: the record, its name when
// longer than a short string holds, and an index entry while it is sorted.
[[nodiscard]] inline std::size_t link_bytes(const scan_link& l) noexcept {
    return sizeof(scan_link) + (l.name.size() > 15 ? l.name.size() + 1 : 0) + 32;
}

namespace detail {

struct block_walk {
    ext2_filsys fs;
    std::vector<rmap_record>* out;
    std::uint64_t owner;
    bool offsetless; // special owner: every block offset-less
    bool bad = false;
};

inline int collect_block(ext2_filsys fs, blk64_t* blocknr, e2_blkcnt_t blockcnt, blk64_t, int, void* priv) {
    auto* w = static_cast<block_walk*>(priv);
    const std::uint64_t b = *blocknr;
    if (b == 0) return 0;
    if (b >= ext2fs_blocks_count(fs->super)) {
        w->bad = true;
        return BLOCK_ABORT;
    }
    if (w->offsetless) w->out->push_back(rmap_record{b, 1, w->owner, 0, 0});
    else if (blockcnt < 0) w->out->push_back(rmap_record{b, 1, w->owner, 0, rmap_flags::bmbt});
    else w->out->push_back(rmap_record{b, 1, w->owner, static_cast<std::uint64_t>(blockcnt), 0});
    return 0;
}

// The fast path for an extent tree that lies entirely in i_block (depth
// 0, as for most files): one record per extent, read from the inode
// without libext2fs's per-block walk. False when the general walk must do
// it (block maps, deeper trees, anything unusual in the header or an
// extent: the walk then reports what libext2fs makes of it); sets `bad`
// when an extent maps outside the filesystem.
inline bool inline_extents(const ext2_inode& inode, std::uint64_t owner, bool offsetless, std::uint64_t nblocks,
                           std::vector<rmap_record>& out, bool& bad) {
    if (!(inode.i_flags & EXT4_EXTENTS_FL)) return false;
    const auto* raw = reinterpret_cast<const unsigned char*>(inode.i_block);
    auto u16 = [raw](std::size_t o) { return static_cast<std::uint32_t>(raw[o] | (raw[o + 1] << 8)); };
    auto u32 = [&](std::size_t o) { return u16(o) | (u16(o + 2) << 16); };
    const std::uint32_t magic = u16(0), entries = u16(2), max = u16(4), depth = u16(6);
    if (magic != 0xF30A || depth != 0 || max != 4 || entries > max) return false; // the kernel's rules for a root
    const std::size_t first = out.size();
    std::uint64_t next_lblk = 0;
    for (std::uint32_t i = 0; i < entries; ++i) {
        const std::size_t o = 12 + std::size_t{i} * 12; // after the 12-byte header, 12 bytes per extent
        const std::uint64_t lblk = u32(o), start = (std::uint64_t{u16(o + 6)} << 32) | u32(o + 8);
        std::uint64_t len = u16(o + 4);
        const bool unwritten = len > 32768; // allocated, not written: owned all the same
        if (unwritten) len -= 32768;
        if (len == 0 || start == 0 || lblk < next_lblk) { // empty, or out of order / overlapping
            out.resize(first);
            return false;
        }
        next_lblk = lblk + len;
        if (start >= nblocks || len > nblocks - start) {
            bad = true;
            return true;
        }
        out.push_back(rmap_record{start, len, owner, offsetless ? 0 : lblk,
                                  unwritten && !offsetless ? rmap_flags::unwritten : 0});
    }
    return true;
}

// Any extent tree, through libext2fs's extent handle: a record per leaf
// extent (unwritten ones flagged) and a `bmbt` record per index or leaf
// block of the tree. False if the inode is not extent-mapped (the caller
// walks its block map). errcode from libext2fs, or `bad` when an extent
// maps outside the filesystem.
inline bool tree_extents(ext2_filsys fs, ext2_ino_t ino, ext2_inode& inode, std::uint64_t owner, bool offsetless,
                         std::uint64_t nblocks, std::vector<rmap_record>& out, bool& bad, errcode_t& err) {
    if (!(inode.i_flags & EXT4_EXTENTS_FL)) return false;
    ext2_extent_handle_t h = nullptr;
    if ((err = ext2fs_extent_open2(fs, ino, &inode, &h))) return true;
    ext2fs_extent x{};
    errcode_t e = ext2fs_extent_get(h, EXT2_EXTENT_ROOT, &x);
    for (; e == 0; e = ext2fs_extent_get(h, EXT2_EXTENT_NEXT, &x)) {
        if (x.e_flags & EXT2_EXTENT_FLAGS_SECOND_VISIT) continue; // an index entry on the way back up
        const bool leaf = x.e_flags & EXT2_EXTENT_FLAGS_LEAF;
        const std::uint64_t len = leaf ? x.e_len : 1; // an index entry: its child block
        if (len == 0) continue;
        if (x.e_pblk == 0 || x.e_pblk >= nblocks || len > nblocks - x.e_pblk) {
            bad = true;
            break;
        }
        if (!leaf) out.push_back(rmap_record{x.e_pblk, 1, owner, 0, offsetless ? 0 : rmap_flags::bmbt});
        else
            out.push_back(rmap_record{x.e_pblk, len, owner, offsetless ? 0 : x.e_lblk,
                                      (x.e_flags & EXT2_EXTENT_FLAGS_UNINIT) && !offsetless ? rmap_flags::unwritten : 0});
    }
    ext2fs_extent_free(h);
    if (e && e != EXT2_ET_EXTENT_NO_NEXT) err = e;
    return true;
}

struct dir_walk {
    std::vector<scan_link>* out;
    std::uint64_t dir;
    std::uint32_t gen;
    scan_sink* sink = nullptr;
    std::size_t* held = nullptr; // link_bytes() of out's links (with a sink)
    errc error = errc::ok;       // a drain's
};

inline int collect_entry(ext2_ino_t, int entry, ext2_dir_entry* dirent, int, int, char*, void* priv) {
    if (entry == DIRENT_DOT_FILE || entry == DIRENT_DOT_DOT_FILE) return 0;
    auto* w = static_cast<dir_walk*>(priv);
    const int len = ext2fs_dirent_name_len(dirent);
    if (dirent->inode == 0 || len <= 0) return 0;
    w->out->push_back(scan_link{dirent->inode, w->dir, w->gen, std::string(dirent->name, static_cast<std::size_t>(len))});
    if (w->sink) {
        *w->held += link_bytes(w->out->back());
        if (*w->held > w->sink->link_limit) {
            w->sink->links_drained = true;
            *w->held = 0;
            if ((w->error = w->sink->drain_links(w->sink->ctx, *w->out)) != errc::ok) return DIRENT_ABORT;
            w->out->clear();
        }
    }
    return 0;
}

// Merge, in place, each record into the one kept before it when they
// continue each other (same owner and flags, physically and, unless
// offset-less, logically), and drop one that repeats blocks of the one
// before (listed twice).
inline void merge_neighbours(std::vector<rmap_record>& v) {
    std::size_t n = 0; // records kept so far
    for (std::size_t i = 0; i < v.size(); ++i) {
        const rmap_record r = v[i];
        if (n) {
            rmap_record& p = v[n - 1];
            if (p.owner == r.owner && p.flags == r.flags && p.start + p.length == r.start &&
                (rmap_offsetless(r.owner, r.flags) || p.offset + p.length == r.offset)) {
                p.length += r.length;
                continue;
            }
            if (p.owner == r.owner && p.flags == r.flags && r.start < p.start + p.length) continue; // listed twice
        }
        v[n++] = r;
    }
    v.resize(n);
}

inline bool rmap_key_less(const rmap_record& a, const rmap_record& b) noexcept {
    return rmap_traits::compare(a.key(), b.key()) < 0;
}

// The general path: grouped by owner and flags, in block order, merged,
// then sorted by key. Any input (shared blocks, pieces listed twice).
inline void canonicalize_by_owner(std::vector<rmap_record>& v) {
    auto by_owner = [](const rmap_record& a, const rmap_record& b) {
        if (a.owner != b.owner) return a.owner < b.owner;
        if (a.flags != b.flags) return a.flags < b.flags;
        return a.start < b.start;
    };
    if (!std::is_sorted(v.begin(), v.end(), by_owner)) std::sort(v.begin(), v.end(), by_owner);
    merge_neighbours(v);
    if (!std::is_sorted(v.begin(), v.end(), rmap_key_less)) std::sort(v.begin(), v.end(), rmap_key_less);
}

// Merge single-block pieces into canonical records (merge_neighbours()'s
// rule), in key order. The common case takes one sort: when no two pieces
// share a block (no reflink, nothing listed twice), pieces that merge are
// neighbours in key order (anything between them would share a block with
// one of them), so one pass in key order merges exactly what the general
// path merges.
inline void canonicalize(std::vector<rmap_record>& v) {
    if (!std::is_sorted(v.begin(), v.end(), rmap_key_less))
        hosted::radix_sort(v, [](const rmap_record& x) { return x.start; }, rmap_key_less);
    for (std::size_t i = 1; i < v.size(); ++i)
        if (v[i].start - v[i - 1].start < v[i - 1].length) return canonicalize_by_owner(v); // a block shared
    merge_neighbours(v);
}

} // namespace detail

// Is a libext2fs error code about damaged metadata (rather than I/O or memory)?
[[nodiscard]] inline bool is_damage(errcode_t e) noexcept {
    return e > EXT2_ET_BASE && e < EXT2_ET_BASE + 256 && e != EXT2_ET_SHORT_READ && e != EXT2_ET_SHORT_WRITE &&
           e != EXT2_ET_NO_MEMORY;
}

// The first block a record owns that the block bitmap (fs->block_map,
// loaded) marks free, or 0 if there is none; *owner_out gets its owner.
// Blocks before s_first_data_block are not in the bitmap.
// The same for one record: its first block marked free, or 0.
[[nodiscard]] inline std::uint64_t first_free_block_of(ext2_filsys fs, const rmap_record& x) noexcept {
    const std::uint64_t lo = std::max<std::uint64_t>(x.start, fs->super->s_first_data_block), hi = x.start + x.length - 1;
    blk64_t hole = 0;
    if (lo <= hi && ext2fs_find_first_zero_block_bitmap2(fs->block_map, lo, hi, &hole) == 0) return hole;
    return 0;
}
[[nodiscard]] inline std::uint64_t first_owned_but_free(ext2_filsys fs, const std::vector<rmap_record>& records,
                                                        std::uint64_t* owner_out = nullptr) {
    for (const rmap_record& x : records) {
        if (const std::uint64_t hole = first_free_block_of(fs, x)) {
            if (owner_out) *owner_out = x.owner;
            return hole;
        }
    }
    return 0;
}

// The blocks no inode maps, as records of single blocks (the caller
// canonicalizes): per group, superblock copies and group descriptor blocks
// (rmap_owner::fs), block and inode bitmaps (bitmaps), the inode table
// (inode_table); the MMP block (unknown); for 1 KiB blocks, block 0 (the
// boot block) as fs.
inline void add_static_metadata(ext2_filsys fs, std::vector<rmap_record>& out) {
    const std::uint64_t nblocks = ext2fs_blocks_count(fs->super);
    auto add_range = [&](std::uint64_t start, std::uint64_t len, std::uint64_t owner) {
        for (std::uint64_t b = start; b < start + len && b < nblocks; ++b) out.push_back(rmap_record{b, 1, owner, 0, 0});
    };
    if (fs->blocksize == 1024) add_range(0, 1, rmap_owner::fs);
    for (dgrp_t g = 0; g < fs->group_desc_count; ++g) {
        blk64_t super = 0, old_desc = 0, new_desc = 0;
        blk_t used = 0;
        ext2fs_super_and_bgd_loc2(fs, g, &super, &old_desc, &new_desc, &used);
        if (super || g == 0) add_range(super, 1, rmap_owner::fs);
        if (old_desc) add_range(old_desc, fs->desc_blocks, rmap_owner::fs);
        if (new_desc) add_range(new_desc, 1, rmap_owner::fs);
        add_range(ext2fs_block_bitmap_loc(fs, g), 1, rmap_owner::bitmaps);
        add_range(ext2fs_inode_bitmap_loc(fs, g), 1, rmap_owner::bitmaps);
        add_range(ext2fs_inode_table_loc(fs, g), fs->inode_blocks_per_group, rmap_owner::inode_table);
    }
    if (ext2fs_has_feature_mmp(fs->super) && fs->super->s_mmp_block) add_range(fs->super->s_mmp_block, 1, rmap_owner::unknown);
}

// Does the maps' content include inode `ino` (its blocks, and its entries
// if a directory)? Every inode with a link, and the bad-blocks, resize and
// journal inodes, which have none.
[[nodiscard]] inline bool inode_in_maps(ext2_filsys fs, std::uint64_t ino, const ext2_inode& inode) noexcept {
    return inode.i_links_count != 0 || ino == EXT2_BAD_INO || ino == EXT2_RESIZE_INO || ino == fs->super->s_journal_inum;
}

// Who owns the blocks inode `ino` maps: the inode itself, or for the
// journal, resize and bad-blocks inodes and jbtree's map file
// (`is_map_file`: inode 5 marked by jbtree) their special owner, whose
// records are offset-less.
[[nodiscard]] inline std::uint64_t owner_of_inode(ext2_filsys fs, std::uint64_t ino, bool is_map_file) noexcept {
    if (ino == fs->super->s_journal_inum) return rmap_owner::journal;
    if (ino == EXT2_RESIZE_INO) return rmap_owner::reserved_gdt;
    if (ino == EXT2_BAD_INO) return rmap_owner::unknown;
    if (is_map_file) return rmap_owner::jbtree;
    return ino;
}

// With a sink (scan_sink), the records are handed to it as they pass its
// limits instead of all being held here: see scan_sink.
template <class Progress>
[[nodiscard]] errc scan_filesystem(ext2_filsys fs, scan_result& out, Progress&& progress,
                                   errcode_t* ext2_error = nullptr, scan_sink* sink = nullptr) {
    auto fail = [&](errcode_t e) {
        if (ext2_error) *ext2_error = e;
        return is_damage(e) ? errc::corrupted : errc::io;
    };
    out = scan_result{};
    const std::uint64_t nblocks = ext2fs_blocks_count(fs->super);
    {
        // Room for what the superblock says is in use, generously: growing
        // a large vector holds the old and the new array at once (at 10
        // million files that was the build's peak), while capacity never
        // touched costs address space, not memory.
        const std::size_t used = fs->super->s_inodes_count - fs->super->s_free_inodes_count;
        std::size_t rmap_room = 2 * used + std::size_t{fs->group_desc_count} * 8 + 1024;
        std::size_t link_room = used + used / 4 + 16; // hard links: more names than inodes
        if (sink) {
            rmap_room = std::min(rmap_room, sink->rmap_limit + 1);
            link_room = std::min(link_room, sink->link_limit / (sizeof(scan_link) + 32) + 1);
        }
        out.rmap.reserve(rmap_room);
        out.links.reserve(link_room);
    }
    add_static_metadata(fs, out.rmap);

    // Inodes.
    ext2_inode_scan scan = nullptr;
    if (errcode_t e = ext2fs_open_inode_scan(fs, 256, &scan)) return fail(e); // inode tables read 256 blocks at a time
    const std::uint64_t total = fs->super->s_inodes_count;
    std::vector<ext2_ino_t> dirs;
    std::vector<std::uint32_t> dir_gens;
    ext2_inode inode{};
    for (std::uint64_t n = 0;; ++n) {
        ext2_ino_t ino = 0;
        errcode_t e = ext2fs_get_next_inode(scan, &ino, &inode);
        if (e == EXT2_ET_BAD_BLOCK_IN_INODE_TABLE) continue;
        if (e) {
            ext2fs_close_inode_scan(scan);
            return fail(e);
        }
        if (ino == 0) break;
        if ((n & 0x3FFF) == 0) progress(ino, total);
        if (!inode_in_maps(fs, ino, inode)) continue;
        ++out.inodes;
        const std::uint64_t owner = owner_of_inode(fs, ino, is_map_inode(ino, inode));
        const bool offsetless = rmap_owner::is_special(owner);
        bool bad = false;
        errcode_t xe = 0;
        // The bad-blocks inode has mode 0, for which libext2fs says "no
        // valid blocks"; its block map lists the bad blocks all the same
        // (e2fsck's pass 1 walks it).
        if ((ext2fs_inode_has_valid_blocks2(fs, &inode) || ino == EXT2_BAD_INO) &&
            !detail::inline_extents(inode, owner, offsetless, nblocks, out.rmap, bad) &&
            !detail::tree_extents(fs, ino, inode, owner, offsetless, nblocks, out.rmap, bad, xe)) {
            detail::block_walk w{fs, &out.rmap, owner, offsetless};
            e = ext2fs_block_iterate3(fs, ino, BLOCK_FLAG_READ_ONLY, nullptr, detail::collect_block, &w);
            if (w.bad) {
                ext2fs_close_inode_scan(scan);
                return errc::corrupted;
            }
            if (e) {
                ext2fs_close_inode_scan(scan);
                return fail(e);
            }
        }
        if (bad) {
            ext2fs_close_inode_scan(scan);
            return errc::corrupted;
        }
        if (xe) {
            ext2fs_close_inode_scan(scan);
            return fail(xe);
        }
        const blk64_t acl = ext2fs_file_acl_block(fs, &inode);
        if (acl && acl < nblocks) out.rmap.push_back(rmap_record{acl, 1, owner, 0, offsetless ? 0 : rmap_flags::xattr});
        if (LINUX_S_ISDIR(inode.i_mode) && inode.i_links_count) {
            dirs.push_back(ino);
            dir_gens.push_back(inode.i_generation);
        }
        if (sink && out.rmap.size() > sink->rmap_limit) {
            sink->rmap_drained = true;
            if (const errc de = sink->drain_rmap(sink->ctx, out.rmap); de != errc::ok) {
                ext2fs_close_inode_scan(scan);
                return de;
            }
            out.rmap.clear();
        }
    }
    ext2fs_close_inode_scan(scan);
    progress(total, total);
    if (sink && sink->rmap_drained) { // the rest, and the memory back for the links
        if (const errc de = sink->drain_rmap(sink->ctx, out.rmap); de != errc::ok) return de;
        std::vector<rmap_record>().swap(out.rmap);
    }

    // Directory entries.
    out.directories = dirs.size();
    std::size_t held = 0;
    for (std::size_t i = 0; i < dirs.size(); ++i) {
        detail::dir_walk w{&out.links, dirs[i], dir_gens[i], sink, &held};
        errcode_t e = ext2fs_dir_iterate2(fs, dirs[i], 0, nullptr, detail::collect_entry, &w);
        if (w.error != errc::ok) return w.error;
        if (e) return fail(e);
    }
    if (sink && sink->links_drained) {
        if (const errc de = sink->drain_links(sink->ctx, out.links); de != errc::ok) return de;
        std::vector<scan_link>().swap(out.links);
    }
    if (sink && sink->rmap_drained) return errc::ok;
    detail::canonicalize(out.rmap);
    for (const rmap_record& r : out.rmap) out.blocks_owned += r.length;
    return errc::ok;
}

} // namespace jbtree::ext2fs_adapter
