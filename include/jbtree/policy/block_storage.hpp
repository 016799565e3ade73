// SPDX-License-Identifier: MIT
// jbtree: the BlockStorage policy.
//
// A BlockStorage hands out fixed-size blocks by number. Block number 0 is
// never a tree node (it means "none" in every on-disk pointer).
//
//   typename buffer;            a pinned block: default-constructible (empty),
//                               movable; data() and blkno(); the pin is held
//                               as long as the buffer object lives
//   std::uint32_t block_size() const;        512 .. 65536, a power of two
//   bool checksums() const;                  verify/compute node checksums?
//   std::uint32_t checksum_seed() const;     crc32c seed (from the volume UUID)
//   result<buffer> read(std::uint64_t blkno);     pinned, contents as stored
//   result<buffer> allocate();                    a new block, zero-filled, pinned
//   errc free(std::uint64_t blkno);               give a block back
//   errc write(buffer&);                          contents changed: write back
//                                                 (now or at flush)
//   errc flush();                                 make all writes durable
//
// The engine never writes a block directly: it goes through the Journal,
// which decides when to call write().
#pragma once

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "jbtree/base/errc.hpp"

namespace jbtree {

template <class B>
concept BlockBuffer = std::default_initializable<B> && std::is_nothrow_move_constructible_v<B> &&
                      std::is_nothrow_move_assignable_v<B> && requires(B& b, const B& cb) {
                          { b.data() } noexcept -> std::same_as<unsigned char*>;
                          { cb.blkno() } noexcept -> std::same_as<std::uint64_t>;
                      };

// Optional: a buffer of a cache that remembers that its contents were
// verified since they were read from the device. checked() is false for a
// block just read or created; set_checked() lasts until the block leaves the
// cache. The engine then verifies a node's checksum once per device read.
template <class B>
concept CheckedBlockBuffer = BlockBuffer<B> && requires(B& b, const B& cb) {
    { cb.checked() } noexcept -> std::same_as<bool>;
    { b.set_checked() } noexcept;
};

template <class S>
concept BlockStorage = requires(S& s, const S& cs, std::uint64_t blkno, typename S::buffer& b) {
    requires BlockBuffer<typename S::buffer>;
    { cs.block_size() } noexcept -> std::same_as<std::uint32_t>;
    { cs.checksums() } noexcept -> std::same_as<bool>;
    { cs.checksum_seed() } noexcept -> std::same_as<std::uint32_t>;
    { s.read(blkno) } noexcept -> std::same_as<result<typename S::buffer>>;
    { s.allocate() } noexcept -> std::same_as<result<typename S::buffer>>;
    { s.free(blkno) } noexcept -> std::same_as<errc>;
    { s.write(b) } noexcept -> std::same_as<errc>;
    { s.flush() } noexcept -> std::same_as<errc>;
};

// Block sizes the node format supports.
inline constexpr std::uint32_t min_block_size = 512;
inline constexpr std::uint32_t max_block_size = 65536;

[[nodiscard]] constexpr bool valid_block_size(std::uint32_t bs) noexcept {
    return bs >= min_block_size && bs <= max_block_size && (bs & (bs - 1)) == 0;
}

} // namespace jbtree
