// SPDX-License-Identifier: MIT
// jbtree: a BlockDevice over memory the caller owns.
//
// The device is a view: it neither allocates nor frees. Block b occupies
// bytes [b * block_size, (b + 1) * block_size) of the caller's memory, so the
// memory is byte-for-byte the disk image (a ramdisk, an image a test built,
// a region of a mapped file). Writes are in place at once, so flush() has
// nothing to do; it only counts.
//
//   memory_device::make(base, block_size, block_count)   checked construction
//   memory_device(base, block_size, block_count)         unchecked; see valid()
//
// Parameters are valid when the block size passes valid_block_size(), base is
// non-null (unless block_count is 0) and block_size * block_count fits in a
// std::size_t. make() refuses anything else with errc::invalid; a device
// constructed directly with bad parameters answers every I/O call with
// errc::invalid, and so does a default-constructed one.
//
// I/O rules (the same for every BlockDevice in jbtree):
//  - blocks [blk, blk + n) must lie inside 0 .. block_count()-1, else
//    errc::range (no overflow in blk + n); n == 0 is a no-op that still
//    checks blk <= block_count();
//  - a null buffer with n > 0 gives errc::invalid;
//  - the caller's buffer may overlap the device memory (copies are memmove).
//
// Counters count successful calls only: a call that returns an error changes
// neither the memory nor any counter.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"
#include "jbtree/policy/block_device.hpp"
#include "jbtree/policy/block_storage.hpp"

namespace jbtree {

class memory_device {
public:
    // An empty, invalid device (every I/O call gives errc::invalid).
    memory_device() noexcept = default;

    // Unchecked: use make(), or test valid() afterwards.
    memory_device(unsigned char* base, std::uint32_t block_size, std::uint64_t block_count) noexcept
        : base_(base), block_size_(block_size), block_count_(block_count),
          valid_(valid_parameters(base, block_size, block_count)) {}

    [[nodiscard]] static result<memory_device> make(unsigned char* base, std::uint32_t block_size,
                                                    std::uint64_t block_count) noexcept {
        if (!valid_parameters(base, block_size, block_count)) return errc::invalid;
        return memory_device(base, block_size, block_count);
    }

    // True when the parameters were valid (see the top of this file).
    [[nodiscard]] bool valid() const noexcept { return valid_; }

    [[nodiscard]] std::uint32_t block_size() const noexcept { return block_size_; }
    [[nodiscard]] std::uint64_t block_count() const noexcept { return block_count_; }
    // The device memory (what the caller passed in).
    [[nodiscard]] unsigned char* data() const noexcept { return base_; }

    [[nodiscard]] errc read_blocks(std::uint64_t blk, std::uint32_t n, unsigned char* out) noexcept {
        JBTREE_TRY(check(blk, n, out));
        if (n) move_bytes(out, base_ + offset(blk), std::size_t{n} * block_size_);
        ++read_calls_;
        blocks_read_ += n;
        return errc::ok;
    }

    [[nodiscard]] errc write_blocks(std::uint64_t blk, std::uint32_t n, const unsigned char* in) noexcept {
        JBTREE_TRY(check(blk, n, in));
        if (n) move_bytes(base_ + offset(blk), in, std::size_t{n} * block_size_);
        ++write_calls_;
        blocks_written_ += n;
        return errc::ok;
    }

    // Memory is always "durable": nothing to do but count.
    [[nodiscard]] errc flush() noexcept {
        if (!valid_) return errc::invalid;
        ++flushes_;
        return errc::ok;
    }

    // Counters (successful calls only).
    [[nodiscard]] std::uint64_t blocks_read() const noexcept { return blocks_read_; }
    [[nodiscard]] std::uint64_t blocks_written() const noexcept { return blocks_written_; }
    [[nodiscard]] std::uint64_t read_calls() const noexcept { return read_calls_; }
    [[nodiscard]] std::uint64_t write_calls() const noexcept { return write_calls_; }
    [[nodiscard]] std::uint64_t flushes() const noexcept { return flushes_; }
    void reset_counters() noexcept { blocks_read_ = blocks_written_ = read_calls_ = write_calls_ = flushes_ = 0; }

private:
    [[nodiscard]] static constexpr bool valid_parameters(const unsigned char* base, std::uint32_t bs,
                                                         std::uint64_t count) noexcept {
        if (!valid_block_size(bs)) return false;
        if (count == 0) return true;
        return base != nullptr && count <= std::numeric_limits<std::size_t>::max() / bs;
    }

    [[nodiscard]] errc check(std::uint64_t blk, std::uint32_t n, const void* buf) const noexcept {
        if (!valid_) return errc::invalid;
        if (blk > block_count_ || n > block_count_ - blk) return errc::range;
        if (n != 0 && buf == nullptr) return errc::invalid;
        return errc::ok;
    }

    // In range by check(), and block_count_ * block_size_ fits in size_t.
    [[nodiscard]] std::size_t offset(std::uint64_t blk) const noexcept {
        return static_cast<std::size_t>(blk) * block_size_;
    }

    unsigned char* base_ = nullptr;
    std::uint32_t block_size_ = 0;
    std::uint64_t block_count_ = 0;
    bool valid_ = false;
    std::uint64_t blocks_read_ = 0;
    std::uint64_t blocks_written_ = 0;
    std::uint64_t read_calls_ = 0;
    std::uint64_t write_calls_ = 0;
    std::uint64_t flushes_ = 0;
};

static_assert(BlockDevice<memory_device>);

} // namespace jbtree
