// SPDX-License-Identifier: MIT
// jbtree: where an ext4 filesystem's journal lives, as jbtree log extents.
//
//   log_extent ext[64];  std::uint32_t n = 0;
//   errc e = ext2fs_adapter::journal_extents(fs, ext, 64, n);
//   jbd2::log_area<io_device> log(dev, ext, n);       // or jbd2::journal<...>
//
// Maps every block of the internal journal inode (s_journal_inum), in
// logical order, merging physically contiguous runs (a mkfs journal is one
// to a few extents): an extent-mapped inode by walking its extents, a
// block-mapped one with ext2fs_bmap2 block by block. Journal block 0 is the
// jbd2 superblock.
//
// errc::not_supported: no internal journal (s_journal_inum 0: none, or an
// external journal device); errc::corrupted: the inode is not a regular
// file of whole blocks, has a hole, or maps outside the filesystem;
// errc::range: more extents than `capacity` (n says how many were needed
// so far; call again with more room); errc::io: libext2fs failed
// (*ext2_error holds its errcode_t when given).
//
// Needs libext2fs (pkg-config ext2fs); not part of the freestanding core.
#pragma once

#include "jbtree/ext2fs/libext2fs.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "jbtree/base/errc.hpp"
#include "jbtree/journal/jbd2_log_area.hpp"

namespace jbtree::ext2fs_adapter {

[[nodiscard]] inline errc journal_extents(ext2_filsys fs, jbd2::log_extent* out, std::uint32_t capacity,
                                          std::uint32_t& n, errcode_t* ext2_error = nullptr) noexcept {
    n = 0;
    const ext2_ino_t ino = fs->super->s_journal_inum;
    if (ino == 0) return errc::not_supported;
    ext2_inode inode{};
    if (errcode_t e = ext2fs_read_inode(fs, ino, &inode)) {
        if (ext2_error) *ext2_error = e;
        return errc::io;
    }
    const std::uint64_t size = EXT2_I_SIZE(&inode);
    if (!LINUX_S_ISREG(inode.i_mode) || size == 0 || size % fs->blocksize) return errc::corrupted;
    const std::uint64_t blocks = size / fs->blocksize, fs_blocks = ext2fs_blocks_count(fs->super);
    if (blocks > 0xFFFF'FFFFull) return errc::corrupted; // jbd2 numbers log blocks in 32 bits
    std::uint32_t used = 0;
    // Append physical run [p, p + len) as the next logical blocks.
    auto append = [&](std::uint64_t p, std::uint64_t len) noexcept -> errc {
        if (p == 0 || p >= fs_blocks || len > fs_blocks - p) return errc::corrupted;
        while (len) {
            if (used && out && out[used - 1].start + out[used - 1].count == p && out[used - 1].count < 0xFFFF'FFFFu) {
                const std::uint64_t take = std::min<std::uint64_t>(len, 0xFFFF'FFFFu - out[used - 1].count);
                out[used - 1].count += static_cast<std::uint32_t>(take);
                p += take, len -= take;
                continue;
            }
            if (used == capacity || !out) {
                n = used + 1;
                return errc::range;
            }
            const std::uint64_t take = std::min<std::uint64_t>(len, 0xFFFF'FFFFu);
            out[used++] = jbd2::log_extent{p, static_cast<std::uint32_t>(take)};
            p += take, len -= take;
        }
        return errc::ok;
    };
    if (inode.i_flags & EXT4_EXTENTS_FL) {
        ext2_extent_handle_t h = nullptr;
        if (errcode_t e = ext2fs_extent_open2(fs, ino, &inode, &h)) {
            if (ext2_error) *ext2_error = e;
            return errc::corrupted;
        }
        ext2fs_extent x{};
        std::uint64_t next = 0;
        errc r = errc::ok;
        errcode_t e = ext2fs_extent_get(h, EXT2_EXTENT_ROOT, &x);
        for (; e == 0 && r == errc::ok; e = ext2fs_extent_get(h, EXT2_EXTENT_NEXT_LEAF, &x)) {
            if (!(x.e_flags & EXT2_EXTENT_FLAGS_LEAF)) continue;
            if (x.e_lblk != next || (x.e_flags & EXT2_EXTENT_FLAGS_UNINIT)) r = errc::corrupted; // a hole, or unwritten
            else r = append(x.e_pblk, std::min<std::uint64_t>(x.e_len, blocks - next)); // blocks past i_size are not log
            next += x.e_len;
            if (next >= blocks) break;
        }
        ext2fs_extent_free(h);
        if (r != errc::ok) return r;
        if (e && e != EXT2_ET_EXTENT_NO_NEXT) {
            if (ext2_error) *ext2_error = e;
            return errc::corrupted;
        }
        if (next < blocks) return errc::corrupted; // extents do not cover i_size
        n = used;
        return errc::ok;
    }
    for (std::uint64_t l = 0; l < blocks; ++l) {
        blk64_t p = 0;
        if (errcode_t e = ext2fs_bmap2(fs, ino, &inode, nullptr, 0, l, nullptr, &p)) {
            if (ext2_error) *ext2_error = e;
            return errc::io;
        }
        JBTREE_TRY(append(p, 1));
    }
    n = used;
    return errc::ok;
}

// The same into a vector, grown until every run fits (hosted callers).
[[nodiscard]] inline errc journal_extents(ext2_filsys fs, std::vector<jbd2::log_extent>& out,
                                          errcode_t* ext2_error = nullptr) {
    out.resize(64);
    for (;;) {
        std::uint32_t n = 0;
        const errc e = journal_extents(fs, out.data(), static_cast<std::uint32_t>(out.size()), n, ext2_error);
        if (e == errc::range && out.size() < 0x8000'0000u) {
            out.resize(out.size() * 2);
            continue;
        }
        out.resize(e == errc::ok ? n : 0);
        return e;
    }
}

} // namespace jbtree::ext2fs_adapter
