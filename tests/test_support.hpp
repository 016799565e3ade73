// Shared helpers for the engine tests: test record traits with tiny fan-out,
// a fault-injecting storage wrapper, and a differential checker.
#pragma once

#include <jbtree/jbtree.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace jt {

using namespace jbtree;

// u64 keys and values padded to K and V bytes, so 512-byte nodes hold only a
// handful of entries (where balancing bugs show). The padding repeats the
// low byte of the number, so padding damage is a detectable mismatch in tests
// that compare encodings.
template <std::size_t K, std::size_t V>
struct padded_traits {
    using key_type = std::uint64_t;
    using value_type = std::uint64_t;
    static constexpr std::uint32_t magic = 0x5445'5354; // "TEST"
    static constexpr std::size_t key_size = K;
    static constexpr std::size_t value_size = V;
    static void encode_key(const key_type& k, unsigned char* out) noexcept { put(k, out, K); }
    static key_type decode_key(const unsigned char* in) noexcept { return load_le<std::uint64_t>(in); }
    static int compare(const key_type& a, const key_type& b) noexcept { return (a > b) - (a < b); }
    static void encode_value(const value_type& v, unsigned char* out) noexcept { put(v, out, V); }
    static value_type decode_value(const unsigned char* in) noexcept { return load_le<std::uint64_t>(in); }

    static void put(std::uint64_t x, unsigned char* out, std::size_t n) noexcept {
        store_le<std::uint64_t>(out, x);
        std::memset(out + 8, static_cast<int>(x & 0xFF), n - 8);
    }
};

// Interval variant: value = length, record covers [k, k + len - 1].
template <std::size_t K, std::size_t V>
struct padded_extent_traits : padded_traits<K, V> {
    static constexpr std::uint32_t magic = 0x5445'5345; // "TESE"
    static std::uint64_t high_key(const std::uint64_t& k, const std::uint64_t& len) noexcept {
        return k + (len ? len - 1 : 0);
    }
};

// Slotted variant: u64 key padded to K bytes, value up to MaxV bytes.
template <std::size_t K, std::size_t MaxV>
struct padded_blob_traits {
    using key_type = std::uint64_t;
    using value_type = byte_string<MaxV>;
    static constexpr std::uint32_t magic = 0x5445'5353; // "TESS"
    static constexpr std::size_t key_size = K;
    static constexpr std::size_t max_value_size = MaxV;
    static void encode_key(const key_type& k, unsigned char* out) noexcept { padded_traits<K, 8>::put(k, out, K); }
    static key_type decode_key(const unsigned char* in) noexcept { return load_le<std::uint64_t>(in); }
    static int compare(const key_type& a, const key_type& b) noexcept { return (a > b) - (a < b); }
    static std::size_t value_size_of(const value_type& v) noexcept { return v.size; }
    static void encode_value(const value_type& v, unsigned char* out) noexcept { std::memcpy(out, v.bytes, v.size); }
    static bool decode_value(const unsigned char* in, std::size_t n, value_type& out) noexcept {
        if (n > MaxV) return false;
        out.size = static_cast<std::uint16_t>(n);
        std::memcpy(out.bytes, in, n);
        return true;
    }
};

// Values for a traits type from a random number.
template <class V>
struct value_maker;
template <>
struct value_maker<std::uint64_t> {
    static std::uint64_t make(std::mt19937_64& rng, std::uint64_t) { return rng(); }
};
template <std::size_t N>
struct value_maker<byte_string<N>> {
    static byte_string<N> make(std::mt19937_64& rng, std::uint64_t) {
        byte_string<N> v;
        // Mostly short, sometimes the longest allowed.
        v.size = static_cast<std::uint16_t>(rng() % 4 == 0 ? N : rng() % (N / 2 + 1));
        for (std::size_t i = 0; i < v.size; ++i) v.bytes[i] = static_cast<unsigned char>(rng());
        return v;
    }
};

// A storage wrapper that can fail reads of chosen blocks and allocations
// after a countdown: the engine must then fail cleanly, changing nothing.
template <class Inner>
class faulty_storage {
public:
    using buffer = typename Inner::buffer;
    explicit faulty_storage(Inner& in) noexcept : in_(&in) {}

    std::uint32_t block_size() const noexcept { return in_->block_size(); }
    bool checksums() const noexcept { return in_->checksums(); }
    std::uint32_t checksum_seed() const noexcept { return in_->checksum_seed(); }
    result<buffer> read(std::uint64_t b) noexcept {
        ++reads;
        if (b == fail_read_block) return errc::io;
        return in_->read(b);
    }
    result<buffer> allocate() noexcept {
        if (alloc_countdown == 0) return errc::no_space;
        if (alloc_countdown > 0) --alloc_countdown;
        return in_->allocate();
    }
    errc free(std::uint64_t b) noexcept { return in_->free(b); }
    errc write(buffer& b) noexcept { return in_->write(b); }
    errc flush() noexcept { return in_->flush(); }

    std::uint64_t fail_read_block = ~0ull; // reads of this block fail with EIO
    long alloc_countdown = -1;             // allocations left before ENOSPC; -1 = unlimited
    std::uint64_t reads = 0;               // read() calls so far

private:
    Inner* in_;
};

// Everything a tree holds, in order.
template <class Tree>
std::vector<std::pair<typename Tree::key_type, typename Tree::value_type>> contents(Tree& t) {
    std::vector<std::pair<typename Tree::key_type, typename Tree::value_type>> out;
    const errc e = t.for_each([&](const auto& k, const auto& v) {
        out.emplace_back(k, v);
        return true;
    });
    REQUIRE(e == errc::ok);
    return out;
}

template <class Tree, class Map>
bool same_contents(Tree& t, const Map& m) {
    auto c = contents(t);
    if (c.size() != m.size()) return false;
    auto it = m.begin();
    for (auto& [k, v] : c) {
        if (it->first != k || !(it->second == v)) return false;
        ++it;
    }
    return true;
}

inline std::string report_text(const verify_report& r) {
    std::string s = std::to_string(r.problem_count) + " problem(s)";
    for (std::uint32_t i = 0; i < r.kept(); ++i) {
        s += "; ";
        s += describe(r.problems[i].kind);
        if (r.problems[i].kind == problem_kind::bad_node) s += std::string(" (") + describe(r.problems[i].fault) + ")";
        s += " at block " + std::to_string(r.problems[i].blkno) + " index " + std::to_string(r.problems[i].index);
    }
    return s;
}

#define CHECK_CLEAN(tree)                                                                                              \
    do {                                                                                                               \
        const auto rep_ = (tree).verify();                                                                             \
        INFO(::jt::report_text(rep_));                                                                                 \
        REQUIRE(rep_.clean());                                                                                         \
    } while (0)

} // namespace jt
