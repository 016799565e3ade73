// The in-node search: interpolation by key rank (RankedKeys) must give exact
// answers whatever the keys' distribution and whatever the ranks say, with
// the guesses right, near, far off or meaningless.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

using namespace jt;

namespace {

// u64 -> u64 with a chosen rank function. Rank only steers where a search
// looks first; these are monotone (as the contract asks) except `hashed`
// and `reversed`, which break it on purpose: answers must stay exact.
enum class rank_kind { identity, constant, coarse, hashed, reversed };

template <rank_kind R>
struct ranked_traits : u64_map_traits {
    static std::uint64_t key_rank(const std::uint64_t& k) noexcept {
        switch (R) {
        case rank_kind::identity: return k;
        case rank_kind::constant: return 7;
        case rank_kind::coarse: return k >> 40; // most keys of a node share one rank
        case rank_kind::hashed: return (k ^ (k >> 29)) * 0xBF58476D1CE4E5B9ull;
        case rank_kind::reversed: return ~k;
        }
        return k;
    }
};
static_assert(RankedKeys<u64_map_traits>);
static_assert(RankedKeys<ranked_traits<rank_kind::hashed>>);

using S = memory_storage<>;
using J = null_journal<S>;

// Keys drawn from several distributions, so that interpolation guesses land
// exactly, near, or far from the answer (and at both ends of nodes).
std::vector<std::uint64_t> make_keys(int dist, std::size_t n, std::mt19937_64& rng) {
    std::vector<std::uint64_t> out;
    out.reserve(n);
    switch (dist) {
    case 0: // uniform over 2^64
        for (std::size_t i = 0; i < n; ++i) out.push_back(rng());
        break;
    case 1: // a few dense clumps far apart
        for (std::size_t i = 0; i < n; ++i) out.push_back((rng() % 5) * (1ull << 60) + rng() % (n * 4));
        break;
    case 2: // exponential: many small keys, few huge ones
        for (std::size_t i = 0; i < n; ++i) {
            const unsigned sh = static_cast<unsigned>(rng() % 64);
            out.push_back(rng() >> sh);
        }
        break;
    case 3: // dense run 0..n-1 plus the extremes
        for (std::size_t i = 0; i < n; ++i) out.push_back(i);
        out.push_back(~0ull);
        out.push_back(~0ull - 1);
        break;
    default: // arithmetic progressions with two strides
        for (std::size_t i = 0; i < n; ++i) out.push_back(i % 2 ? i * 1000003ull : (1ull << 63) + i * 7ull);
        break;
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    std::shuffle(out.begin(), out.end(), rng);
    return out;
}

// Probe keys: every present key, its neighbours, and random ones.
std::vector<std::uint64_t> probes(const std::map<std::uint64_t, std::uint64_t>& m, std::mt19937_64& rng) {
    std::vector<std::uint64_t> out{0, 1, ~0ull, ~0ull - 1};
    for (auto& kv : m) {
        out.push_back(kv.first);
        out.push_back(kv.first + 1);
        out.push_back(kv.first - 1);
    }
    for (int i = 0; i < 2000; ++i) out.push_back(rng());
    return out;
}

template <class T>
void check_against(btree<T, S, J>& t, const std::map<std::uint64_t, std::uint64_t>& m, std::mt19937_64& rng,
                   std::size_t cursor_every) {
    std::size_t i = 0;
    for (std::uint64_t k : probes(m, rng)) {
        auto it = m.find(k);
        auto f = t.find(k);
        if (it == m.end()) {
            REQUIRE(f.error() == errc::not_found);
        } else {
            REQUIRE(f);
            REQUIRE(*f == it->second);
        }
        if (i++ % cursor_every) continue;
        auto lb = t.lower_bound(k);
        REQUIRE(lb);
        auto mlb = m.lower_bound(k);
        REQUIRE(lb->at_end() == (mlb == m.end()));
        if (mlb != m.end()) REQUIRE(lb->key() == mlb->first);
        auto ub = t.upper_bound(k);
        REQUIRE(ub);
        auto mub = m.upper_bound(k);
        REQUIRE(ub->at_end() == (mub == m.end()));
        if (mub != m.end()) REQUIRE(ub->key() == mub->first);
    }
}

template <class T>
void run(std::uint32_t block_size, int dist, std::size_t n, std::uint64_t seed) {
    CAPTURE(block_size);
    CAPTURE(dist);
    std::mt19937_64 rng(seed);
    S s({block_size, true, 77});
    J j(s);
    auto t = btree<T, S, J>::create(s, j, 3);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    REQUIRE(h);
    std::map<std::uint64_t, std::uint64_t> m;
    const auto keys = make_keys(dist, n, rng);
    for (std::uint64_t k : keys) {
        REQUIRE(t->insert(*h, k, k ^ 0x5555) == errc::ok);
        m[k] = k ^ 0x5555;
    }
    CHECK_CLEAN(*t);
    check_against(*t, m, rng, 7);
    // Erase two thirds (underfull nodes, merges), insert some back, check again.
    for (std::size_t i = 0; i < keys.size(); ++i) {
        if (i % 3 == 0) continue;
        REQUIRE(t->erase(*h, keys[i]) == errc::ok);
        m.erase(keys[i]);
    }
    for (std::size_t i = 1; i < keys.size(); i += 6) {
        bool inserted = false;
        REQUIRE(t->insert_or_assign(*h, keys[i], i, &inserted) == errc::ok);
        REQUIRE(inserted);
        m[keys[i]] = i;
    }
    CHECK_CLEAN(*t);
    check_against(*t, m, rng, 5);
    REQUIRE(same_contents(*t, m));
}

} // namespace

TEST_CASE("interpolated search is exact for every key distribution (identity rank, 4 KiB and 1 KiB nodes)") {
    for (int dist = 0; dist < 5; ++dist) {
        run<u64_map_traits>(4096, dist, 20000, 100 + static_cast<std::uint64_t>(dist));
        run<u64_map_traits>(1024, dist, 6000, 200 + static_cast<std::uint64_t>(dist));
    }
}

TEST_CASE("interpolated search is exact when the ranks say little or lie") {
    for (int dist : {0, 2}) {
        run<ranked_traits<rank_kind::constant>>(4096, dist, 12000, 300 + static_cast<std::uint64_t>(dist));
        run<ranked_traits<rank_kind::coarse>>(4096, dist, 12000, 400 + static_cast<std::uint64_t>(dist));
        run<ranked_traits<rank_kind::hashed>>(4096, dist, 12000, 500 + static_cast<std::uint64_t>(dist));
        run<ranked_traits<rank_kind::reversed>>(2048, dist, 8000, 600 + static_cast<std::uint64_t>(dist));
    }
}

TEST_CASE("interpolated search after a bulk load (full nodes) and at 64 KiB nodes") {
    std::mt19937_64 rng(9);
    for (std::uint32_t bs : {4096u, 65536u}) {
        CAPTURE(bs);
        S s({bs, false, 0});
        J j(s);
        auto t = btree<u64_map_traits, S, J>::create(s, j, 1);
        REQUIRE(t);
        auto h = j.start(unlimited_credits);
        REQUIRE(h);
        std::vector<std::uint64_t> keys = make_keys(2, 60000, rng);
        std::sort(keys.begin(), keys.end());
        std::map<std::uint64_t, std::uint64_t> m;
        std::size_t i = 0;
        REQUIRE(t->bulk_load(
                    *h, keys.size(),
                    [&](std::uint64_t& k, std::uint64_t& v) noexcept {
                        k = keys[i];
                        v = i++;
                        return true;
                    },
                    100) == errc::ok);
        for (std::size_t x = 0; x < keys.size(); ++x) m[keys[x]] = x;
        CHECK_CLEAN(*t);
        check_against(*t, m, rng, 11);
    }
}

namespace {

// The same records without NativeU64Keys: the generic decode-and-compare
// search, the reference for the native one.
struct generic_traits : u64_map_traits {
    static constexpr bool native_u64_keys = false;
};
static_assert(NativeU64Keys<u64_map_traits>);
static_assert(!NativeU64Keys<generic_traits>);

template <class T>
void check_bounds_against_sorted(std::uint32_t block_size, const std::vector<std::uint64_t>& sorted) {
    CAPTURE(block_size);
    CAPTURE(sorted.size());
    S s({block_size, false, 0});
    J j(s);
    auto t = btree<T, S, J>::create(s, j, 5);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    REQUIRE(h);
    // Insert in a scrambled order so that nodes split at varied places.
    std::vector<std::uint64_t> order = sorted;
    std::mt19937_64 rng(sorted.size() * 31 + block_size);
    std::shuffle(order.begin(), order.end(), rng);
    for (std::uint64_t k : order) REQUIRE(t->insert(*h, k, ~k) == errc::ok);
    std::vector<std::uint64_t> qs{0, 1, 2, ~0ull, ~0ull - 1, 1ull << 63, (1ull << 63) - 1};
    for (std::uint64_t k : sorted) {
        qs.push_back(k);
        qs.push_back(k - 1);
        qs.push_back(k + 1);
    }
    for (std::uint64_t k : qs) {
        CAPTURE(k);
        const auto lb = std::lower_bound(sorted.begin(), sorted.end(), k);
        const auto ub = std::upper_bound(sorted.begin(), sorted.end(), k);
        auto f = t->find(k);
        if (lb != sorted.end() && *lb == k) {
            REQUIRE(f);
            REQUIRE(*f == ~k);
        } else {
            REQUIRE(f.error() == errc::not_found);
        }
        auto c = t->lower_bound(k);
        REQUIRE(c);
        REQUIRE(c->at_end() == (lb == sorted.end()));
        if (lb != sorted.end()) REQUIRE(c->key() == *lb);
        auto u = t->upper_bound(k);
        REQUIRE(u);
        REQUIRE(u->at_end() == (ub == sorted.end()));
        if (ub != sorted.end()) REQUIRE(u->key() == *ub);
    }
}

} // namespace

// The in-node search over the key array (native integer compares, halving
// to the end) against std::lower_bound / std::upper_bound, and against the
// generic search: empty tree, one key, every small count around the
// halving thresholds, keys at 0 and at the maximum, dense runs (keys one
// apart, so k - 1 and k + 1 are neighbours), and nodes of 512 and 4096
// bytes (28 and 252 keys per leaf). A map's keys are unique, so there are
// no duplicates to test.
TEST_CASE("native u64 key search equals std::lower_bound on edge cases") {
    std::vector<std::vector<std::uint64_t>> sets;
    sets.push_back({});
    sets.push_back({0});
    sets.push_back({~0ull});
    sets.push_back({42});
    sets.push_back({0, ~0ull});
    for (std::uint64_t n : {2u, 3u, 7u, 8u, 9u, 15u, 16u, 17u, 27u, 28u, 29u, 251u, 252u, 253u, 600u, 3000u}) {
        std::vector<std::uint64_t> dense, top, spread;
        for (std::uint64_t i = 0; i < n; ++i) {
            dense.push_back(i);
            top.push_back(~0ull - (n - 1) + i);
            spread.push_back(i * (~0ull / n));
        }
        sets.push_back(dense);
        sets.push_back(top);
        sets.push_back(spread);
    }
    for (auto& v : sets) {
        std::sort(v.begin(), v.end());
        v.erase(std::unique(v.begin(), v.end()), v.end());
        for (std::uint32_t bs : {512u, 4096u}) {
            check_bounds_against_sorted<u64_map_traits>(bs, v);
            check_bounds_against_sorted<generic_traits>(bs, v);
        }
    }
}
