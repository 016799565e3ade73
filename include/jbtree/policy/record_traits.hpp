// SPDX-License-Identifier: MIT
// jbtree: the RecordTraits policy.
//
// A RecordTraits type tells the engine what a record is and how it is stored:
//
//   using key_type, value_type;                 plain, trivially copyable types
//   static constexpr std::uint32_t magic;        node magic of this tree type
//   static constexpr std::size_t key_size;       encoded key width (keys are always fixed-size)
//   static void encode_key(const key_type&, unsigned char* out) noexcept;
//   static key_type decode_key(const unsigned char* in) noexcept;
//   static int compare(const key_type&, const key_type&) noexcept;   // <0, 0, >0
//
// and either fixed-size values
//
//   static constexpr std::size_t value_size;
//   static void encode_value(const value_type&, unsigned char* out) noexcept;
//   static value_type decode_value(const unsigned char* in) noexcept;
//
// or variable-size values (stored in slotted leaves)
//
//   static constexpr std::size_t max_value_size;
//   static std::size_t value_size_of(const value_type&) noexcept;    // 0..max_value_size
//   static void encode_value(const value_type&, unsigned char* out) noexcept;
//   // false when the bytes are not a valid encoding (reported as corruption)
//   static bool decode_value(const unsigned char* in, std::size_t n, value_type& out) noexcept;
//
// Optionally, for trees whose records cover ranges that may overlap (interval
// mode, XFS's "overlapped btree"):
//
//   static key_type high_key(const key_type&, const value_type&) noexcept;
//
// high_key(k, v) must compare >= k. Internal entries then carry the largest
// high key of their subtree, and overlap queries prune by it.
//
// Keys are fixed-size on purpose: internal nodes are then always fixed-size
// arrays, and refreshing a separator key can never overflow a node.
#pragma once

#include "jbtree/base/config.hpp"

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace jbtree {

template <class T>
concept RecordKeyCodec = requires(const typename T::key_type& k, unsigned char* out, const unsigned char* in) {
    typename T::key_type;
    typename T::value_type;
    requires std::is_trivially_copyable_v<typename T::key_type>;
    requires std::is_trivially_copyable_v<typename T::value_type>;
    { T::magic } -> std::convertible_to<std::uint32_t>;
    { T::key_size } -> std::convertible_to<std::size_t>;
    { T::encode_key(k, out) } noexcept;
    { T::decode_key(in) } noexcept -> std::same_as<typename T::key_type>;
    { T::compare(k, k) } noexcept -> std::same_as<int>;
};

template <class T>
concept FixedValueCodec = requires(const typename T::value_type& v, unsigned char* out, const unsigned char* in) {
    { T::value_size } -> std::convertible_to<std::size_t>;
    { T::encode_value(v, out) } noexcept;
    { T::decode_value(in) } noexcept -> std::same_as<typename T::value_type>;
};

template <class T>
concept VariableValueCodec =
    requires(const typename T::value_type& cv, typename T::value_type& v, unsigned char* out, const unsigned char* in,
             std::size_t n) {
        { T::max_value_size } -> std::convertible_to<std::size_t>;
        { T::value_size_of(cv) } noexcept -> std::same_as<std::size_t>;
        { T::encode_value(cv, out) } noexcept;
        { T::decode_value(in, n, v) } noexcept -> std::same_as<bool>;
    };

template <class T>
concept RecordTraits = RecordKeyCodec<T> && (FixedValueCodec<T> || VariableValueCodec<T>) &&
                       (T::key_size > 0) && (T::key_size <= 256);

// Interval mode: the traits give each record a high key.
template <class T>
concept IntervalRecordTraits = RecordTraits<T> && requires(const typename T::key_type& k,
                                                           const typename T::value_type& v) {
    { T::high_key(k, v) } noexcept -> std::same_as<typename T::key_type>;
};

template <RecordTraits T>
inline constexpr bool has_fixed_values = FixedValueCodec<T>;

template <RecordTraits T>
inline constexpr bool is_interval = IntervalRecordTraits<T>;

} // namespace jbtree
