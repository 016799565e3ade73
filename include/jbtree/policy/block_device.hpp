// SPDX-License-Identifier: MIT
// jbtree: the BlockDevice policy, the medium under a journaled storage.
//
// A BlockDevice is numbered blocks of one size, written in place: a file, a
// partition, an ext4 image through libext2fs, a ramdisk in a test. The jbd2
// journal keeps both its log and the blocks' home locations on one device.
//
//   std::uint32_t block_size() const;            512 .. 65536, a power of two
//   std::uint64_t block_count() const;           blocks 0 .. block_count()-1
//   errc read_blocks(blk, n, out);               n consecutive blocks into out
//   errc write_blocks(blk, n, in);               n consecutive blocks from in
//   errc flush();                                every write before it is durable
//
// Writes between two flushes may reach the medium in any order, partly, or
// not at all if power fails; a write completed before a flush returned is
// durable. That is the whole contract the journal relies on (and what the
// crash tests simulate). Out-of-range block numbers give errc::range.
#pragma once

#include <concepts>
#include <cstdint>

#include "jbtree/base/errc.hpp"

namespace jbtree {

template <class D>
concept BlockDevice = requires(D& d, const D& cd, std::uint64_t blk, std::uint32_t n, unsigned char* out,
                               const unsigned char* in) {
    { cd.block_size() } noexcept -> std::same_as<std::uint32_t>;
    { cd.block_count() } noexcept -> std::same_as<std::uint64_t>;
    { d.read_blocks(blk, n, out) } noexcept -> std::same_as<errc>;
    { d.write_blocks(blk, n, in) } noexcept -> std::same_as<errc>;
    { d.flush() } noexcept -> std::same_as<errc>;
};

} // namespace jbtree
