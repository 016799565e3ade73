// SPDX-License-Identifier: MIT
// jbtree: fixed-endian integer loads/stores and field types.
//
// On-disk structures are little-endian, like ext4 (the jbd2 journal format is
// big-endian, hence the be* types). Field types are byte arrays with
// alignment 1, so a struct made of them has no padding and can be overlaid
// on any byte offset of a block.
#pragma once

#include "jbtree/base/config.hpp"

#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace jbtree {

// Byte copy/fill/compare that compile to the builtin without <cstring>
// (which is not freestanding). n == 0 is allowed with null pointers.
inline void copy_bytes(void* dst, const void* src, std::size_t n) noexcept {
    if (n) __builtin_memcpy(dst, src, n);
}
inline void move_bytes(void* dst, const void* src, std::size_t n) noexcept {
    if (n) __builtin_memmove(dst, src, n);
}
inline void fill_bytes(void* dst, int byte, std::size_t n) noexcept {
    if (n) __builtin_memset(dst, byte, n);
}
[[nodiscard]] inline int compare_bytes(const void* a, const void* b, std::size_t n) noexcept {
    return n == 0 ? 0 : __builtin_memcmp(a, b, n);
}

namespace detail {
template <class T>
[[nodiscard]] constexpr T byteswap(T v) noexcept {
    static_assert(std::is_unsigned_v<T>);
    if constexpr (sizeof(T) == 1) return v;
    else if constexpr (sizeof(T) == 2) return static_cast<T>(__builtin_bswap16(v));
    else if constexpr (sizeof(T) == 4) return static_cast<T>(__builtin_bswap32(v));
    else return static_cast<T>(__builtin_bswap64(v));
}
} // namespace detail

template <class T>
[[nodiscard]] inline T load_le(const void* p) noexcept {
    T v;
    __builtin_memcpy(&v, p, sizeof v);
    if constexpr (std::endian::native == std::endian::big) v = detail::byteswap(v);
    return v;
}
template <class T>
inline void store_le(void* p, T v) noexcept {
    if constexpr (std::endian::native == std::endian::big) v = detail::byteswap(v);
    __builtin_memcpy(p, &v, sizeof v);
}
template <class T>
[[nodiscard]] inline T load_be(const void* p) noexcept {
    T v;
    __builtin_memcpy(&v, p, sizeof v);
    if constexpr (std::endian::native == std::endian::little) v = detail::byteswap(v);
    return v;
}
template <class T>
inline void store_be(void* p, T v) noexcept {
    if constexpr (std::endian::native == std::endian::little) v = detail::byteswap(v);
    __builtin_memcpy(p, &v, sizeof v);
}

// An unaligned little- or big-endian integer field of an on-disk struct.
template <class T, bool Little>
struct endian_field {
    static_assert(std::is_unsigned_v<T>);
    unsigned char bytes[sizeof(T)];

    [[nodiscard]] T get() const noexcept { return Little ? load_le<T>(bytes) : load_be<T>(bytes); }
    void set(T v) noexcept {
        if constexpr (Little) store_le<T>(bytes, v);
        else store_be<T>(bytes, v);
    }
};

using le16 = endian_field<std::uint16_t, true>;
using le32 = endian_field<std::uint32_t, true>;
using le64 = endian_field<std::uint64_t, true>;
using be16 = endian_field<std::uint16_t, false>;
using be32 = endian_field<std::uint32_t, false>;
using be64 = endian_field<std::uint64_t, false>;

static_assert(sizeof(le64) == 8 && alignof(le64) == 1);
static_assert(std::is_trivially_copyable_v<le32>);

} // namespace jbtree
