// SPDX-License-Identifier: MIT
// jbtree (hosted): sort a vector by a 64-bit key first, then by a full
// comparison among equal keys: a stable LSD radix sort on the key (16-bit
// digits, passes over digits that are the same in every element skipped),
// then std::sort on each run of equal keys. For the adapter's large record
// arrays (a scan's rmap pieces by block, its links by inode), where keys
// are nearly all distinct: O(n) passes instead of O(n log n) comparisons.
// Uses a second array of the same size.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace jbtree::hosted {

// Sort `v` by key(x) (std::uint64_t), ties by less(a, b) (which must order
// by key first too).
template <class T, class Key, class Less>
void radix_sort(std::vector<T>& v, Key key, Less less) {
    if (v.size() < 2048) { // small: comparisons are cheaper than four counting passes
        std::sort(v.begin(), v.end(), less);
        return;
    }
    std::uint64_t all_or = 0, all_and = ~0ull;
    for (const T& x : v) {
        const std::uint64_t k = key(x);
        all_or |= k, all_and &= k;
    }
    const std::uint64_t varying = all_or ^ all_and; // bits that differ somewhere
    std::vector<T> tmp(v.size());
    std::vector<T>* from = &v;
    std::vector<T>* to = &tmp;
    for (unsigned shift = 0; shift < 64; shift += 16) {
        if (((varying >> shift) & 0xFFFF) == 0) continue; // the same digit everywhere
        std::vector<std::size_t> count(65537, 0);
        for (const T& x : *from) ++count[((key(x) >> shift) & 0xFFFF) + 1];
        for (std::size_t d = 1; d < count.size(); ++d) count[d] += count[d - 1];
        for (const T& x : *from) (*to)[count[(key(x) >> shift) & 0xFFFF]++] = x;
        std::swap(from, to);
    }
    if (from != &v) v.swap(tmp);
    // Equal keys: in input order; sorted fully among themselves.
    for (std::size_t i = 0; i < v.size();) {
        std::size_t j = i + 1;
        while (j < v.size() && key(v[j]) == key(v[i])) ++j;
        if (j - i > 1) std::sort(v.begin() + static_cast<std::ptrdiff_t>(i), v.begin() + static_cast<std::ptrdiff_t>(j), less);
        i = j;
    }
}

} // namespace jbtree::hosted
