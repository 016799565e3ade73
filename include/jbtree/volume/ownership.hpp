// SPDX-License-Identifier: MIT
// jbtree: the allocator cross-check of a volume.
//
// check_ownership(volume, seen, seen_bytes, trees...) walks every node of
// every given tree and compares with the volume's allocation bitmap:
//
//   not_allocated  a tree uses a block the bitmap says is free (the next
//                  allocation would hand it out again: corruption ahead);
//   owned_twice    a block is a node of two trees, or twice of one;
//   outside        a tree points below the data area or past the device;
//   leaked         the bitmap says a data block is in use, but no tree
//                  holds it (space lost; harmless but reported);
//   walk_error     a tree could not be walked (its error says why).
//
// Clean means: every data block is either free or a node of exactly one
// of the trees. Pass every tree the volume holds, or the blocks of the
// missing ones show up as leaked. `seen` is the caller's memory: one bit
// per data block, (block_count - data_start + 7) / 8 bytes; errc::range in
// the report if it is smaller. No other memory is used.
#pragma once

#include <cstddef>
#include <cstdint>

#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"

namespace jbtree {

enum class ownership_problem_kind : std::uint8_t { not_allocated, owned_twice, outside, leaked, walk_error };

[[nodiscard]] constexpr const char* describe(ownership_problem_kind k) noexcept {
    switch (k) {
    case ownership_problem_kind::not_allocated: return "tree block not allocated";
    case ownership_problem_kind::owned_twice: return "block owned twice";
    case ownership_problem_kind::outside: return "tree block outside the data area";
    case ownership_problem_kind::leaked: return "allocated block owned by no tree";
    case ownership_problem_kind::walk_error: return "tree walk failed";
    }
    return "unknown";
}

struct ownership_problem {
    ownership_problem_kind kind = ownership_problem_kind::walk_error;
    std::uint64_t block = 0;   // the block (walk_error: 0)
    std::uint32_t tree_id = 0; // the tree that met it (leaked: 0)
    errc error = errc::ok;     // walk_error, or errc::range for a short `seen`
};

struct ownership_report {
    static constexpr std::uint32_t max_kept = 16;
    std::uint64_t nodes = 0;         // tree blocks walked
    std::uint64_t allocated = 0;     // data blocks the allocator has in use
    std::uint64_t problem_count = 0; // all problems, kept or not
    ownership_problem problems[max_kept] = {};

    [[nodiscard]] bool clean() const noexcept { return problem_count == 0; }
    [[nodiscard]] std::uint32_t kept() const noexcept {
        return problem_count < max_kept ? static_cast<std::uint32_t>(problem_count) : max_kept;
    }
    [[nodiscard]] std::uint64_t count(ownership_problem_kind k) const noexcept {
        std::uint64_t n = 0;
        for (std::uint32_t i = 0; i < kept(); ++i) n += problems[i].kind == k;
        return n;
    }
    void add(ownership_problem_kind k, std::uint64_t block, std::uint32_t tree_id, errc e = errc::ok) noexcept {
        if (problem_count < max_kept) problems[problem_count] = ownership_problem{k, block, tree_id, e};
        ++problem_count;
    }
};

namespace detail {

template <class V, class Tree>
void ownership_walk(V& v, unsigned char* seen, ownership_report& rep, Tree& t) noexcept {
    const std::uint32_t id = t.anchor().tree_id;
    const std::uint64_t lo = v.data_start(), hi = v.end_block();
    const errc e = t.for_each_node([&](std::uint64_t b, unsigned) noexcept {
        ++rep.nodes;
        if (b < lo || b >= hi) {
            rep.add(ownership_problem_kind::outside, b, id);
            return;
        }
        const std::uint64_t i = b - lo;
        const unsigned char bit = static_cast<unsigned char>(1u << (i & 7));
        if (seen[i >> 3] & bit) rep.add(ownership_problem_kind::owned_twice, b, id);
        seen[i >> 3] = static_cast<unsigned char>(seen[i >> 3] | bit);
        if (!v.allocated(b)) rep.add(ownership_problem_kind::not_allocated, b, id);
    });
    if (e != errc::ok) rep.add(ownership_problem_kind::walk_error, 0, id, e);
}

} // namespace detail

template <class V, class... Trees>
[[nodiscard]] ownership_report check_ownership(V& v, unsigned char* seen, std::size_t seen_bytes,
                                               Trees&... trees) noexcept {
    ownership_report rep{};
    const std::uint64_t n = v.end_block() - v.data_start();
    if (!seen || seen_bytes < (n + 7) / 8) {
        rep.add(ownership_problem_kind::walk_error, 0, 0, errc::range);
        return rep;
    }
    fill_bytes(seen, 0, static_cast<std::size_t>((n + 7) / 8));
    (detail::ownership_walk(v, seen, rep, trees), ...);
    for (std::uint64_t i = 0; i < n; ++i) {
        const std::uint64_t b = v.data_start() + i;
        if (!v.allocated(b)) continue;
        ++rep.allocated;
        if (!(seen[i >> 3] & (1u << (i & 7)))) rep.add(ownership_problem_kind::leaked, b, 0);
    }
    return rep;
}

} // namespace jbtree
