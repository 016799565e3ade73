// SPDX-License-Identifier: MIT
// jbtree: a BlockDevice over an open libext2fs filesystem (its io_channel).
//
//   ext2_filsys fs;  ext2fs_open2(..., &fs);
//   jbtree::ext2fs_adapter::io_device dev(fs);
//
// Blocks are the filesystem's blocks (fs->blocksize, ext2fs_blocks_count()),
// read and written through the io_channel fs->io is when the device is
// made, so they share libext2fs's own I/O path and cache: an e2fsprogs tool
// can hand this to jbtree's journal and storage while it keeps using
// libext2fs. Keeping that channel matters when fs->io is later replaced by
// a journaled_io whose journal runs over this device. flush() is
// io_channel_flush().
//
// Range rules as every jbtree device: blocks past the end give errc::range
// before any I/O, n == 0 is a no-op, a null buffer with n > 0 is
// errc::invalid. A libext2fs error becomes errc::io and is kept in
// last_error() (an errcode_t: com_err's error_message() names it).
// Writes on a filesystem opened without EXT2_FLAG_RW give errc::invalid.
//
// Replaying a journal through this device changes blocks behind
// libext2fs's back, its superblock and group descriptors among them. When
// bytes were written, ext2fs_close() adds them to s_kbytes_written and
// writes its in-memory superblock and descriptors (read before the replay)
// back over the replayed ones. After a replay, flush(), clear EXT2_FLAG_RW
// and close, then open the filesystem again, as e2fsck does.
//
// Needs libext2fs (pkg-config ext2fs); not part of the freestanding core.
#pragma once

#include "jbtree/ext2fs/libext2fs.hpp"

#include <cstdint>

#include "jbtree/base/errc.hpp"

namespace jbtree::ext2fs_adapter {

class io_device {
public:
    explicit io_device(ext2_filsys fs) noexcept : fs_(fs), io_(fs->io) {}

    [[nodiscard]] std::uint32_t block_size() const noexcept { return fs_->blocksize; }
    [[nodiscard]] std::uint64_t block_count() const noexcept { return ext2fs_blocks_count(fs_->super); }

    [[nodiscard]] errc read_blocks(std::uint64_t blk, std::uint32_t n, unsigned char* out) noexcept {
        if (n == 0) return errc::ok;
        if (!out) return errc::invalid;
        if (!in_range(blk, n)) return errc::range;
        return note(io_channel_read_blk64(io_, blk, static_cast<int>(n), out));
    }
    [[nodiscard]] errc write_blocks(std::uint64_t blk, std::uint32_t n, const unsigned char* in) noexcept {
        if (n == 0) return errc::ok;
        if (!in) return errc::invalid;
        if (!(fs_->flags & EXT2_FLAG_RW)) return errc::invalid;
        if (!in_range(blk, n)) return errc::range;
        if (observer_) observer_(observer_ctx_, blk, n);
        return note(io_channel_write_blk64(io_, blk, static_cast<int>(n), in));
    }
    [[nodiscard]] errc flush() noexcept {
        if (!(fs_->flags & EXT2_FLAG_RW)) return errc::ok; // nothing written
        return note(io_channel_flush(io_));
    }

    // Called before every write that passes the checks, with its block and
    // count: for progress reports and crash tests (which may end the
    // process there, losing what was not flushed). nullptr: none.
    void set_write_observer(void (*f)(void* ctx, std::uint64_t blk, std::uint32_t n), void* ctx) noexcept {
        observer_ = f;
        observer_ctx_ = ctx;
    }

    [[nodiscard]] errcode_t last_error() const noexcept { return last_; }
    [[nodiscard]] ext2_filsys filesystem() const noexcept { return fs_; }

private:
    [[nodiscard]] bool in_range(std::uint64_t blk, std::uint32_t n) const noexcept {
        const std::uint64_t count = block_count();
        return blk < count && n <= count - blk && n <= 0x7FFF'FFFFu;
    }
    [[nodiscard]] errc note(errcode_t e) noexcept {
        if (e == 0) return errc::ok;
        last_ = e;
        return errc::io;
    }

    ext2_filsys fs_;
    io_channel io_; // the channel at construction
    errcode_t last_ = 0;
    void (*observer_)(void*, std::uint64_t, std::uint32_t) = nullptr;
    void* observer_ctx_ = nullptr;
};

} // namespace jbtree::ext2fs_adapter
