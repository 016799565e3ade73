// SPDX-License-Identifier: MIT
// jbtree benchmark: jbtree vs absl::btree_map, frozenca::BTreeMap and
// std::map, u64 -> u64.
//
// One Google Benchmark binary; every benchmark is named
//   <op>/<container>/<n>[/min_time:...][/manual_time]
// with op in insert_random, insert_ascending, find, iterate, erase,
// bulk_load and container in jbtree, jbtree_csum, absl, frozenca, std.
// bench/ratios.py turns the JSON output into the ns/item and bytes/entry
// tables of bench/README.md, bench/plot.sh into its plots.
//
//   JBTREE_BENCH_MAX_N   largest n (default 1e7; accepts "1e6" or "1000000").
//   JBTREE_BENCH_HEAP    "prefix" (default): count requested heap bytes, kept
//                        in a 16-byte header in front of every block;
//                        "usable": no header, count malloc_usable_size()
//                        (leaves malloc's size classes untouched, to check
//                        that the header does not skew the timings).
//   JBTREE_BENCH_NODE_SIZES  "1": also jbtree with 512 .. 16384-byte blocks
//                        (containers jbtree_512 ... jbtree_16384), to choose
//                        the block size of a memory-only tree.
//
// jbtree runs on memory_storage (4096-byte blocks, checksums off; jbtree_csum:
// checksums on) with a null_journal and one handle started with
// unlimited_credits, i.e. the engine's own cost without I/O or journaling.
//
// frozenca::BTreeMap (github.com/frozenca/BTree, header-only, Apache-2.0) is
// compiled in when the bench build found it (JBTREE_BENCH_FROZENCA, set by
// bench/meson.build after unpacking ../shared/vendor/frozenca-BTree.tar.xz
// into the build directory); its value type is int64_t because its
// BTreePair cannot be built when key and value types are the same.
//
// Timing: keys are precomputed outside the timed region (std::mt19937_64,
// fixed seeds). Every benchmark times its own region (manual timing):
// inserts, erases and bulk loads one whole pass over n keys per iteration
// (the container is built or destroyed outside the clock); find and
// iterate run on a container built once by random inserts and time n
// lookups / one full scan per iteration. ns/item = real_time / n, where
// real_time is wall time, or this thread's CPU time with
//   JBTREE_BENCH_CLOCK   "cpu" (default: wall).
//
// Memory: this file replaces every global operator new/delete, so the heap
// bytes a container holds after a fill are exact ("bytes_per_entry" =
// live heap bytes added by the fill / n). For jbtree this is its blocks
// (all 4096 bytes each, free-listed blocks included) plus the block table.

#include "bench_common.hpp"
#include "warm_heap.hpp"

#include <benchmark/benchmark.h>

#include <absl/container/btree_map.h>

#if JBTREE_BENCH_FROZENCA
#include <fc/btree.h>
#endif

#include <jbtree/engine/btree.hpp>
#include <jbtree/journal/null_journal.hpp>
#include <jbtree/records/basic.hpp>
#include <jbtree/storage/memory_storage.hpp>

#include <malloc.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

// ===========================================================================
// Heap accounting: all replaceable operator new/delete forms.
// ===========================================================================
//
// prefix mode: every block has a 16-byte header {requested size, offset from
// the malloc'ed base} right in front of the returned pointer. Plain forms use
// malloc(n + 16); aligned forms (align > 16) use posix_memalign(align, n +
// align). Every delete form reads the header, so mixing sized/unsized or
// nothrow/throwing deletes is harmless. usable mode: no header; sizes come
// from malloc_usable_size().
namespace heap {

std::atomic<std::int64_t> live{0};   // bytes currently allocated
std::atomic<std::int64_t> allocs{0}; // allocation calls so far

enum class mode_t : int { unset = 0, prefix = 1, usable = 2 };
// Decided on the first allocation and never changed: every block must be
// freed the way it was allocated.
mode_t g_mode = mode_t::unset;

inline mode_t mode() noexcept {
    if (g_mode == mode_t::unset) [[unlikely]] {
        const char* e = std::getenv("JBTREE_BENCH_HEAP");
        g_mode = e && std::strcmp(e, "usable") == 0 ? mode_t::usable : mode_t::prefix;
    }
    return g_mode;
}

constexpr std::size_t header = 16;

inline void* alloc(std::size_t n, std::size_t align) noexcept {
    if (mode() == mode_t::usable) {
        void* p = nullptr;
        if (align <= alignof(std::max_align_t)) p = std::malloc(n ? n : 1);
        else if (posix_memalign(&p, align, n ? n : 1) != 0) p = nullptr;
        if (p) {
            live.fetch_add(static_cast<std::int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
            allocs.fetch_add(1, std::memory_order_relaxed);
        }
        return p;
    }
    const std::size_t off = align <= header ? header : align;
    void* base = nullptr;
    if (n > SIZE_MAX - off) return nullptr;
    if (align <= alignof(std::max_align_t)) base = std::malloc(n + off);
    else if (posix_memalign(&base, align, n + off) != 0) base = nullptr;
    if (!base) return nullptr;
    auto* p = static_cast<unsigned char*>(base) + off;
    auto* h = reinterpret_cast<std::size_t*>(p - header);
    h[0] = n;
    h[1] = off;
    live.fetch_add(static_cast<std::int64_t>(n), std::memory_order_relaxed);
    allocs.fetch_add(1, std::memory_order_relaxed);
    return p;
}

inline void release(void* p) noexcept {
    if (!p) return;
    if (mode() == mode_t::usable) {
        live.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
        std::free(p);
        return;
    }
    auto* h = reinterpret_cast<std::size_t*>(static_cast<unsigned char*>(p) - header);
    live.fetch_sub(static_cast<std::int64_t>(h[0]), std::memory_order_relaxed);
    std::free(static_cast<unsigned char*>(p) - h[1]);
}

inline void* alloc_or_throw(std::size_t n, std::size_t align) {
    void* p = alloc(n, align);
    if (!p) throw std::bad_alloc();
    return p;
}

inline std::int64_t live_bytes() noexcept { return live.load(std::memory_order_relaxed); }

} // namespace heap

// clang-format off
void* operator new(std::size_t n) { return heap::alloc_or_throw(n, 0); }
void* operator new[](std::size_t n) { return heap::alloc_or_throw(n, 0); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return heap::alloc(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return heap::alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return heap::alloc_or_throw(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return heap::alloc_or_throw(n, static_cast<std::size_t>(a)); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return heap::alloc(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return heap::alloc(n, static_cast<std::size_t>(a)); }

void operator delete(void* p) noexcept { heap::release(p); }
void operator delete[](void* p) noexcept { heap::release(p); }
void operator delete(void* p, std::size_t) noexcept { heap::release(p); }
void operator delete[](void* p, std::size_t) noexcept { heap::release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { heap::release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { heap::release(p); }
void operator delete(void* p, std::align_val_t) noexcept { heap::release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { heap::release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { heap::release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { heap::release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { heap::release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { heap::release(p); }
// clang-format on

namespace {

using u64 = std::uint64_t;

[[noreturn]] void die(const char* what, const char* detail) {
    std::fprintf(stderr, "jbtree-bench: %s: %s\n", what, detail);
    std::abort();
}

// ===========================================================================
// Keys
// ===========================================================================

// n distinct random keys in four orders. The insertion order is a prefix of
// one mt19937_64 stream (seed 42); find and erase use other permutations.
struct key_set {
    std::size_t n = 0;
    std::vector<u64> insert_order; // random
    std::vector<u64> find_order;   // another random permutation of the same keys
    std::vector<u64> erase_order;  // a third one
    std::vector<u64> sorted;       // ascending
};

inline u64 value_of(u64 k) noexcept { return k * 0x9E3779B97F4A7C15ull; }

const key_set& keys(std::size_t n) {
    static key_set ks;
    if (ks.n == n) return ks;
    ks = key_set{};
    ks.n = n;
    std::mt19937_64 rng(42);
    ks.insert_order.resize(n);
    for (auto& k : ks.insert_order) k = rng();
    ks.sorted = ks.insert_order;
    std::sort(ks.sorted.begin(), ks.sorted.end());
    if (std::adjacent_find(ks.sorted.begin(), ks.sorted.end()) != ks.sorted.end())
        die("keys", "duplicate random key (impossible in practice for n <= 1e8)");
    ks.find_order = ks.insert_order;
    std::shuffle(ks.find_order.begin(), ks.find_order.end(), std::mt19937_64(43));
    ks.erase_order = ks.insert_order;
    std::shuffle(ks.erase_order.begin(), ks.erase_order.end(), std::mt19937_64(44));
    return ks;
}

// ===========================================================================
// Containers, behind one small interface
// ===========================================================================

using storage_t = jbtree::memory_storage<>;
using journal_t = jbtree::null_journal<storage_t>;
using tree_t = jbtree::btree<jbtree::u64_map_traits, storage_t, journal_t>;

template <class T>
T must(jbtree::result<T>&& r, const char* what) {
    if (!r) die(what, jbtree::describe(r.error()));
    return static_cast<T&&>(r.value());
}
inline void must(jbtree::errc e, const char* what) {
    if (e != jbtree::errc::ok) [[unlikely]]
        die(what, jbtree::describe(e));
}

template <std::uint32_t BlockSize, bool Checksums>
struct jb_map_t {
    static inline const std::string name_str =
        Checksums ? std::string("jbtree_csum") + (BlockSize == 4096 ? "" : "_" + std::to_string(BlockSize))
                  : std::string("jbtree") + (BlockSize == 4096 ? "" : "_" + std::to_string(BlockSize));
    static inline const char* const name = name_str.c_str();
    static constexpr bool is_jbtree = true;
    storage_t disk{jbtree::memory_storage_options{BlockSize, Checksums, /*seed*/ Checksums ? 0x1234567u : 0u}};
    journal_t jnl{disk};
    tree_t tree = must(tree_t::create(disk, jnl, 1), "create");
    journal_t::handle h = must(jnl.start(jbtree::unlimited_credits), "start handle");

    void insert(u64 k, u64 v) { must(tree.insert(h, k, v), "insert"); }
    void insert_hint_end(u64 k, u64 v) { insert(k, v); }
    u64 find(u64 k) {
        auto r = tree.find(k);
        if (!r) [[unlikely]]
            die("find", jbtree::describe(r.error()));
        return *r;
    }
    void erase(u64 k) { must(tree.erase(h, k), "erase"); }
    template <class F>
    void for_each(F&& f) {
        must(tree.for_each([&](const u64& k, const u64& v) noexcept {
                 f(k, v);
                 return true;
             }),
             "for_each");
    }
    std::size_t size() const { return tree.size(); }
};
using jb_map = jb_map_t<4096, false>;
using jb_map_csum = jb_map_t<4096, true>;

template <class C>
concept jbtree_container = requires { requires C::is_jbtree; };

template <class Map>
struct std_like {
    Map m;
    void insert(u64 k, u64 v) {
        if (!m.try_emplace(k, v).second) [[unlikely]]
            die("insert", "key exists");
    }
    void insert_hint_end(u64 k, u64 v) { m.emplace_hint(m.end(), k, v); }
    u64 find(u64 k) {
        auto it = m.find(k);
        if (it == m.end()) [[unlikely]]
            die("find", "not found");
        return it->second;
    }
    void erase(u64 k) {
        if (m.erase(k) != 1) [[unlikely]]
            die("erase", "not found");
    }
    template <class F>
    void for_each(F&& f) {
        for (const auto& [k, v] : m) f(k, v);
    }
    std::size_t size() const { return m.size(); }
};
struct absl_map : std_like<absl::btree_map<u64, u64>> {
    static constexpr const char* name = "absl";
};
struct std_map : std_like<std::map<u64, u64>> {
    static constexpr const char* name = "std";
};

#if JBTREE_BENCH_FROZENCA
// frozenca::BTreeMap<u64, int64_t> (default fanout 64: nodes of up to 127
// records, linear search for arithmetic keys).
struct frozenca_map {
    static constexpr const char* name = "frozenca";
    frozenca::BTreeMap<u64, std::int64_t> m;
    void insert(u64 k, u64 v) {
        if (!m.emplace(u64{k}, static_cast<std::int64_t>(v)).second) [[unlikely]]
            die("insert", "key exists");
    }
    void insert_hint_end(u64 k, u64 v) { insert(k, v); } // no hinted insert
    u64 find(u64 k) {
        auto it = m.find(k);
        if (it == m.end()) [[unlikely]]
            die("find", "not found");
        return static_cast<u64>(it->second);
    }
    void erase(u64 k) {
        if (m.erase(k) != 1) [[unlikely]]
            die("erase", "not found");
    }
    template <class F>
    void for_each(F&& f) {
        for (const auto& p : m) f(p.first, static_cast<u64>(p.second));
    }
    std::size_t size() const { return m.size(); }
};
#endif

// The clock of every timed region: wall time (steady_clock), or with
// JBTREE_BENCH_CLOCK=cpu this thread's CPU time, which on a shared machine
// leaves out the time other processes hold the core (not their cache and
// memory traffic).
bool g_cpu_clock = false;
// The heap is kept warm (bench/warm_heap.hpp): a benchmark that builds
// containers then first builds one outside the clock, so that the pass it
// times reuses mapped pages, whatever ran before it (with 1e7 keys a
// repetition is one pass, and the other containers' cached fills decide
// which freed memory is left for it).
bool g_warm_heap = false;
inline double now_seconds() noexcept { return benchio::clock_seconds(g_cpu_clock); }
struct stopwatch {
    double t0 = now_seconds();
    [[nodiscard]] double seconds() const noexcept { return now_seconds() - t0; }
};

// Fill a fresh container from keys, returning the heap bytes it added.
template <class C>
std::unique_ptr<C> build(const std::vector<u64>& ks, std::int64_t* bytes) {
    const std::int64_t before = heap::live_bytes();
    auto c = std::make_unique<C>();
    for (u64 k : ks) c->insert(k, value_of(k));
    if (bytes) *bytes = heap::live_bytes() - before;
    return c;
}

// The container built by random inserts, shared by find, iterate and (as its
// last user) erase, so that the largest n is built as few times as possible.
template <class C>
struct cache {
    static inline std::unique_ptr<C> c;
    static inline std::size_t n = 0;
    static C& get(std::size_t want) {
        if (!c || n != want) {
            c.reset();
            c = build<C>(keys(want).insert_order, nullptr);
            n = want;
        }
        return *c;
    }
    static std::unique_ptr<C> take(std::size_t want) {
        get(want);
        n = 0;
        return std::move(c);
    }
};

void set_bytes_counter(benchmark::State& st, std::int64_t bytes, std::size_t n) {
    st.counters["bytes_per_entry"] = static_cast<double>(bytes) / static_cast<double>(n);
}

template <class C>
void add_engine_counters(benchmark::State& st, C& c) {
    if constexpr (jbtree_container<C>) {
        auto s = must(c.tree.stats(), "stats");
        st.counters["leaf_fill_permille"] = static_cast<double>(s.leaf_fill_permille());
        st.counters["bytes_per_record_x100"] = static_cast<double>(s.bytes_per_record_x100());
        st.counters["height"] = static_cast<double>(s.height);
    } else {
        (void)st;
        (void)c;
    }
}

// ===========================================================================
// Benchmarks
// ===========================================================================

// The timed passes of a benchmark that builds a whole container per
// iteration with fill(c): the previous container is destroyed outside the
// clock, and with a warm heap one untimed fill comes first (g_warm_heap).
// Reports the heap bytes a container holds and the last one's engine
// counters; `what` names the benchmark if the last one has the wrong size.
template <class C, class Fill>
void time_fills(benchmark::State& st, std::size_t n, const char* what, Fill fill) {
    std::int64_t bytes = 0;
    std::unique_ptr<C> last;
    if (g_warm_heap) fill(last); // untimed: maps the pages the timed passes reuse
    for (auto _ : st) {
        last.reset(); // destroy the previous fill outside the clock
        const std::int64_t before = heap::live_bytes();
        std::unique_ptr<C> c;
        const stopwatch sw;
        fill(c);
        st.SetIterationTime(sw.seconds());
        bytes = heap::live_bytes() - before;
        last = std::move(c);
    }
    if (last->size() != n) die(what, "wrong size");
    set_bytes_counter(st, bytes, n);
    add_engine_counters(st, *last);
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * n));
}

// One whole fill of n keys per iteration (random or ascending order).
template <class C, bool Ascending>
void bm_insert(benchmark::State& st, std::size_t n) {
    const auto& ks = keys(n);
    const std::vector<u64>& order = Ascending ? ks.sorted : ks.insert_order;
    time_fills<C>(st, n, "insert", [&](std::unique_ptr<C>& c) {
        c = std::make_unique<C>();
        for (u64 k : order) c->insert(k, value_of(k));
    });
}

// n successful lookups per iteration, in an order unrelated to insertion.
template <class C>
void bm_find(benchmark::State& st, std::size_t n) {
    const auto& ks = keys(n);
    C& c = cache<C>::get(n);
    u64 sum = 0;
    for (auto _ : st) {
        const stopwatch sw;
        for (u64 k : ks.find_order) sum += c.find(k);
        benchmark::DoNotOptimize(sum);
        st.SetIterationTime(sw.seconds());
    }
    add_engine_counters(st, c);
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * n));
}

// One full in-order scan per iteration.
template <class C>
void bm_iterate(benchmark::State& st, std::size_t n) {
    C& c = cache<C>::get(n);
    u64 sum = 0;
    std::size_t seen = 0;
    for (auto _ : st) {
        const stopwatch sw;
        seen = 0;
        c.for_each([&](u64 k, u64 v) {
            sum += k ^ v;
            ++seen;
        });
        benchmark::DoNotOptimize(sum);
        st.SetIterationTime(sw.seconds());
    }
    if (seen != n) die("iterate", "wrong count");
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * n));
}

// Erase all n keys (random order) from a container built by random inserts.
template <class C>
void bm_erase(benchmark::State& st, std::size_t n) {
    const auto& ks = keys(n);
    std::unique_ptr<C> c = cache<C>::take(n);
    for (auto _ : st) {
        if (!c) c = build<C>(ks.insert_order, nullptr); // outside the clock
        const stopwatch sw;
        for (u64 k : ks.erase_order) c->erase(k);
        st.SetIterationTime(sw.seconds());
        if (c->size() != 0) die("erase", "not empty");
        c.reset();
    }
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * n));
}

// jbtree: bulk_load of n sorted records at fill 100. absl/std: the closest
// standard equivalent, emplace_hint(end()) of the sorted records; frozenca
// (no hinted insert): ascending inserts.
template <class C>
void bm_bulk(benchmark::State& st, std::size_t n) {
    const auto& ks = keys(n);
    time_fills<C>(st, n, "bulk_load", [&](std::unique_ptr<C>& c) {
        c = std::make_unique<C>();
        if constexpr (jbtree_container<C>) {
            std::size_t i = 0;
            const u64* src = ks.sorted.data();
            must(c->tree.bulk_load(
                     c->h, n,
                     [&](u64& k, u64& v) noexcept {
                         k = src[i];
                         v = value_of(k);
                         ++i;
                         return true;
                     },
                     100),
                 "bulk_load");
        } else {
            for (u64 k : ks.sorted) c->insert_hint_end(k, value_of(k));
        }
    });
}

std::size_t max_n_from_env() {
    const char* e = std::getenv("JBTREE_BENCH_MAX_N");
    if (!e || !*e) return 10'000'000;
    char* end = nullptr;
    const double d = std::strtod(e, &end);
    if (end == e || *end != '\0' || !(d >= 1)) die("JBTREE_BENCH_MAX_N", "expected a number >= 1, like 1e6");
    return static_cast<std::size_t>(d);
}

template <class C>
void register_container(std::size_t n) {
    const std::string suffix = std::string("/") + C::name + "/" + std::to_string(n);
    // Large n: one iteration already takes long; do not repeat it for the
    // default 0.5 s minimum.
    const double min_time = n >= 1'000'000 ? 0.1 : 0.0;
    auto reg = [&](const char* op, void (*fn)(benchmark::State&, std::size_t), bool manual) {
        auto* b = benchmark::RegisterBenchmark((op + suffix).c_str(), fn, n);
        if (manual) b->UseManualTime();
        if (min_time > 0) b->MinTime(min_time);
    };
    reg("insert_random", bm_insert<C, false>, true);
    reg("insert_ascending", bm_insert<C, true>, true);
    reg("bulk_load", bm_bulk<C>, true);
    // find and iterate share the cached random-built container; erase
    // consumes it, so it comes last.
    reg("find", bm_find<C>, true);
    reg("iterate", bm_iterate<C>, true);
    reg("erase", bm_erase<C>, true);
}

} // namespace

int main(int argc, char** argv) {
    g_warm_heap = benchio::keep_heap_warm();
    const std::size_t max_n = max_n_from_env();
    g_cpu_clock = benchio::cpu_clock_requested();
    const char* ns_env = std::getenv("JBTREE_BENCH_NODE_SIZES");
    const bool node_sizes = ns_env && std::strcmp(ns_env, "1") == 0;
    // n = 1e3, 1e4, ... <= max_n (just max_n when it is below 1e3).
    for (std::size_t n = max_n < 1000 ? max_n : 1000; n <= max_n; n *= 10) {
        register_container<jb_map>(n);
        register_container<jb_map_csum>(n);
        register_container<absl_map>(n);
#if JBTREE_BENCH_FROZENCA
        register_container<frozenca_map>(n);
#endif
        register_container<std_map>(n);
        if (node_sizes) {
            register_container<jb_map_t<512, false>>(n);
            register_container<jb_map_t<1024, false>>(n);
            register_container<jb_map_t<2048, false>>(n);
            register_container<jb_map_t<8192, false>>(n);
            register_container<jb_map_t<16384, false>>(n);
        }
    }
#if JBTREE_BENCH_FROZENCA
    benchmark::AddCustomContext("jbtree_bench_frozenca", "yes");
#else
    benchmark::AddCustomContext("jbtree_bench_frozenca",
                                "no (not found when the bench was built: ../shared/vendor/frozenca-BTree.tar.xz)");
#endif
    benchmark::AddCustomContext("jbtree_bench_max_n", std::to_string(max_n));
    benchmark::AddCustomContext("jbtree_bench_heap_warm", g_warm_heap ? "yes" : "no (glibc's trim and mmap defaults)");
    benchmark::AddCustomContext("jbtree_bench_clock", g_cpu_clock ? "thread cpu time" : "wall (steady_clock)");
    benchmark::AddCustomContext("jbtree_bench_heap", heap::mode() == heap::mode_t::usable ? "usable" : "prefix");
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
