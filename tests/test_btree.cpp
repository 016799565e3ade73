// Engine behaviour against a model (std::map), at tiny and real node sizes.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include <algorithm>

using namespace jt;

namespace {

using S = memory_storage<>;
using J = null_journal<S>;

template <class Traits>
using tree_t = btree<Traits, S, J>;

struct diff_config {
    std::uint32_t block_size = 512;
    std::uint64_t key_space = 2000;
    int steps = 6000;
    int verify_every = 1;
    bool checksums = false;
    std::uint64_t seed = 1;
};

// Random operations, each in its own handle with exactly the declared
// worst-case credits; after each: same result as the model, verify() clean,
// and no more credits used than declared. At the end everything is erased
// and no block may be left allocated.
template <class Traits>
void differential(const diff_config& cfg) {
    using K = typename Traits::key_type;
    using V = typename Traits::value_type;
    S s({cfg.block_size, cfg.checksums, 0xC0FFEEu});
    J j(s);
    auto tr = tree_t<Traits>::create(s, j, 7);
    REQUIRE(tr);
    auto& t = *tr;
    std::map<K, V> m;
    std::mt19937_64 rng(cfg.seed);
    auto pick_key = [&]() -> K {
        if (!m.empty() && rng() % 2) {
            auto it = m.lower_bound(rng() % cfg.key_space);
            if (it != m.end()) return it->first;
        }
        return rng() % cfg.key_space;
    };
    auto run = [&](std::uint32_t credits, auto&& op) {
        auto h = j.start(credits);
        REQUIRE(h);
        const errc e = op(*h);
        REQUIRE(h->used <= credits);
        REQUIRE(j.stop(*h) == errc::ok);
        return e;
    };
    for (int step = 0; step < cfg.steps; ++step) {
        const int op = static_cast<int>(rng() % 100);
        const K k = pick_key();
        const V v = value_maker<V>::make(rng, k);
        CAPTURE(step);
        CAPTURE(op);
        if (op < 35) {
            const errc e = run(t.insert_credits(), [&](auto& h) { return t.insert(h, k, v); });
            if (m.count(k)) REQUIRE(e == errc::exists);
            else {
                REQUIRE(e == errc::ok);
                m[k] = v;
            }
        } else if (op < 45) {
            bool inserted = false;
            const errc e =
                run(t.insert_credits(), [&](auto& h) { return t.insert_or_assign(h, k, v, &inserted); });
            REQUIRE(e == errc::ok);
            REQUIRE(inserted == (m.count(k) == 0));
            m[k] = v;
        } else if (op < 52) {
            const errc e = run(t.assign_credits(), [&](auto& h) { return t.assign(h, k, v); });
            if (m.count(k)) {
                REQUIRE(e == errc::ok);
                m[k] = v;
            } else {
                REQUIRE(e == errc::not_found);
            }
        } else if (op < 82) {
            const errc e = run(t.erase_credits(), [&](auto& h) { return t.erase(h, k); });
            REQUIRE(e == (m.erase(k) ? errc::ok : errc::not_found));
        } else if (op < 90) {
            auto r = t.find(k);
            auto it = m.find(k);
            if (it == m.end()) REQUIRE(r.error() == errc::not_found);
            else {
                REQUIRE(r);
                REQUIRE(*r == it->second);
            }
        } else {
            // A cursor from lower_bound or upper_bound, a few steps each way.
            const bool upper = rng() % 2;
            auto c = upper ? t.upper_bound(k) : t.lower_bound(k);
            REQUIRE(c);
            auto it = upper ? m.upper_bound(k) : m.lower_bound(k);
            for (int i = 0; i < 4; ++i) {
                REQUIRE(c->at_end() == (it == m.end()));
                if (it == m.end()) break;
                REQUIRE(c->key() == it->first);
                REQUIRE(*c->value() == it->second);
                REQUIRE(c->next() == errc::ok);
                ++it;
            }
            for (int i = 0; i < 6; ++i) {
                REQUIRE(c->prev() == errc::ok);
                if (it == m.begin()) {
                    REQUIRE(c->at_end());
                    break;
                }
                --it;
                REQUIRE(!c->at_end());
                REQUIRE(c->key() == it->first);
            }
        }
        REQUIRE(t.size() == m.size());
        if (step % cfg.verify_every == 0) CHECK_CLEAN(t);
        if (step % 500 == 0) REQUIRE(same_contents(t, m));
    }
    CHECK_CLEAN(t);
    REQUIRE(same_contents(t, m));
    // Drain in random order: the tree must give every block back.
    std::vector<K> keys;
    for (auto& kv : m) keys.push_back(kv.first);
    std::shuffle(keys.begin(), keys.end(), rng);
    for (std::size_t i = 0; i < keys.size(); ++i) {
        REQUIRE(run(t.erase_credits(), [&](auto& h) { return t.erase(h, keys[i]); }) == errc::ok);
        if (i % 64 == 0) CHECK_CLEAN(t);
    }
    REQUIRE(t.empty());
    REQUIRE(t.height() == 0);
    REQUIRE(s.blocks_in_use() == 0);
}

} // namespace

TEST_CASE("tiny nodes: fixed records (5 per leaf, 8 per internal node)") {
    using T = padded_traits<48, 40>;
    REQUIRE(node_layout<T>(512).capacity(true) == 5);
    REQUIRE(node_layout<T>(512).capacity(false) == 8);
    for (std::uint64_t seed = 1; seed <= 3; ++seed) {
        CAPTURE(seed);
        differential<T>({512, 600, 12000, 1, false, seed});
    }
}

TEST_CASE("tiny nodes: interval records (4 per leaf, 5 per internal node)") {
    using T = padded_extent_traits<40, 64>;
    REQUIRE(node_layout<T>(512).capacity(true) == 4);
    REQUIRE(node_layout<T>(512).capacity(false) == 5);
    differential<T>({512, 600, 15000, 1, true, 11});
}

TEST_CASE("tiny nodes: slotted leaves with 0..100 byte values") {
    using T = padded_blob_traits<24, 100>;
    differential<T>({512, 600, 15000, 1, true, 21});
}

TEST_CASE("4 KiB nodes: u64 -> u64, large key space") {
    differential<u64_map_traits>({4096, 1u << 20, 30000, 250, false, 31});
}

TEST_CASE("4 KiB nodes: slotted leaves with names up to 255 bytes") {
    differential<u64_blob_traits<255>>({4096, 50000, 12000, 200, true, 41});
}

TEST_CASE("64 KiB nodes and 1 KiB nodes") {
    differential<u64_map_traits>({65536, 1u << 20, 12000, 1000, false, 51});
    differential<u64_extent_traits>({1024, 1u << 16, 8000, 100, true, 52});
}

TEST_CASE("ascending and descending inserts fill nodes completely") {
    for (bool descending : {false, true}) {
        CAPTURE(descending);
        S s({4096});
        J j(s);
        auto t = tree_t<u64_map_traits>::create(s, j, 1);
        REQUIRE(t);
        auto h = j.start(unlimited_credits);
        const std::uint64_t n = 100000;
        for (std::uint64_t i = 0; i < n; ++i) REQUIRE(t->insert(*h, descending ? n - i : i, i) == errc::ok);
        CHECK_CLEAN(*t);
        auto st = t->stats();
        REQUIRE(st);
        // Every leaf but the last is full: fill well above the ~70% of even splits.
        CHECK(st->leaf_fill_permille() >= 990);
    }
}

TEST_CASE("random inserts keep leaves well filled (sibling shifting)") {
    S s({4096});
    J j(s);
    auto t = tree_t<u64_map_traits>::create(s, j, 1);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    std::mt19937_64 rng(5);
    for (int i = 0; i < 200000; ++i) (void)t->insert(*h, rng(), 1);
    CHECK_CLEAN(*t);
    auto st = t->stats();
    REQUIRE(st);
    MESSAGE("leaf fill after random inserts: " << st->leaf_fill_permille() << " permille, "
                                               << st->bytes_per_record_x100() / 100.0 << " node bytes/record");
    CHECK(st->leaf_fill_permille() >= 750); // even splits alone give ~690
}

TEST_CASE("cursors survive modification by re-seeking") {
    S s({512});
    J j(s);
    auto t = tree_t<u64_map_traits>::create(s, j, 3);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    for (std::uint64_t k = 0; k < 2000; k += 2) REQUIRE(t->insert(*h, k, k * 10) == errc::ok);

    auto c = t->lower_bound(101);
    REQUIRE(c);
    REQUIRE(c->key() == 102);
    // Erase the record under the cursor: value() says so, next() goes on.
    REQUIRE(t->erase(*h, 102) == errc::ok);
    REQUIRE(c->value().error() == errc::not_found);
    REQUIRE(c->next() == errc::ok);
    REQUIRE(c->key() == 104);
    // Insert right after it: next() sees the new record.
    REQUIRE(t->insert(*h, 105, 1) == errc::ok);
    REQUIRE(c->next() == errc::ok);
    REQUIRE(c->key() == 105);
    // Insert before it and step back.
    REQUIRE(t->insert(*h, 103, 7) == errc::ok);
    REQUIRE(c->prev() == errc::ok);
    REQUIRE(c->key() == 104);
    REQUIRE(c->prev() == errc::ok);
    REQUIRE(c->key() == 103);
    REQUIRE(*c->value() == 7);
    // Erase everything before the cursor, then prev() falls off the front.
    for (std::uint64_t k = 0; k < 102; k += 2) REQUIRE(t->erase(*h, k) == errc::ok);
    REQUIRE(t->erase(*h, 103) == errc::ok);
    REQUIRE(c->prev() == errc::ok);
    REQUIRE(c->at_end());
    // From the end, prev() goes to the last record.
    REQUIRE(c->prev() == errc::ok);
    REQUIRE(c->key() == 1998);

    // Full walks both ways agree with the contents.
    auto all = contents(*t);
    auto f = t->first();
    REQUIRE(f);
    for (auto& [k, v] : all) {
        REQUIRE(!f->at_end());
        REQUIRE(f->key() == k);
        REQUIRE(*f->value() == v);
        REQUIRE(f->next() == errc::ok);
    }
    REQUIRE(f->at_end());
    auto b = t->last();
    REQUIRE(b);
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
        REQUIRE(b->key() == it->first);
        REQUIRE(b->prev() == errc::ok);
    }
    REQUIRE(b->at_end());
}

TEST_CASE("range walks, counts, and a callback that modifies the tree") {
    S s({1024});
    J j(s);
    auto t = tree_t<u64_map_traits>::create(s, j, 3);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    for (std::uint64_t k = 10; k < 5000; k += 10) REQUIRE(t->insert(*h, k, k) == errc::ok);
    REQUIRE(*t->count(15, 45) == 3);
    REQUIRE(*t->count(10, 10) == 1);
    REQUIRE(*t->count(50, 40) == 0);
    REQUIRE(*t->count(0, ~0ull) == t->size());
    std::vector<std::uint64_t> seen;
    REQUIRE(t->for_each(100, 10000, [&](std::uint64_t k, std::uint64_t) {
        seen.push_back(k);
        return seen.size() < 5; // stop early
    }) == errc::ok);
    REQUIRE(seen == std::vector<std::uint64_t>{100, 110, 120, 130, 140});
    // Modifying the tree from inside a walk is refused, not undefined.
    const errc e = t->for_each([&](std::uint64_t k, std::uint64_t) {
        (void)t->erase(*h, k);
        return true;
    });
    REQUIRE(e == errc::invalid);
    CHECK_CLEAN(*t);
}

TEST_CASE("interval mode: overlap queries match brute force and prune") {
    using T = u64_extent_traits;
    S base({512});
    faulty_storage<S> s(base);
    null_journal<faulty_storage<S>> j(s);
    auto t = btree<T, faulty_storage<S>, null_journal<faulty_storage<S>>>::create(s, j, 9);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    std::mt19937_64 rng(77);
    std::map<std::uint64_t, std::uint64_t> m; // start -> length
    for (int i = 0; i < 6000; ++i) {
        const std::uint64_t start = rng() % 200000, len = 1 + rng() % (i % 50 == 0 ? 5000 : 40);
        if (rng() % 4 == 0 && !m.empty()) {
            auto it = m.lower_bound(start);
            if (it != m.end()) {
                REQUIRE(t->erase(*h, it->first) == errc::ok);
                m.erase(it);
            }
        } else if (t->insert(*h, start, len) == errc::ok) {
            m[start] = len;
        }
        if (i % 200 == 0) CHECK_CLEAN(*t);
    }
    CHECK_CLEAN(*t);
    for (int q = 0; q < 400; ++q) {
        const std::uint64_t a = rng() % 210000, b = a + rng() % (q % 10 == 0 ? 20000 : 50);
        std::vector<std::pair<std::uint64_t, std::uint64_t>> want, got;
        for (auto& [st, len] : m)
            if (st <= b && st + len - 1 >= a) want.emplace_back(st, len);
        REQUIRE(t->for_each_overlapping(a, b, [&](std::uint64_t k, std::uint64_t v) {
            got.emplace_back(k, v);
            return true;
        }) == errc::ok);
        REQUIRE(got == want);
    }
    // Pruning: a point query reads a few root-to-leaf paths (the extents that
    // cover the point), not the whole tree.
    auto st = t->stats();
    REQUIRE(st);
    for (std::uint64_t point : {1000ull, 50000ull, 150000ull, 199999ull}) {
        const std::uint64_t reads0 = s.reads;
        REQUIRE(t->for_each_overlapping(point, point, [](std::uint64_t, std::uint64_t) { return true; }) ==
                errc::ok);
        const std::uint64_t reads = s.reads - reads0;
        CAPTURE(point);
        CAPTURE(reads);
        CHECK(reads <= 6u * st->height);
        CHECK(reads * 10 < st->nodes());
    }
}

TEST_CASE("credits: a short handle is refused and nothing changes") {
    S s({512});
    J j(s);
    auto t = tree_t<u64_map_traits>::create(s, j, 3);
    REQUIRE(t);
    {
        auto h = j.start(unlimited_credits);
        for (std::uint64_t k = 0; k < 3000; ++k) REQUIRE(t->insert(*h, k * 3, k) == errc::ok);
    }
    const tree_anchor before = t->anchor();
    const auto c0 = contents(*t);
    auto h = j.start(t->insert_credits() - 1);
    REQUIRE(t->insert(*h, 1, 1) == errc::no_credits);
    REQUIRE(t->insert_or_assign(*h, 3, 1) == errc::no_credits);
    auto h2 = j.start(t->erase_credits() - 1);
    REQUIRE(t->erase(*h2, 3) == errc::no_credits);
    REQUIRE(h->used == 0);
    REQUIRE(h2->used == 0);
    REQUIRE(t->anchor() == before);
    REQUIRE(contents(*t) == c0);
    REQUIRE(t->insert_credits() == 2 * t->height() + 2);
}

TEST_CASE("failed allocations and reads change nothing") {
    using T = padded_traits<48, 40>;
    S base({512, true, 99});
    faulty_storage<S> s(base);
    null_journal<faulty_storage<S>> j(s);
    auto tr = btree<T, faulty_storage<S>, null_journal<faulty_storage<S>>>::create(s, j, 5);
    REQUIRE(tr);
    auto& t = *tr;
    auto h = j.start(unlimited_credits);
    std::mt19937_64 rng(3);
    std::map<std::uint64_t, std::uint64_t> m;
    for (int i = 0; i < 1500; ++i) {
        const std::uint64_t k = rng() % 5000;
        if (t.insert(*h, k, i) == errc::ok) m[k] = i;
    }
    REQUIRE(t.height() >= 4);
    // Blocks of the tree, to fail reads of.
    std::vector<std::uint64_t> blocks;
    for (std::uint64_t b = 1; b < 100000; ++b) {
        if (!base.raw_block(b)) break;
        if (header_of(base.raw_block(b))->magic.get() == T::magic) blocks.push_back(b);
    }
    int failed_allocs = 0, failed_reads = 0;
    for (int i = 0; i < 3000; ++i) {
        const std::uint64_t k = rng() % 5000;
        const bool fail_alloc = rng() % 2;
        if (fail_alloc) s.alloc_countdown = static_cast<long>(rng() % 2);
        else s.fail_read_block = blocks[rng() % blocks.size()];
        const tree_anchor a0 = t.anchor();
        const std::uint64_t in_use = base.blocks_in_use();
        const bool do_insert = rng() % 2;
        const errc e = do_insert ? t.insert(*h, k, i) : t.erase(*h, k);
        s.alloc_countdown = -1;
        s.fail_read_block = ~0ull;
        if (e == errc::ok) {
            if (do_insert) m[k] = i;
            else m.erase(k);
        } else if (e == errc::no_space || e == errc::io) {
            (e == errc::no_space ? failed_allocs : failed_reads)++;
            REQUIRE(t.anchor() == a0);
            REQUIRE(base.blocks_in_use() == in_use);
        } else {
            REQUIRE((e == errc::exists || e == errc::not_found));
        }
        if (i % 50 == 0) {
            CHECK_CLEAN(t);
            REQUIRE(same_contents(t, m));
        }
    }
    CHECK_CLEAN(t);
    REQUIRE(same_contents(t, m));
    MESSAGE("injected failures hit: " << failed_allocs << " allocations, " << failed_reads << " reads");
    CHECK(failed_allocs > 10);
    CHECK(failed_reads > 10);
}

TEST_CASE("open validates the anchor and the root") {
    S s({4096});
    J j(s);
    auto t = tree_t<u64_map_traits>::create(s, j, 4);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    for (std::uint64_t k = 0; k < 1000; ++k) REQUIRE(t->insert(*h, k, k) == errc::ok);
    const tree_anchor a = t->anchor();
    REQUIRE(tree_t<u64_map_traits>::open(s, j, a));
    tree_anchor bad = a;
    bad.height = static_cast<std::uint16_t>(a.height + 1); // root is not at that level
    REQUIRE(tree_t<u64_map_traits>::open(s, j, bad).error() == errc::corrupted);
    bad = a;
    bad.tree_id = 5; // someone else's tree
    REQUIRE(tree_t<u64_map_traits>::open(s, j, bad).error() == errc::corrupted);
    bad = a;
    bad.root = 0; // no root but a height
    REQUIRE(tree_t<u64_map_traits>::open(s, j, bad).error() == errc::corrupted);
    bad = a;
    bad.height = max_height + 1;
    REQUIRE(tree_t<u64_map_traits>::open(s, j, bad).error() == errc::corrupted);
    // A different tree type cannot read these nodes.
    REQUIRE(btree<u64_extent_traits, S, J>::open(s, j, a).error() == errc::corrupted);
    // Records too large for the node size are refused up front.
    S tiny({512});
    J jt2(tiny);
    REQUIRE(btree<u64_blob_traits<255>, S, J>::create(tiny, jt2, 1).error() == errc::invalid);
    S odd({3000});
    J jo(odd);
    REQUIRE(tree_t<u64_map_traits>::create(odd, jo, 1).error() == errc::invalid);
}

TEST_CASE("update applies a function to one record") {
    S s({512});
    J j(s);
    auto t = tree_t<u64_map_traits>::create(s, j, 3);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    REQUIRE(t->insert(*h, 5, 10) == errc::ok);
    REQUIRE(t->update(*h, 5, [](std::uint64_t& v) { v += 7; }) == errc::ok);
    REQUIRE(*t->find(5) == 17);
    REQUIRE(t->update(*h, 6, [](std::uint64_t& v) { v = 0; }) == errc::not_found);
    REQUIRE(*t->contains(5));
    REQUIRE(!*t->contains(6));
}

// Every member compiles (explicit instantiation catches latent template errors).
template class jbtree::btree<u64_map_traits, S, J>;
template class jbtree::btree<u64_extent_traits, S, J>;
template class jbtree::btree<u64_blob_traits<255>, S, J>;
