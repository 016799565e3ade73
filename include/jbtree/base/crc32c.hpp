// SPDX-License-Identifier: MIT
// jbtree: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
//
// Two forms, as ext4 and jbd2 use them:
//   crc32c_raw(crc, data, n): the bare register update, no inversions.
//       ext4's metadata checksums are crc32c_raw(seed, block) where
//       seed = crc32c_raw(~0, uuid, 16); jbd2's v2/v3 checksums likewise.
//   crc32c(data, n) = ~crc32c_raw(~0, data, n): the standard CRC-32C,
//       crc32c("123456789") == 0xE3069283.
// The software implementation is slice-by-8 over constexpr tables (8 KiB),
// which needs no CPU feature detection and runs in the kernel shim as is.
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

// Bare CRC-32C register update over n bytes (no pre- or post-inversion).
[[nodiscard]] inline std::uint32_t crc32c_raw(std::uint32_t crc, const void* data, std::size_t n) noexcept {
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

// Standard CRC-32C of a buffer.
[[nodiscard]] inline std::uint32_t crc32c(const void* data, std::size_t n) noexcept {
    return ~crc32c_raw(~0u, data, n);
}

} // namespace jbtree
