// SPDX-License-Identifier: MIT
// jbtree: the node header, the first 64 bytes of every tree block.
//
// All fields little-endian. docs/format.md is the specification; keep the two
// in step.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "jbtree/base/crc32c.hpp"
#include "jbtree/base/endian.hpp"

namespace jbtree {

// Trees are at most this tall; paths live on the stack.
inline constexpr unsigned max_height = 8;

// Layout flags (node_header::flags).
inline constexpr std::uint16_t node_flag_slotted = 1u << 0;  // variable-size records, slot array
inline constexpr std::uint16_t node_flag_interval = 1u << 1; // internal entries carry high keys
inline constexpr std::uint16_t node_flags_known = node_flag_slotted | node_flag_interval;

struct node_header {
    le32 magic;        //  0 tree type (RecordTraits::magic)
    le32 checksum;     //  4 crc32c_raw(seed, block with this field zeroed); 0 if the storage has checksums off
    le64 self;         //  8 this block's own number (catches misdirected reads and writes)
    le64 txid;         // 16 id of the transaction that last wrote this node
    le64 left;         // 24 left sibling at the same level; leaves only, 0 = none
    le64 right;        // 32 right sibling at the same level; leaves only, 0 = none
    le32 tree_id;      // 40 id of the owning tree (catches blocks linked into the wrong tree)
    le32 count;        // 44 number of entries
    le16 level;        // 48 0 = leaf; the root is at level height-1
    le16 flags;        // 50 node_flag_*
    le16 key_size;     // 52 encoded key width in bytes
    le16 payload_size; // 54 fixed layouts: bytes after the key per entry; slotted: 0
    le32 data_start;   // 56 slotted: offset of the first record byte (block size when empty); fixed: 0
    le32 reserved;     // 60 zero
};
static_assert(sizeof(node_header) == 64, "node header is 64 bytes on disk");
static_assert(offsetof(node_header, checksum) == 4);
static_assert(offsetof(node_header, count) == 44);

inline constexpr std::uint32_t node_header_size = sizeof(node_header);
inline constexpr std::size_t node_checksum_offset = offsetof(node_header, checksum);

[[nodiscard]] inline node_header* header_of(unsigned char* block) noexcept {
    return reinterpret_cast<node_header*>(block);
}
[[nodiscard]] inline const node_header* header_of(const unsigned char* block) noexcept {
    return reinterpret_cast<const node_header*>(block);
}

// The node checksum: crc32c_raw over the whole block, the checksum field
// counted as zero, seeded with the volume's seed (as ext4 metadata_csum does).
[[nodiscard]] inline std::uint32_t node_checksum(const unsigned char* block, std::uint32_t block_size,
                                                 std::uint32_t seed) noexcept {
    static constexpr unsigned char zero[4] = {0, 0, 0, 0};
    std::uint32_t c = crc32c_raw(seed, block, node_checksum_offset);
    c = crc32c_raw(c, zero, sizeof zero);
    return crc32c_raw(c, block + node_checksum_offset + 4, block_size - node_checksum_offset - 4);
}

inline void seal_node(unsigned char* block, std::uint32_t block_size, std::uint32_t seed) noexcept {
    header_of(block)->checksum.set(node_checksum(block, block_size, seed));
}

// Optional capability of a BlockStorage's buffer, after jbd2's frozen
// trigger: the storage seals a changed node (seal_node) once, before its
// bytes leave it (a journal commit, a write to the device, raw access),
// instead of the engine sealing it after every change.
//
//   bool defer_seal() noexcept;    the node changed: true if the storage
//                                  will seal it before its bytes leave (the
//                                  buffer then also counts as checked:
//                                  CheckedBlockBuffer); false: seal it now
//   bool sealed() const noexcept;  false while a seal is pending (the
//                                  checksum field is stale until then)
template <class B>
concept SealDeferringBuffer = requires(B& b, const B& cb) {
    { b.defer_seal() } noexcept -> std::same_as<bool>;
    { cb.sealed() } noexcept -> std::same_as<bool>;
};

} // namespace jbtree
