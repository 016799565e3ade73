// SPDX-License-Identifier: MIT
// jbtree: validation of a node read from storage, before any use.
//
// check_node() proves that every offset the layout code will compute from
// this block lies inside it, and that the block is the node the caller
// expects (tree type, tree id, block number, level). It runs on every read;
// it is O(1) for fixed layouts and O(count) for slotted ones.
#pragma once

#include <cstdint>

#include "jbtree/base/errc.hpp"
#include "jbtree/node/header.hpp"
#include "jbtree/node/layout.hpp"

namespace jbtree {

enum class node_fault : std::uint8_t {
    none,
    magic,        // not a node of this tree type
    checksum,     // crc32c mismatch
    self,         // header names another block number
    owner,        // header names another tree
    level,        // not the level the parent implies, or >= max_height
    layout,       // flags, key_size or payload_size do not match the tree type
    count,        // no entries, or more than fit
    slots,        // slotted: records do not tile the data area
    value,        // slotted: a value longer than the traits allow
    siblings,     // sibling links in an internal node, or a link to itself
    reserved,     // a reserved field is not zero
};

[[nodiscard]] constexpr const char* describe(node_fault f) noexcept {
    switch (f) {
    case node_fault::none: return "ok";
    case node_fault::magic: return "bad magic";
    case node_fault::checksum: return "bad checksum";
    case node_fault::self: return "wrong self block number";
    case node_fault::owner: return "wrong tree id";
    case node_fault::level: return "wrong level";
    case node_fault::layout: return "layout fields do not match the tree type";
    case node_fault::count: return "entry count zero or above capacity";
    case node_fault::slots: return "slotted records do not tile the data area";
    case node_fault::value: return "value longer than allowed";
    case node_fault::siblings: return "bad sibling link";
    case node_fault::reserved: return "reserved field not zero";
    }
    return "unknown fault";
}

[[nodiscard]] constexpr errc to_errc(node_fault f) noexcept {
    return f == node_fault::none       ? errc::ok
           : f == node_fault::checksum ? errc::bad_checksum
                                       : errc::corrupted;
}

// What a node is expected to be.
struct node_expectation {
    std::uint64_t blkno;
    std::uint32_t tree_id;
    unsigned level;
    bool checksums;
    std::uint32_t seed;
};

template <RecordTraits Traits>
[[nodiscard]] node_fault check_node(const node_layout<Traits>& lay, const unsigned char* n,
                                    const node_expectation& want) noexcept {
    using L = node_layout<Traits>;
    const node_header* h = header_of(n);
    if (h->magic.get() != Traits::magic) return node_fault::magic;
    if (want.checksums && h->checksum.get() != node_checksum(n, lay.block_size(), want.seed))
        return node_fault::checksum;
    if (h->self.get() != want.blkno) return node_fault::self;
    if (h->tree_id.get() != want.tree_id) return node_fault::owner;
    const unsigned level = h->level.get();
    if (level != want.level || level >= max_height) return node_fault::level;
    const bool leaf = level == 0;
    // flags, key_size and payload_size in one comparison (bytes 50..55).
    const std::uint64_t layout_expected = std::uint64_t{L::flags_for(leaf)} |
                                          std::uint64_t{L::key_size} << 16 |
                                          std::uint64_t{L::payload_field_for(leaf)} << 32;
    if ((load_le<std::uint64_t>(n + 48) >> 16) != layout_expected) return node_fault::layout;
    if (h->reserved.get() != 0) return node_fault::reserved;
    const std::uint64_t left = h->left.get(), right = h->right.get();
    // Leaves never link to themselves; internal nodes have no links.
    if (leaf ? (left == want.blkno || right == want.blkno) : (left | right) != 0) return node_fault::siblings;
    const std::uint32_t cnt = h->count.get();
    // Nodes are never empty: an empty tree has no root block at all.
    if (cnt == 0 || cnt > lay.max_entries(leaf)) return node_fault::count;
    if (!(leaf && L::slotted_leaves)) {
        if (h->data_start.get() != 0) return node_fault::layout;
        return node_fault::none;
    }
    // Slotted leaf: records must tile [data_start, block_size) in slot order.
    const std::uint32_t bs = lay.block_size();
    const std::uint32_t ds = h->data_start.get();
    if (ds > bs || ds < node_header_size + cnt * L::slot_size) return node_fault::slots;
    std::uint32_t end = bs;
    for (std::uint32_t i = 0; i < cnt; ++i) {
        const std::uint32_t off = L::slot(n, i);
        if (off < ds || off + L::record_prefix + L::key_size > end) return node_fault::slots;
        const std::uint32_t vlen = load_le<std::uint16_t>(n + off);
        if (vlen > L::max_value_size()) return node_fault::value;
        if (off + L::record_prefix + L::key_size + vlen != end) return node_fault::slots;
        end = off;
    }
    if (end != ds) return node_fault::slots;
    return node_fault::none;
}

} // namespace jbtree
