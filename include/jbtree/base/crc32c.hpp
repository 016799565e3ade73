// SPDX-License-Identifier: MIT
// jbtree: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
//
// Two forms, as ext4 and jbd2 use them:
//   crc32c_raw(crc, data, n): the bare register update, no inversions.
//       ext4's metadata checksums are crc32c_raw(seed, block) where
//       seed = crc32c_raw(~0, uuid, 16); jbd2's v2/v3 checksums likewise.
//   crc32c(data, n) = ~crc32c_raw(~0, data, n): the standard CRC-32C,
//       crc32c("123456789") == 0xE3069283.
// Two implementations, always giving the same result:
//   slice-by-8 over constexpr tables (8 KiB): portable, no CPU feature
//       detection, runs in the kernel shim as is;
//   x86-64 SSE4.2 crc32 instruction (about 5x faster on a 4 KiB block),
//       chosen at run time by cpuid, with no runtime library and no static
//       initialiser. Define JBTREE_NO_HW_CRC32C to compile it out (kernel
//       builds that must not touch vector state without kernel_fpu_begin,
//       or targets whose compiler lacks the target attribute).
#pragma once

#include <cstddef>
#include <cstdint>

#include "jbtree/base/endian.hpp"

namespace jbtree {

namespace detail {

struct crc32c_tables {
    std::uint32_t t[8][256];
};

[[nodiscard]] constexpr crc32c_tables make_crc32c_tables() noexcept {
    crc32c_tables tb{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        tb.t[0][i] = c;
    }
    for (std::uint32_t i = 0; i < 256; ++i)
        for (int s = 1; s < 8; ++s) tb.t[s][i] = (tb.t[s - 1][i] >> 8) ^ tb.t[0][tb.t[s - 1][i] & 0xFF];
    return tb;
}

inline constexpr crc32c_tables crc32c_table = make_crc32c_tables();

} // namespace detail

namespace detail {

// Portable slice-by-8 register update.
[[nodiscard]] inline std::uint32_t crc32c_raw_sw(std::uint32_t crc, const void* data, std::size_t n) noexcept {
    const auto& t = detail::crc32c_table.t;
    auto p = static_cast<const unsigned char*>(data);
    while (n >= 8) {
        const std::uint32_t lo = load_le<std::uint32_t>(p) ^ crc;
        const std::uint32_t hi = load_le<std::uint32_t>(p + 4);
        crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
              t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xFF];
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(JBTREE_NO_HW_CRC32C)
#define JBTREE_HAVE_HW_CRC32C 1

// The SSE4.2 crc32 instruction implements exactly this register update
// (reflected Castagnoli polynomial, no inversions).
[[nodiscard]] __attribute__((target("sse4.2"))) inline std::uint32_t
crc32c_raw_hw(std::uint32_t crc, const void* data, std::size_t n) noexcept {
    auto p = static_cast<const unsigned char*>(data);
    unsigned long long c = crc;
    while (n >= 8) {
        unsigned long long v;
        __builtin_memcpy(&v, p, 8); // little-endian load, any alignment
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    auto c32 = static_cast<std::uint32_t>(c);
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}

// CPUID leaf 1, ECX bit 20: SSE4.2.
[[nodiscard]] inline bool cpu_has_sse42() noexcept {
    unsigned a = 1, b = 0, c = 0, d = 0;
    __asm__("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d) : "c"(0u));
    return (c >> 20) & 1u;
}

// 0: not probed yet, 1: hardware, 2: software. Racing first callers all
// store the same answer; relaxed atomics keep that free of data races.
inline int crc32c_impl = 0;

[[nodiscard]] inline bool crc32c_use_hw() noexcept {
    int s = __atomic_load_n(&crc32c_impl, __ATOMIC_RELAXED);
    if (s == 0) {
        s = cpu_has_sse42() ? 1 : 2;
        __atomic_store_n(&crc32c_impl, s, __ATOMIC_RELAXED);
    }
    return s == 1;
}
#endif

} // namespace detail

// Bare CRC-32C register update over n bytes (no pre- or post-inversion).
[[nodiscard]] inline std::uint32_t crc32c_raw(std::uint32_t crc, const void* data, std::size_t n) noexcept {
#ifdef JBTREE_HAVE_HW_CRC32C
    if (detail::crc32c_use_hw()) return detail::crc32c_raw_hw(crc, data, n);
#endif
    return detail::crc32c_raw_sw(crc, data, n);
}

// Standard CRC-32C of a buffer.
[[nodiscard]] inline std::uint32_t crc32c(const void* data, std::size_t n) noexcept {
    return ~crc32c_raw(~0u, data, n);
}

} // namespace jbtree
