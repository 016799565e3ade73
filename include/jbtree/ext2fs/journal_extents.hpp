// SPDX-License-Identifier: MIT
// jbtree: where an ext4 filesystem's journal lives, as jbtree log extents.
//
//   log_extent ext[64];  std::uint32_t n = 0;
//   errc e = ext2fs_adapter::journal_extents(fs, ext, 64, n);
//   jbd2::log_area<io_device> log(dev, ext, n);       // or jbd2::journal<...>
//
// Maps every block of the internal journal inode (s_journal_inum) with
// ext2fs_bmap2, in logical order, merging physically contiguous runs (a
// mkfs journal is one to a few extents). Journal block 0 is the jbd2
// superblock.
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

#include <ext2fs/ext2fs.h>

#include <cstdint>

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
    for (std::uint64_t l = 0; l < blocks; ++l) {
        blk64_t p = 0;
        if (errcode_t e = ext2fs_bmap2(fs, ino, &inode, nullptr, 0, l, nullptr, &p)) {
            if (ext2_error) *ext2_error = e;
            return errc::io;
        }
        if (p == 0 || p >= fs_blocks) return errc::corrupted;
        if (used && out && out[used - 1].start + out[used - 1].count == p && out[used - 1].count < 0xFFFF'FFFFu) {
            ++out[used - 1].count;
            continue;
        }
        if (used == capacity || !out) {
            n = used + 1;
            return errc::range;
        }
        out[used++] = jbd2::log_extent{p, 1};
    }
    n = used;
    return errc::ok;
}

} // namespace jbtree::ext2fs_adapter
