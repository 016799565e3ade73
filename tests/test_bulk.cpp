// Bulk load from sorted input (into memory storage, and straight onto a
// device through hosted::streaming_storage).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include "jbtree/hosted/streaming_storage.hpp"

using namespace jt;

namespace {

using S = memory_storage<>;
using J = null_journal<S>;

template <class Traits>
using tree_t = btree<Traits, S, J>;

template <class Traits>
void load_and_check(std::uint32_t block_size, std::uint64_t n, unsigned fill, std::uint64_t seed) {
    using K = typename Traits::key_type;
    using V = typename Traits::value_type;
    CAPTURE(block_size);
    CAPTURE(n);
    CAPTURE(fill);
    S s({block_size, true, 1});
    J j(s);
    auto t = tree_t<Traits>::create(s, j, 1);
    REQUIRE(t);
    std::mt19937_64 rng(seed);
    std::map<K, V> m;
    K k = 0;
    while (m.size() < n) {
        k += 1 + rng() % 5;
        m[k] = value_maker<V>::make(rng, k);
    }
    const std::uint64_t credits = t->bulk_load_credits(n, fill);
    auto it = m.begin();
    if (n && credits == 0) {
        // Too low a fill for this node size: the tree would exceed max_height.
        auto hu = j.start(unlimited_credits);
        REQUIRE(t->bulk_load(*hu, n, [&](K& key, V& val) {
            key = it->first;
            val = it->second;
            ++it;
            return true;
        }, fill) == errc::too_deep);
        REQUIRE(s.blocks_in_use() == 0);
        return;
    }
    auto h = j.start(n ? static_cast<std::uint32_t>(credits) : 1);
    REQUIRE(h);
    REQUIRE(t->bulk_load(*h, n, [&](K& key, V& val) {
        key = it->first;
        val = it->second;
        ++it;
        return true;
    }, fill) == errc::ok);
    REQUIRE(h->used <= credits);
    REQUIRE(t->size() == n);
    CHECK_CLEAN(*t);
    REQUIRE(same_contents(*t, m));
    REQUIRE(s.blocks_in_use() == h->used); // every node made was written once
    if (n == 0) return;
    auto st = t->stats();
    REQUIRE(st);
    // Every leaf but the last two holds exactly fill% of its capacity (rounded
    // down, at least one entry); the last two are evened out.
    if constexpr (has_fixed_values<Traits>) {
        const std::uint64_t cap = t->layout().capacity(true);
        const std::uint64_t per_leaf = std::max<std::uint64_t>(1, cap * fill / 100);
        if (st->leaves > 2) {
            const std::uint64_t lo = (st->leaves - 2) * per_leaf + 2;
            CHECK(st->records >= lo);
            CHECK(st->records <= st->leaves * per_leaf);
        }
    }
    // The tree stays fully usable: random updates on top of the bulk-loaded shape.
    auto h2 = j.start(unlimited_credits);
    for (int i = 0; i < 300; ++i) {
        const K key = rng() % (k + 10);
        if (rng() % 2) {
            if (m.erase(key)) REQUIRE(t->erase(*h2, key) == errc::ok);
        } else {
            const V v = value_maker<V>::make(rng, key);
            REQUIRE(t->insert_or_assign(*h2, key, v) == errc::ok);
            m[key] = v;
        }
    }
    CHECK_CLEAN(*t);
    REQUIRE(same_contents(*t, m));
}

} // namespace

TEST_CASE("bulk load at several fill factors and sizes") {
    for (unsigned fill : {10u, 50u, 70u, 90u, 100u})
        for (std::uint64_t n : {0ull, 1ull, 2ull, 27ull, 28ull, 29ull, 57ull, 1000ull, 25000ull}) {
            load_and_check<u64_map_traits>(512, n, fill, n + fill);
            load_and_check<padded_traits<48, 40>>(512, n, fill, n * 3 + fill);
        }
    for (unsigned fill : {50u, 100u}) {
        load_and_check<u64_extent_traits>(4096, 100000, fill, 9);
        load_and_check<padded_blob_traits<24, 100>>(512, 5000, fill, 10);
        load_and_check<u64_blob_traits<255>>(4096, 20000, fill, 11);
    }
}

TEST_CASE("bulk load at 100% fill reaches the space target") {
    S s({4096});
    J j(s);
    auto t = tree_t<u64_map_traits>::create(s, j, 1);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    const std::uint64_t n = 1000000;
    std::uint64_t next = 0;
    REQUIRE(t->bulk_load(*h, n, [&](std::uint64_t& k, std::uint64_t& v) {
        k = next * 3;
        v = next++;
        return true;
    }) == errc::ok);
    auto st = t->stats();
    REQUIRE(st);
    MESSAGE("bulk load, 1e6 u64 records: " << st->bytes_per_record_x100() / 100.0 << " node bytes/record, height "
                                           << st->height);
    CHECK(st->bytes_per_record_x100() <= 1650);
    CHECK_CLEAN(*t);
}

TEST_CASE("bad bulk input is refused and leaves nothing behind") {
    S s({512});
    J j(s);
    auto t = tree_t<u64_map_traits>::create(s, j, 1);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    // Out of order somewhere in the middle (after several nodes were written).
    std::uint64_t i = 0;
    REQUIRE(t->bulk_load(*h, 5000, [&](std::uint64_t& k, std::uint64_t& v) {
        k = i == 3000 ? 5 : i;
        v = i++;
        return true;
    }) == errc::invalid);
    // A duplicate key.
    i = 0;
    REQUIRE(t->bulk_load(*h, 5000, [&](std::uint64_t& k, std::uint64_t& v) {
        k = i == 4000 ? 3999 : i;
        v = i++;
        return true;
    }) == errc::invalid);
    // Input shorter than promised.
    i = 0;
    REQUIRE(t->bulk_load(*h, 5000, [&](std::uint64_t& k, std::uint64_t& v) {
        k = v = i++;
        return i < 4000;
    }) == errc::invalid);
    REQUIRE(t->empty());
    REQUIRE(t->height() == 0);
    REQUIRE(s.blocks_in_use() == 0);
    // Bad fill factors; too few credits.
    auto one = [](std::uint64_t& k, std::uint64_t& v) {
        k = v = 1;
        return true;
    };
    REQUIRE(t->bulk_load(*h, 1, one, 9) == errc::invalid);
    REQUIRE(t->bulk_load(*h, 1, one, 101) == errc::invalid);
    auto few = j.start(static_cast<std::uint32_t>(t->bulk_load_credits(5000, 100) - 1));
    i = 0;
    REQUIRE(t->bulk_load(*few, 5000, [&](std::uint64_t& k, std::uint64_t& v) {
        k = v = i++;
        return true;
    }) == errc::no_credits);
    REQUIRE(i == 0);
    // Allocation failure part-way.
    S small({512, false, 0, 40});
    J js(small);
    auto t2 = tree_t<u64_map_traits>::create(small, js, 1);
    REQUIRE(t2);
    auto h2 = js.start(unlimited_credits);
    i = 0;
    REQUIRE(t2->bulk_load(*h2, 5000, [&](std::uint64_t& k, std::uint64_t& v) {
        k = v = i++;
        return true;
    }) == errc::no_space);
    REQUIRE(t2->empty());
    REQUIRE(small.blocks_in_use() == 0);
    // Not into a tree that has records.
    REQUIRE(t2->insert(*h2, 1, 1) == errc::ok);
    REQUIRE(t2->bulk_load(*h2, 1, one) == errc::not_empty);
}

// hosted::streaming_storage: a bulk load built straight onto a device
// holds only a few nodes, and the device ends up with exactly the blocks a
// bulk load into memory storage makes (same numbering, same bytes); the
// tree reads back through its small cache.
TEST_CASE("streaming storage: the device gets memory storage's blocks, byte for byte; the tree reads back") {
    using SS = hosted::streaming_storage<memory_device>;
    using SJ = null_journal<SS>;
    for (const std::uint32_t bs : {512u, 4096u}) {
        CAPTURE(bs);
        const std::uint64_t n = 60000, first = 10, count = 4000;
        std::vector<unsigned char> mem(std::size_t{bs} * (first + count));
        auto dev = memory_device::make(mem.data(), bs, first + count);
        REQUIRE(dev);
        SS ss(*dev, {true, 77, first, count, 8, 16}); // a small cache and batch: evictions and many batch writes
        SJ sj(ss);
        S ms({bs, true, 77, count, first});
        J mj(ms);
        auto st = btree<u64_map_traits, SS, SJ>::create(ss, sj, 1);
        auto mt = tree_t<u64_map_traits>::create(ms, mj, 1);
        REQUIRE(st);
        REQUIRE(mt);
        auto src = [](std::uint64_t i) { return i * 7 + 3; };
        std::uint64_t i = 0, k2 = 0;
        auto sh = sj.start(unlimited_credits);
        auto mh = mj.start(unlimited_credits);
        REQUIRE(st->bulk_load(*sh, n, [&](std::uint64_t& k, std::uint64_t& v) {
            k = src(i);
            v = ~k;
            ++i;
            return true;
        }) == errc::ok);
        REQUIRE(mt->bulk_load(*mh, n, [&](std::uint64_t& k, std::uint64_t& v) {
            k = src(k2);
            v = ~k;
            ++k2;
            return true;
        }) == errc::ok);
        REQUIRE(ss.flush() == errc::ok);
        REQUIRE(ss.end_block() == ms.end_block());
        REQUIRE(ss.blocks_written() == ss.end_block() - first);
        std::uint64_t differ = 0;
        for (std::uint64_t b = first; b < ss.end_block(); ++b)
            if (std::memcmp(mem.data() + b * bs, ms.raw_block(b), bs) != 0) ++differ;
        CHECK(differ == 0);
        CHECK(st->anchor().root == mt->anchor().root);
        // Read back through 8 cache slots.
        CHECK_CLEAN(*st);
        std::mt19937_64 rng(bs);
        for (int q = 0; q < 2000; ++q) {
            const std::uint64_t j = rng() % n;
            auto v = st->find(src(j));
            REQUIRE(v);
            CHECK(*v == ~src(j));
            CHECK(st->find(src(j) + 1).error() == errc::not_found);
        }
        // Reads outside what was handed out, and the end of the run.
        CHECK(ss.read(first - 1).error() == errc::range);
        CHECK(ss.read(ss.end_block()).error() == errc::range);
        while (true) {
            auto b = ss.allocate();
            if (!b) {
                CHECK(b.error() == errc::no_space);
                break;
            }
            auto sb = sj.start(1);
            REQUIRE(sb);
            REQUIRE(sj.dirty_metadata(*sb, *b) == errc::ok); // unwritten slots must be written before the cache fills
        }
        CHECK(ss.end_block() == first + count);
    }
}

TEST_CASE("streaming storage: a cache too small for the loader's open nodes fails cleanly") {
    using SS = hosted::streaming_storage<memory_device>;
    using SJ = null_journal<SS>;
    std::vector<unsigned char> mem(std::size_t{512} * 2000);
    auto dev = memory_device::make(mem.data(), 512, 2000);
    REQUIRE(dev);
    SS ss(*dev, {false, 0, 1, 1999, 2, 4});
    SJ sj(ss);
    auto t = btree<u64_map_traits, SS, SJ>::create(ss, sj, 1);
    REQUIRE(t);
    auto h = sj.start(unlimited_credits);
    std::uint64_t i = 0;
    const errc e = t->bulk_load(*h, 20000, [&](std::uint64_t& k, std::uint64_t& v) {
        k = v = i++;
        return true;
    });
    CHECK(e == errc::no_memory);
    CHECK(t->empty());
}
