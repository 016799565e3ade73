// SPDX-License-Identifier: MIT
// jbtree: let libext2fs change a filesystem inside a jbd2 transaction.
//
//   auto h = journal.start(credits);
//   ext2fs_adapter::journaled_io<J> jio(fs, journal, *h);
//   jio.install();                   // fs->io is now the journaled channel
//   ext2fs_fallocate(fs, ...);       // libext2fs allocates, writes the inode,
//   ext2fs_flush2(fs, 0);            // the bitmaps, descriptors, superblock
//   jio.remove();                    // fs->io is libext2fs's own again
//   journal.stop(*h); journal.commit();
//
// While installed, every block libext2fs writes becomes a block of the
// handle's transaction (get_write_access, copy, dirty_metadata) instead of a
// write to the disk; a write that leaves a block as it is is dropped, so
// ext2fs_flush's rewrite of every bitmap costs nothing unless it changed.
// Reads see the transaction's blocks (they go through the journal's cache).
// Writes of any size work, in any channel block size (libext2fs writes the
// superblock in bytes at offset 1024). The blocks reach the disk only by
// commit and checkpoint, so a crash leaves all of libext2fs's changes or
// none, as for the kernel's.
//
// A write that fails (no credits left in the handle, an I/O error) returns
// EIO to libext2fs and is kept in error(); the caller must then not commit
// (destroy the journal without commit: nothing of it reaches the disk).
//
// Journal: jbd2::journal<Dev> (or anything with read / get_write_access /
// dirty_metadata on handles) over the filesystem's own blocks, e.g. over an
// io_device of the same fs. Install only on a filesystem opened read-write
// with the journal's block size; remove() before ext2fs_close (the
// destructor removes it too).
//
// Needs libext2fs (pkg-config ext2fs); not part of the freestanding core.
#pragma once

#include "jbtree/ext2fs/libext2fs.hpp"

#include <cerrno>
#include <cstdint>

#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"

namespace jbtree::ext2fs_adapter {

template <class Journal>
class journaled_io {
public:
    using handle = typename Journal::handle;

    journaled_io(ext2_filsys fs, Journal& j, handle& h) noexcept : fs_(fs), j_(&j), h_(&h) {}
    journaled_io(const journaled_io&) = delete;
    journaled_io& operator=(const journaled_io&) = delete;
    ~journaled_io() { remove(); }

    // Put the journaled channel in fs->io. errc::invalid if the filesystem
    // is not open read-write or its block size is not the journal's.
    [[nodiscard]] errc install() noexcept {
        if (installed_) return errc::ok;
        if (!(fs_->flags & EXT2_FLAG_RW) || fs_->blocksize != j_->block_size()) return errc::invalid;
        own_ = fs_->io;
        chan_ = {};
        chan_.magic = EXT2_ET_MAGIC_IO_CHANNEL;
        chan_.manager = &manager_;
        chan_.name = own_->name;
        chan_.block_size = own_->block_size;
        chan_.refcount = 1;
        chan_.flags = own_->flags;
        chan_.private_data = this;
        chan_.app_data = own_->app_data;
        chan_.align = own_->align;
        fs_->io = &chan_;
        installed_ = true;
        return errc::ok;
    }
    // Give libext2fs its own channel back.
    void remove() noexcept {
        if (!installed_) return;
        fs_->io = own_;
        installed_ = false;
    }

    // The first failure of a write or read (errc::ok if none).
    [[nodiscard]] errc error() const noexcept { return error_; }
    // Blocks put into the transaction, and writes dropped as no change.
    [[nodiscard]] std::uint32_t journaled() const noexcept { return journaled_; }
    [[nodiscard]] std::uint32_t unchanged() const noexcept { return unchanged_; }

private:
    static journaled_io* self(io_channel c) noexcept { return static_cast<journaled_io*>(c->private_data); }

    // A channel transfer: `count` blocks of the channel's current size, or
    // -count bytes when negative (libext2fs's convention).
    static std::int64_t span_bytes(io_channel c, int count) noexcept {
        return count < 0 ? -static_cast<std::int64_t>(count) : std::int64_t{count} * c->block_size;
    }

    errcode_t fail(errc e) noexcept {
        if (error_ == errc::ok) error_ = e;
        return EIO;
    }

    // Bytes [off, off + n) of the filesystem, through the journal's cache.
    errcode_t read_bytes(std::uint64_t off, std::uint64_t n, unsigned char* out) noexcept {
        const std::uint32_t bs = j_->block_size();
        while (n) {
            const std::uint64_t blk = off / bs, in = off % bs;
            const std::uint64_t take = n < bs - in ? n : bs - in;
            auto b = j_->read(blk);
            if (!b) return fail(b.error());
            copy_bytes(out, b->data() + in, static_cast<std::size_t>(take));
            off += take, out += take, n -= take;
        }
        return 0;
    }
    errcode_t write_bytes(std::uint64_t off, std::uint64_t n, const unsigned char* in) noexcept {
        const std::uint32_t bs = j_->block_size();
        while (n) {
            const std::uint64_t blk = off / bs, at = off % bs;
            const std::uint64_t take = n < bs - at ? n : bs - at;
            auto b = j_->read(blk);
            if (!b) return fail(b.error());
            if (equal_bytes(b->data() + at, in, static_cast<std::size_t>(take))) {
                ++unchanged_;
            } else {
                if (const errc e = j_->get_write_access(*h_, *b); e != errc::ok) return fail(e);
                copy_bytes(b->data() + at, in, static_cast<std::size_t>(take));
                if (const errc e = j_->dirty_metadata(*h_, *b); e != errc::ok) return fail(e);
                ++journaled_;
            }
            off += take, in += take, n -= take;
        }
        return 0;
    }
    static bool equal_bytes(const unsigned char* a, const unsigned char* b, std::size_t n) noexcept {
        for (std::size_t i = 0; i < n; ++i)
            if (a[i] != b[i]) return false;
        return true;
    }

    static errcode_t on_close(io_channel) { return 0; } // owned by the journaled_io object
    static errcode_t on_set_blksize(io_channel c, int bs) {
        if (bs <= 0) return EXT2_ET_INVALID_ARGUMENT;
        c->block_size = bs;
        return 0;
    }
    static errcode_t on_read64(io_channel c, unsigned long long blk, int count, void* data) {
        const std::int64_t n = span_bytes(c, count);
        if (n <= 0) return 0;
        return self(c)->read_bytes(std::uint64_t{blk} * static_cast<std::uint64_t>(c->block_size),
                                   static_cast<std::uint64_t>(n), static_cast<unsigned char*>(data));
    }
    static errcode_t on_write64(io_channel c, unsigned long long blk, int count, const void* data) {
        const std::int64_t n = span_bytes(c, count);
        if (n <= 0) return 0;
        return self(c)->write_bytes(std::uint64_t{blk} * static_cast<std::uint64_t>(c->block_size),
                                    static_cast<std::uint64_t>(n), static_cast<const unsigned char*>(data));
    }
    static errcode_t on_read(io_channel c, unsigned long blk, int count, void* data) {
        return on_read64(c, blk, count, data);
    }
    static errcode_t on_write(io_channel c, unsigned long blk, int count, const void* data) {
        return on_write64(c, blk, count, data);
    }
    static errcode_t on_write_byte(io_channel c, unsigned long off, int count, const void* data) {
        if (count < 0) return EXT2_ET_INVALID_ARGUMENT;
        if (count == 0) return 0;
        return self(c)->write_bytes(off, static_cast<std::uint64_t>(count), static_cast<const unsigned char*>(data));
    }
    static errcode_t on_flush(io_channel) { return 0; } // durability is the journal's commit

    static inline struct_io_manager manager_ = [] {
        struct_io_manager m{};
        m.magic = EXT2_ET_MAGIC_IO_MANAGER;
        m.name = "jbtree journaled I/O";
        m.close = &on_close;
        m.set_blksize = &on_set_blksize;
        m.read_blk = &on_read;
        m.write_blk = &on_write;
        m.flush = &on_flush;
        m.write_byte = &on_write_byte;
        m.read_blk64 = &on_read64;
        m.write_blk64 = &on_write64;
        return m;
    }();

    ext2_filsys fs_;
    Journal* j_;
    handle* h_;
    io_channel own_ = nullptr;
    struct_io_channel chan_{};
    bool installed_ = false;
    errc error_ = errc::ok;
    std::uint32_t journaled_ = 0, unchanged_ = 0;
};

} // namespace jbtree::ext2fs_adapter
