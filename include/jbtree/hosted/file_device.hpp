// SPDX-License-Identifier: MIT
// jbtree: a BlockDevice over a file or a block device (hosted, POSIX).
//
//   auto d = hosted::file_device::create(path, block_size, block_count);
//   auto d = hosted::file_device::open(path, block_size);                 read-write
//   auto d = hosted::file_device::open(path, block_size, open_mode::read_only);
//
// Both factories return result<file_device>; a failing system call gives
// errc::io, and when the caller passes `os_errno` the errno value is stored
// there (0 on success or when the failure was not a system call).
//
// open():   an existing regular file or block device. block_count() is its
//           size / block_size (a trailing partial block is not part of the
//           device); a block device's size comes from ioctl(BLKGETSIZE64).
//           Anything else (directory, character device, FIFO) gives
//           errc::invalid.
// create(): a regular file of exactly block_count zero blocks, created if
//           missing, emptied if it exists (a sparse file: ftruncate). A path
//           naming anything other than a regular file gives errc::invalid
//           and is left alone. The caller syncs the directory if the new
//           name itself must survive a crash.
//
// Bad block sizes (valid_block_size()) give errc::invalid, a device larger
// than off_t can address gives errc::range.
//
// I/O: pread/pwrite at block_number * block_size, repeated until the whole
// transfer is done (short transfers and EINTR are retried; a read that hits
// end of file, e.g. because someone truncated the file, gives errc::io).
// flush() is fdatasync(). The range rules are the memory_device ones:
// out-of-range blocks give errc::range (checked before any system call),
// n == 0 is a no-op, a null buffer with n > 0 gives errc::invalid.
//
// Read-only mode: write_blocks() gives errc::invalid (a misuse, found before
// any system call, not a medium failure) and changes nothing; flush()
// succeeds without a system call (there is nothing to make durable).
//
// Failure is sticky for writes: once a pwrite or fdatasync has failed, the
// state of the medium is unknown (Linux reports a writeback error to an open
// file once, so a later fdatasync could succeed without the lost data ever
// reaching the disk). From then on write_blocks() and flush() give errc::io
// without trying; reads still work. failed() tells, and the journal above
// must treat this like jbd2 treats an aborted journal. Open the device again
// to retry.
//
// Move-only; the destructor closes the file descriptor (close() reports the
// close(2) error when the caller cares). All functions are noexcept.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <limits>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "jbtree/base/errc.hpp"
#include "jbtree/policy/block_device.hpp"
#include "jbtree/policy/block_storage.hpp"

namespace jbtree::hosted {

static_assert(sizeof(off_t) >= 8, "jbtree::hosted::file_device needs a 64-bit off_t (-D_FILE_OFFSET_BITS=64)");

enum class open_mode : std::uint8_t { read_write, read_only };

namespace detail {
#ifdef __linux__
// BLKGETSIZE64 from <linux/fs.h>, spelled out so that this header does not
// pull <linux/fs.h> (which clashes with <sys/mount.h> on some glibc versions).
inline constexpr unsigned long blk_get_size64 = _IOR(0x12, 114, std::size_t);
#endif
} // namespace detail

class file_device {
public:
    // A closed device: every I/O call gives errc::invalid.
    file_device() noexcept = default;
    file_device(const file_device&) = delete;
    file_device& operator=(const file_device&) = delete;
    file_device(file_device&& o) noexcept { take(o); }
    file_device& operator=(file_device&& o) noexcept {
        if (this != &o) {
            (void)close();
            take(o);
        }
        return *this;
    }
    ~file_device() { (void)close(); }

    // An existing file or block device (see the top of this file).
    [[nodiscard]] static result<file_device> open(const char* path, std::uint32_t block_size,
                                                  open_mode mode = open_mode::read_write,
                                                  int* os_errno = nullptr) noexcept {
        set_errno(os_errno, 0);
        if (path == nullptr || !valid_block_size(block_size)) return errc::invalid;
        const int flags = (mode == open_mode::read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
        file_device d;
        d.fd_ = retry_open(path, flags, 0);
        if (d.fd_ < 0) return sys_error(os_errno);
        d.block_size_ = block_size;
        d.read_only_ = mode == open_mode::read_only;
        struct stat st {};
        if (::fstat(d.fd_, &st) != 0) return sys_error(os_errno);
        std::uint64_t bytes = 0;
        if (S_ISREG(st.st_mode)) {
            bytes = static_cast<std::uint64_t>(st.st_size);
        } else if (S_ISBLK(st.st_mode)) {
#ifdef __linux__
            if (::ioctl(d.fd_, detail::blk_get_size64, &bytes) != 0) return sys_error(os_errno);
#else
            return errc::not_supported;
#endif
        } else {
            return errc::invalid;
        }
        d.block_count_ = bytes / block_size;
        if (d.block_count_ > max_blocks(block_size)) return errc::range;
        return d;
    }

    // A regular file of block_count zero blocks (see the top of this file).
    [[nodiscard]] static result<file_device> create(const char* path, std::uint32_t block_size,
                                                    std::uint64_t block_count, int* os_errno = nullptr) noexcept {
        set_errno(os_errno, 0);
        if (path == nullptr || !valid_block_size(block_size)) return errc::invalid;
        if (block_count > max_blocks(block_size)) return errc::range;
        file_device d;
        d.fd_ = retry_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (d.fd_ < 0) return sys_error(os_errno);
        struct stat st {};
        if (::fstat(d.fd_, &st) != 0) return sys_error(os_errno);
        if (!S_ISREG(st.st_mode)) return errc::invalid;
        const auto bytes = static_cast<off_t>(block_count * block_size);
        if (retry_ftruncate(d.fd_, 0) != 0 || retry_ftruncate(d.fd_, bytes) != 0) return sys_error(os_errno);
        d.block_size_ = block_size;
        d.block_count_ = block_count;
        return d;
    }

    [[nodiscard]] std::uint32_t block_size() const noexcept { return block_size_; }
    [[nodiscard]] std::uint64_t block_count() const noexcept { return block_count_; }

    [[nodiscard]] errc read_blocks(std::uint64_t blk, std::uint32_t n, unsigned char* out) noexcept {
        JBTREE_TRY(check(blk, n, out));
        std::size_t len = std::size_t{n} * block_size_;
        off_t off = static_cast<off_t>(blk * block_size_);
        while (len > 0) {
            const ssize_t r = ::pread(fd_, out, len, off);
            if (r < 0) {
                if (errno == EINTR) continue;
                return io_error();
            }
            if (r == 0) { // end of file inside the device: it shrank
                last_errno_ = 0;
                return errc::io;
            }
            out += r;
            len -= static_cast<std::size_t>(r);
            off += r;
            bytes_read_ += static_cast<std::uint64_t>(r);
        }
        ++read_calls_;
        return errc::ok;
    }

    [[nodiscard]] errc write_blocks(std::uint64_t blk, std::uint32_t n, const unsigned char* in) noexcept {
        JBTREE_TRY(check(blk, n, in));
        if (read_only_) return errc::invalid;
        if (failed_) return errc::io;
        std::size_t len = std::size_t{n} * block_size_;
        off_t off = static_cast<off_t>(blk * block_size_);
        while (len > 0) {
            const ssize_t r = ::pwrite(fd_, in, len, off);
            if (r < 0) {
                if (errno == EINTR) continue;
                failed_ = true;
                return io_error();
            }
            if (r == 0) { // no progress and no error: give up rather than spin
                failed_ = true;
                last_errno_ = 0;
                return errc::io;
            }
            in += r;
            len -= static_cast<std::size_t>(r);
            off += r;
            bytes_written_ += static_cast<std::uint64_t>(r);
        }
        ++write_calls_;
        return errc::ok;
    }

    [[nodiscard]] errc flush() noexcept {
        if (fd_ < 0) return errc::invalid;
        if (!read_only_) {
            if (failed_) return errc::io;
            int r;
            do r = ::fdatasync(fd_);
            while (r != 0 && errno == EINTR);
            if (r != 0) {
                failed_ = true;
                return io_error();
            }
        }
        ++flushes_;
        return errc::ok;
    }

    // Closes the descriptor now (the destructor does it otherwise). The
    // device is closed afterwards even when close(2) reports an error, which
    // then gives errc::io (with Linux, an earlier write may have been lost).
    [[nodiscard]] errc close() noexcept {
        if (fd_ < 0) return errc::ok;
        const int r = ::close(fd_); // never retried: Linux frees the descriptor even on EINTR
        fd_ = -1;
        if (r != 0) return io_error();
        return errc::ok;
    }

    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
    [[nodiscard]] bool read_only() const noexcept { return read_only_; }
    // A write or flush failed earlier; writes and flushes now give errc::io.
    [[nodiscard]] bool failed() const noexcept { return failed_; }
    // errno of the last failed system call on this device (0: none).
    [[nodiscard]] int last_errno() const noexcept { return last_errno_; }
    [[nodiscard]] int fd() const noexcept { return fd_; }

    // Counters. Bytes count what the kernel accepted, also in calls that
    // failed part way; calls and flushes count successful calls only.
    [[nodiscard]] std::uint64_t bytes_read() const noexcept { return bytes_read_; }
    [[nodiscard]] std::uint64_t bytes_written() const noexcept { return bytes_written_; }
    [[nodiscard]] std::uint64_t read_calls() const noexcept { return read_calls_; }
    [[nodiscard]] std::uint64_t write_calls() const noexcept { return write_calls_; }
    [[nodiscard]] std::uint64_t flushes() const noexcept { return flushes_; }
    void reset_counters() noexcept { bytes_read_ = bytes_written_ = read_calls_ = write_calls_ = flushes_ = 0; }

private:
    // Largest block count whose byte size fits in off_t.
    [[nodiscard]] static constexpr std::uint64_t max_blocks(std::uint32_t bs) noexcept {
        return static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()) / bs;
    }

    static void set_errno(int* p, int v) noexcept {
        if (p) *p = v;
    }
    // errno of the failing call into *os_errno, errc::io as the result.
    [[nodiscard]] static errc sys_error(int* os_errno) noexcept {
        set_errno(os_errno, errno);
        return errc::io;
    }
    [[nodiscard]] errc io_error() noexcept {
        last_errno_ = errno;
        return errc::io;
    }

    static int retry_open(const char* path, int flags, mode_t mode) noexcept {
        int fd;
        do fd = ::open(path, flags, mode);
        while (fd < 0 && errno == EINTR);
        return fd;
    }
    static int retry_ftruncate(int fd, off_t len) noexcept {
        int r;
        do r = ::ftruncate(fd, len);
        while (r != 0 && errno == EINTR);
        return r;
    }

    [[nodiscard]] errc check(std::uint64_t blk, std::uint32_t n, const void* buf) const noexcept {
        if (fd_ < 0) return errc::invalid;
        if (blk > block_count_ || n > block_count_ - blk) return errc::range;
        if (n != 0 && buf == nullptr) return errc::invalid;
        if (std::uint64_t{n} * block_size_ > std::numeric_limits<std::size_t>::max()) return errc::range;
        return errc::ok;
    }

    void take(file_device& o) noexcept {
        fd_ = o.fd_;
        block_size_ = o.block_size_;
        block_count_ = o.block_count_;
        read_only_ = o.read_only_;
        failed_ = o.failed_;
        last_errno_ = o.last_errno_;
        bytes_read_ = o.bytes_read_;
        bytes_written_ = o.bytes_written_;
        read_calls_ = o.read_calls_;
        write_calls_ = o.write_calls_;
        flushes_ = o.flushes_;
        o.fd_ = -1;
    }

    int fd_ = -1;
    std::uint32_t block_size_ = 0;
    std::uint64_t block_count_ = 0;
    bool read_only_ = false;
    bool failed_ = false;
    int last_errno_ = 0;
    std::uint64_t bytes_read_ = 0;
    std::uint64_t bytes_written_ = 0;
    std::uint64_t read_calls_ = 0;
    std::uint64_t write_calls_ = 0;
    std::uint64_t flushes_ = 0;
};

static_assert(BlockDevice<file_device>);

} // namespace jbtree::hosted
