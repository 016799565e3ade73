// SPDX-License-Identifier: MIT
// jbtree: a scan_result filled by a program that walks the filesystem
// anyway (e2fsck's pass 1 and 2), instead of by scan_filesystem().
//
//   scan_collector c(fs);             static metadata added here
//   c.add_inode(ino, inode);          each inode in use, before its blocks
//   c.add_blocks(ino, lblk, pblk, len, flags);
//   c.add_link(dir, ino, name, len);  each directory entry but "." and ".."
//   scan_result r;
//   c.finish(r);                      the records scan_filesystem() gives
//
// Pieces arrive in any order and any size (single blocks of a block-mapped
// file, whole extents); finish() merges them exactly as scan_filesystem()
// does, so both ways of scanning give the same records. Blocks of an inode
// that add_inode() did not accept (no link, not a special inode) are
// dropped, like the scan drops them. Allocates (std::vector, std::string):
// hosted code, like the scan.
#pragma once

#include "jbtree/ext2fs/libext2fs.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "jbtree/base/errc.hpp"
#include "jbtree/ext2fs/map_file.hpp"
#include "jbtree/ext2fs/scan.hpp"
#include "jbtree/maps/rmap.hpp"

namespace jbtree::ext2fs_adapter {

class scan_collector {
public:
    // Flags of add_blocks(): the rmap's own (rmap_flags).
    static constexpr std::uint32_t unwritten = rmap_flags::unwritten; // an unwritten extent (data, with its offset)
    static constexpr std::uint32_t tree = rmap_flags::bmbt;           // an extent-tree or indirect block
    static constexpr std::uint32_t xattr = rmap_flags::xattr;         // the inode's xattr block

    explicit scan_collector(ext2_filsys fs)
        : fs_(fs), nblocks_(ext2fs_blocks_count(fs->super)), accepted_(std::size_t{fs->super->s_inodes_count} + 1) {
        // Room for what the superblock says is in use: an extent or two and
        // a name per inode (growing a large vector copies it and touches
        // its pages again).
        const std::size_t used = fs->super->s_inodes_count - fs->super->s_free_inodes_count;
        r_.rmap.reserve(used + used / 4 + 1024);
        r_.links.reserve(used + used / 4 + 16); // hard links: more names than inodes
        add_static_metadata(fs, r_.rmap);
    }

    // Inode `ino` as it is in the inode table. True if the maps hold it
    // (inode_in_maps()): its blocks given later are recorded, and its
    // entries if it is a directory. Each inode once.
    bool add_inode(std::uint64_t ino, const ext2_inode& inode) {
        if (ino == 0 || ino >= accepted_.size() || !inode_in_maps(fs_, ino, inode)) return false;
        if (accepted_[ino]) return true;
        accepted_[ino] = true;
        if (is_map_inode(static_cast<ext2_ino_t>(ino), inode)) map_is_ours_ = true; // jbtree's map file
        ++r_.inodes;
        if (LINUX_S_ISDIR(inode.i_mode) && inode.i_links_count) {
            ++r_.directories;
            dir_gens_.emplace_back(ino, inode.i_generation);
        }
        return true;
    }

    // Blocks [pblk, pblk + len) of inode `ino`: data at logical block
    // `lblk`, or with `tree` / `xattr` one of its mapping blocks or its
    // xattr block (lblk ignored). errc::range: outside the filesystem;
    // errc::invalid: len 0 or unknown flags. Ignored (ok) for an inode
    // add_inode() did not accept.
    [[nodiscard]] errc add_blocks(std::uint64_t ino, std::uint64_t lblk, std::uint64_t pblk, std::uint64_t len,
                                  std::uint32_t flags) {
        if (len == 0 || (flags & ~rmap_flags::all) != 0 || ((flags & (tree | xattr)) && (flags & unwritten)) ||
            (flags & tree && flags & xattr))
            return errc::invalid;
        if (pblk == 0 || pblk >= nblocks_ || len > nblocks_ - pblk) return errc::range;
        if (ino == 0 || ino >= accepted_.size() || !accepted_[ino]) return errc::ok;
        const std::uint64_t owner = owner_of_inode(fs_, ino, map_is_ours_ && ino == map_inode);
        if (rmap_owner::is_special(owner)) r_.rmap.push_back(rmap_record{pblk, len, owner, 0, 0});
        else if (flags & (tree | xattr)) r_.rmap.push_back(rmap_record{pblk, len, owner, 0, flags});
        else r_.rmap.push_back(rmap_record{pblk, len, owner, lblk, flags});
        return errc::ok;
    }

    // The entry `name` (len bytes) for inode `ino` in directory `dir`.
    // errc::invalid: an empty name, or inode 0.
    [[nodiscard]] errc add_link(std::uint64_t dir, std::uint64_t ino, const char* name, std::size_t len) {
        if (ino == 0 || dir == 0 || len == 0 || len > 255 || name == nullptr) return errc::invalid;
        r_.links.push_back(scan_link{ino, dir, 0, std::string(name, len)});
        return errc::ok;
    }

    // The records, merged and in key order, links with their directory's
    // generation (0 for a directory add_inode() never saw). The collector
    // is empty afterwards.
    void finish(scan_result& out) {
        detail::canonicalize(r_.rmap);
        r_.blocks_owned = 0;
        for (const rmap_record& x : r_.rmap) r_.blocks_owned += x.length;
        std::sort(dir_gens_.begin(), dir_gens_.end());
        for (scan_link& l : r_.links) {
            auto it = std::lower_bound(dir_gens_.begin(), dir_gens_.end(), std::pair<std::uint64_t, std::uint32_t>{l.parent, 0});
            if (it != dir_gens_.end() && it->first == l.parent) l.parent_gen = it->second;
        }
        out = std::move(r_);
        r_ = scan_result{};
        dir_gens_.clear();
    }

private:
    ext2_filsys fs_;
    std::uint64_t nblocks_;
    bool map_is_ours_ = false;
    std::vector<bool> accepted_; // by inode number: add_inode() said yes
    std::vector<std::pair<std::uint64_t, std::uint32_t>> dir_gens_;
    scan_result r_;
};

} // namespace jbtree::ext2fs_adapter
