// SPDX-License-Identifier: MIT
// jbtree-bench-ops: one container, one operation, for counting instructions.
//
//   jbtree-bench-ops CONTAINER N
//
// CONTAINER is jbtree, jbtree_csum, absl or frozenca (when built with it).
// The program inserts N distinct random u64 keys (benchio::random_keys, seed
// 42: the keys of jbtree-bench), finds every one in another order (seed 43), then erases
// every one in a third (seed 44). Each phase runs in its own function that
// is never inlined (phase_insert, phase_find, phase_erase), so that
// `valgrind --tool=callgrind --toggle-collect='*phase_find*'` counts exactly
// the instructions of N lookups: bench/callgrind.sh does that for every
// container and phase and prints instructions per operation.
//
// Instruction counts do not depend on what else the machine runs, unlike
// the times of jbtree-bench: they measure how much work an operation is,
// not how long its cache misses take (bench/README.md says which tells
// what).

#include "bench_common.hpp"

#include <absl/container/btree_map.h>

#if JBTREE_BENCH_FROZENCA
#include <fc/btree.h>
#endif

#include <jbtree/engine/btree.hpp>
#include <jbtree/journal/null_journal.hpp>
#include <jbtree/records/basic.hpp>
#include <jbtree/storage/memory_storage.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

namespace {

using u64 = std::uint64_t;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "jbtree-bench-ops: %s\n", what);
    std::exit(1);
}

template <bool Checksums>
struct jb_map {
    using storage_t = jbtree::memory_storage<>;
    using journal_t = jbtree::null_journal<storage_t>;
    using tree_t = jbtree::btree<jbtree::u64_map_traits, storage_t, journal_t>;
    storage_t disk{jbtree::memory_storage_options{4096, Checksums, Checksums ? 0x1234567u : 0u}};
    journal_t jnl{disk};
    tree_t tree = make_tree(disk, jnl);
    journal_t::handle h = start(jnl);

    static tree_t make_tree(storage_t& d, journal_t& j) {
        auto t = tree_t::create(d, j, 1);
        if (!t) fail("create");
        return static_cast<tree_t&&>(*t);
    }
    static journal_t::handle start(journal_t& j) {
        auto h = j.start(jbtree::unlimited_credits);
        if (!h) fail("start");
        return static_cast<journal_t::handle&&>(*h);
    }
    bool insert(u64 k, u64 v) { return tree.insert(h, k, v) == jbtree::errc::ok; }
    bool find(u64 k, u64& v) {
        auto r = tree.find(k);
        if (!r) return false;
        v = *r;
        return true;
    }
    bool erase(u64 k) { return tree.erase(h, k) == jbtree::errc::ok; }
};

struct absl_map {
    absl::btree_map<u64, u64> m;
    bool insert(u64 k, u64 v) { return m.try_emplace(k, v).second; }
    bool find(u64 k, u64& v) {
        auto it = m.find(k);
        if (it == m.end()) return false;
        v = it->second;
        return true;
    }
    bool erase(u64 k) { return m.erase(k) == 1; }
};

#if JBTREE_BENCH_FROZENCA
struct frozenca_map {
    frozenca::BTreeMap<u64, std::int64_t> m; // (its pair type needs distinct key and value types)
    bool insert(u64 k, u64 v) { return m.emplace(u64{k}, static_cast<std::int64_t>(v)).second; }
    bool find(u64 k, u64& v) {
        auto it = m.find(k);
        if (it == m.end()) return false;
        v = static_cast<u64>(it->second);
        return true;
    }
    bool erase(u64 k) { return m.erase(k) == 1; }
};
#endif

// The phases callgrind counts (by these names: keep them out of line).
template <class C>
[[gnu::noinline]] void phase_insert(C& c, const std::vector<u64>& keys) {
    for (u64 k : keys)
        if (!c.insert(k, k * 0x9E3779B97F4A7C15ull)) fail("insert failed");
}
template <class C>
[[gnu::noinline]] u64 phase_find(C& c, const std::vector<u64>& order) {
    u64 sum = 0, v = 0;
    for (u64 k : order) {
        if (!c.find(k, v)) fail("find failed");
        sum += v;
    }
    return sum;
}
template <class C>
[[gnu::noinline]] void phase_erase(C& c, const std::vector<u64>& order) {
    for (u64 k : order)
        if (!c.erase(k)) fail("erase failed");
}

template <class C>
int run(std::size_t n) {
    const std::vector<u64> keys = benchio::random_keys(n, 42);
    std::vector<u64> find_order = keys, erase_order = keys;
    std::shuffle(find_order.begin(), find_order.end(), std::mt19937_64(43));
    std::shuffle(erase_order.begin(), erase_order.end(), std::mt19937_64(44));
    auto c = std::make_unique<C>();
    phase_insert(*c, keys);
    const u64 sum = phase_find(*c, find_order);
    phase_erase(*c, erase_order);
    std::printf("%zu keys, checksum of values %016llx\n", n, static_cast<unsigned long long>(sum));
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: jbtree-bench-ops jbtree|jbtree_csum|absl|frozenca N\n");
        return 2;
    }
    const std::size_t n = benchio::parse_count(argv[2]);
    if (n == 0) fail("N must be a positive count (e.g. 200000 or 2e5)");
    const char* who = argv[1];
    if (!std::strcmp(who, "jbtree")) return run<jb_map<false>>(n);
    if (!std::strcmp(who, "jbtree_csum")) return run<jb_map<true>>(n);
    if (!std::strcmp(who, "absl")) return run<absl_map>(n);
#if JBTREE_BENCH_FROZENCA
    if (!std::strcmp(who, "frozenca")) return run<frozenca_map>(n);
#endif
    std::fprintf(stderr, "jbtree-bench-ops: unknown container '%s' (jbtree, jbtree_csum, absl%s)\n", who,
                 JBTREE_BENCH_FROZENCA ? ", frozenca" : "; frozenca not built");
    return 2;
}
