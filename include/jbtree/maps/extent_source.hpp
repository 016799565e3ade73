// SPDX-License-Identifier: MIT
// jbtree: what the refcount sweep reads (the rmap, or any sorted source).
//
// A sorted source of owner extents feeds refcount_map's rebuild and
// cross-check (maps/refcount_map.hpp). rmap::extents() is one; a tool that
// has its mappings elsewhere (e2fsck's pass-1 lists, a test vector) can
// supply its own:
//
//   errc rewind();                      back to the first extent
//   result<bool> next(owner_extent&);   the next extent; false at the end
//
// Extents come in non-decreasing order of start. `data` says whether the
// owner counts for the refcount (an inode's file data, see rmap_is_data()).
//
// The sweep needs one u64 per extent alive at a point (the blocks' largest
// number of data owners): the caller lends that memory as sweep_scratch,
// like XFS's repair bag lives in a caller's xfarray.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "jbtree/base/errc.hpp"

namespace jbtree {

struct owner_extent {
    std::uint64_t start = 0;  // first block
    std::uint64_t length = 0; // blocks, >= 1
    bool data = false;        // counts toward the refcount
};

template <class S>
concept extent_source = requires(S& s, owner_extent& e) {
    { s.rewind() } noexcept -> std::same_as<errc>;
    { s.next(e) } noexcept -> std::same_as<result<bool>>;
};

// Memory for the sweep: room for `capacity` end blocks (a binary heap). A
// point covered by more data extents than that gives errc::no_memory.
struct sweep_scratch {
    std::uint64_t* ends = nullptr;
    std::size_t capacity = 0;
};

} // namespace jbtree
