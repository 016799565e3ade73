// SPDX-License-Identifier: MIT
// jbtree: what identifies one tree inside a storage.
//
// The engine keeps the anchor in memory and updates it as the tree changes;
// whoever owns the tree (a volume, a test, a tool) persists it, in the same
// journal handle as the operation that changed it.
#pragma once

#include "jbtree/base/config.hpp"

#include <cstdint>

namespace jbtree {

struct tree_anchor {
    std::uint64_t root = 0;    // root block number; 0 = empty tree
    std::uint64_t records = 0; // number of records in the tree
    std::uint32_t tree_id = 0; // stamped into every node header of the tree
    std::uint16_t height = 0;  // levels; 0 = empty, 1 = the root is a leaf

    friend bool operator==(const tree_anchor&, const tree_anchor&) = default;
};

// Whole-tree statistics (btree::stats()).
struct tree_stats {
    std::uint32_t height = 0;
    std::uint64_t records = 0;
    std::uint64_t leaves = 0;
    std::uint64_t internal_nodes = 0;
    std::uint64_t leaf_units_used = 0;     // entries (fixed leaves) or bytes (slotted leaves)
    std::uint64_t leaf_units_capacity = 0; // the same, summed capacity of all leaves
    std::uint32_t block_size = 0;

    [[nodiscard]] std::uint64_t nodes() const noexcept { return leaves + internal_nodes; }
    [[nodiscard]] std::uint64_t bytes() const noexcept { return nodes() * block_size; }
    // Leaf fill in thousandths.
    [[nodiscard]] std::uint32_t leaf_fill_permille() const noexcept {
        return leaf_units_capacity ? static_cast<std::uint32_t>(leaf_units_used * 1000 / leaf_units_capacity) : 0;
    }
    // Node bytes per record, in hundredths (integer arithmetic: kernel-friendly).
    [[nodiscard]] std::uint64_t bytes_per_record_x100() const noexcept {
        return records ? bytes() * 100 / records : 0;
    }
};

} // namespace jbtree
