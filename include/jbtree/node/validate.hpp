// SPDX-License-Identifier: MIT
// jbtree: validation of a node read from storage, before any use.
//
// check_node() proves that every offset the layout code will compute from
// this block lies inside it, and that the block is the node the caller
// expects (tree type, tree id, block number, level). With `contents` it
// also checks what can be checked inside one node, as XFS's verifiers do:
// keys strictly increasing, each internal entry's high key not below its
// key (interval mode), and every leaf record acceptable to the traits
// (RecordValidator below). The structural part is O(1) for fixed layouts
// and O(count) for slotted ones and runs on every read; the contents part
// is O(count) and the engine runs it once per read from the device, as it
// verifies checksums (CheckedBlockBuffer).
//
// What one node cannot show (a key outside the range its parent gives it)
// the engine checks as it descends (node_fault::bounds).
#pragma once

#include <concepts>
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
    order,        // keys not strictly increasing, or a high key below its key
    record,       // a leaf record the traits reject (e.g. a zero length)
    bounds,       // keys outside the range the parent's separators give the node
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
    case node_fault::order: return "keys not in increasing order";
    case node_fault::record: return "record fields out of range";
    case node_fault::bounds: return "keys outside the parent's separator range";
    }
    return "unknown fault";
}

[[nodiscard]] constexpr errc to_errc(node_fault f) noexcept {
    return f == node_fault::none       ? errc::ok
           : f == node_fault::checksum ? errc::bad_checksum
                                       : errc::corrupted;
}

// A damaged node: where, and what was wrong with it.
struct node_fault_info {
    std::uint64_t block = 0;
    node_fault what = node_fault::none;
};

// What a node is expected to be.
struct node_expectation {
    std::uint64_t blkno;
    std::uint32_t tree_id;
    unsigned level;
    bool checksums;
    std::uint32_t seed;
    bool contents = true; // also check key order and records (O(count))
};

// Optional traits hook: false for a record no valid tree holds (a zero
// length, a range past 2^64, a forbidden flag combination). Checked on
// every fresh read of a leaf, so damaged but checksum-valid records are
// refused before any map code sees them.
//
//   static bool valid_record(const key_type&, const value_type&) noexcept;
template <class T>
concept RecordValidator = requires(const typename T::key_type& k, const typename T::value_type& v) {
    { T::valid_record(k, v) } noexcept -> std::same_as<bool>;
};

// The contents checks of check_node (the node's structure already passed).
template <RecordTraits Traits>
[[nodiscard]] node_fault check_node_contents(const node_layout<Traits>& lay, const unsigned char* n,
                                             bool leaf) noexcept {
    using L = node_layout<Traits>;
    const std::uint32_t cnt = L::count(n);
    typename Traits::key_type prev = Traits::decode_key(lay.key(n, leaf, 0));
    for (std::uint32_t i = 0; i < cnt; ++i) {
        const typename Traits::key_type k = i ? Traits::decode_key(lay.key(n, leaf, i)) : prev;
        if (i && Traits::compare(prev, k) >= 0) return node_fault::order;
        prev = k;
        if (!leaf) {
            if constexpr (L::interval) {
                if (Traits::compare(Traits::decode_key(lay.payload(n, false, i)), k) < 0) return node_fault::order;
            }
            continue;
        }
        typename Traits::value_type v{};
        if constexpr (has_fixed_values<Traits>) {
            v = Traits::decode_value(lay.payload(n, true, i));
        } else {
            if (!Traits::decode_value(lay.payload(n, true, i), lay.payload_len(n, true, i), v)) return node_fault::record;
        }
        if constexpr (RecordValidator<Traits>) {
            if (!Traits::valid_record(k, v)) return node_fault::record;
        }
    }
    return node_fault::none;
}

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
        return want.contents ? check_node_contents(lay, n, leaf) : node_fault::none;
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
    return want.contents ? check_node_contents(lay, n, leaf) : node_fault::none;
}

} // namespace jbtree
