// SPDX-License-Identifier: MIT
// jbtree (hosted): sort a vector by a 64-bit key first, then by a full
// comparison among equal keys, in place: one most-significant-digit pass
// (an American flag sort: elements swapped into 65,536 buckets by the top
// 16 bits of key - min, no second array), then std::sort within each
// bucket. For the adapter's large record arrays (a scan's rmap pieces by
// block, its links by inode), whose keys spread over their range: one
// linear pass and short sorts instead of O(n log n) comparisons over the
// whole array, and no copy of it (at 10 million files the copy was 600
// MB, a third of the build's peak memory).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace jbtree::hosted {

// Sort `v` by key(x) (std::uint64_t), ties by less(a, b) (which must order
// by key first too). Not stable (elements equal under `less` may change
// order).
template <class T, class Key, class Less>
void radix_sort(std::vector<T>& v, Key key, Less less) {
    if (v.size() < 4096) { // small: one sort is cheaper than the bucket pass
        std::sort(v.begin(), v.end(), less);
        return;
    }
    std::uint64_t lo = ~0ull, hi = 0;
    for (const T& x : v) {
        const std::uint64_t k = key(x);
        lo = std::min(lo, k), hi = std::max(hi, k);
    }
    constexpr unsigned digit_bits = 16;
    constexpr std::size_t buckets = std::size_t{1} << digit_bits;
    const unsigned width = static_cast<unsigned>(std::bit_width(hi - lo)); // bits of the largest offset
    const unsigned shift = width > digit_bits ? width - digit_bits : 0;
    auto digit = [&](const T& x) { return static_cast<std::size_t>((key(x) - lo) >> shift); };
    // start[d]: where bucket d begins; next[d]: its first element not yet
    // known to belong there.
    std::vector<std::size_t> start(buckets + 1, 0), next(buckets);
    for (const T& x : v) ++start[digit(x) + 1];
    for (std::size_t d = 1; d <= buckets; ++d) start[d] += start[d - 1];
    for (std::size_t d = 0; d < buckets; ++d) next[d] = start[d];
    for (std::size_t d = 0; d < buckets; ++d) {
        while (next[d] < start[d + 1]) {
            T x = std::move(v[next[d]]);
            std::size_t dx = digit(x);
            while (dx != d) { // carry x to its bucket, taking what was there
                std::swap(x, v[next[dx]++]);
                dx = digit(x);
            }
            v[next[d]++] = std::move(x);
        }
    }
    for (std::size_t d = 0; d < buckets; ++d)
        if (start[d + 1] - start[d] > 1)
            std::sort(v.begin() + static_cast<std::ptrdiff_t>(start[d]), v.begin() + static_cast<std::ptrdiff_t>(start[d + 1]), less);
}

} // namespace jbtree::hosted
