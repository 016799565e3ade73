// SPDX-License-Identifier: MIT
// jbtree: general-purpose record traits.
//
//   u64_map_traits       u64 -> u64, fixed size (the benchmark's map)
//   u64_extent_traits    start -> length, interval mode: a record covers
//                        [start, start + length - 1]
//   u64_blob_traits<N>   u64 -> up to N bytes, slotted leaves
//
// The filesystem maps (rmap, parent pointers, refcount) have their own
// traits next to their facades.
#pragma once

#include <cstddef>
#include <cstdint>

#include "jbtree/base/endian.hpp"

namespace jbtree {

struct u64_codec {
    using key_type = std::uint64_t;
    static constexpr std::size_t key_size = 8;
    static void encode_key(const key_type& k, unsigned char* out) noexcept { store_le<std::uint64_t>(out, k); }
    [[nodiscard]] static key_type decode_key(const unsigned char* in) noexcept { return load_le<std::uint64_t>(in); }
    [[nodiscard]] static int compare(const key_type& a, const key_type& b) noexcept { return (a > b) - (a < b); }
    // RankedKeys: searches inside a node interpolate between its bounds.
    [[nodiscard]] static std::uint64_t key_rank(const key_type& k) noexcept { return k; }
    // NativeU64Keys: the in-node search compares the key array's words.
    static constexpr bool native_u64_keys = true;
};

struct u64_map_traits : u64_codec {
    using value_type = std::uint64_t;
    static constexpr std::uint32_t magic = 0x4a42'4d31; // "JBM1"
    static constexpr std::size_t value_size = 8;
    static void encode_value(const value_type& v, unsigned char* out) noexcept { store_le<std::uint64_t>(out, v); }
    [[nodiscard]] static value_type decode_value(const unsigned char* in) noexcept {
        return load_le<std::uint64_t>(in);
    }
};

// Interval mode: value = length (>= 1); a record covers [key, key + length - 1].
struct u64_extent_traits : u64_map_traits {
    static constexpr std::uint32_t magic = 0x4a42'4531; // "JBE1"
    [[nodiscard]] static key_type high_key(const key_type& k, const value_type& len) noexcept {
        const std::uint64_t last = k + (len ? len - 1 : 0);
        return last < k ? ~std::uint64_t{0} : last; // saturate instead of wrapping
    }
};

// A value of up to N bytes.
template <std::size_t N>
struct byte_string {
    std::uint16_t size = 0;
    unsigned char bytes[N] = {};

    friend bool operator==(const byte_string& a, const byte_string& b) noexcept {
        return a.size == b.size && compare_bytes(a.bytes, b.bytes, a.size) == 0;
    }
};

template <std::size_t N>
struct u64_blob_traits : u64_codec {
    static_assert(N >= 1 && N <= 4096);
    using value_type = byte_string<N>;
    static constexpr std::uint32_t magic = 0x4a42'5331; // "JBS1"
    static constexpr std::size_t max_value_size = N;
    [[nodiscard]] static std::size_t value_size_of(const value_type& v) noexcept { return v.size; }
    static void encode_value(const value_type& v, unsigned char* out) noexcept { copy_bytes(out, v.bytes, v.size); }
    [[nodiscard]] static bool decode_value(const unsigned char* in, std::size_t n, value_type& out) noexcept {
        if (n > N) return false;
        out.size = static_cast<std::uint16_t>(n);
        copy_bytes(out.bytes, in, n);
        return true;
    }
};

} // namespace jbtree
