// Deferred sealing (SealDeferringBuffer): a storage that seals changed nodes
// itself does so once, before their bytes leave it, and every reader in
// between sees a consistent tree.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "crash_device.hpp"
#include "test_support.hpp"

#include <jbtree/hosted/owned_memory.hpp>
#include <jbtree/volume/volume.hpp>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <vector>

using namespace jt;

namespace {

using S = memory_storage<>;
using J = null_journal<S>;
using tree = btree<u64_map_traits, S, J>;

static_assert(SealDeferringBuffer<S::buffer>);

} // namespace

TEST_CASE("memory storage: changed nodes are sealed when raw_block() hands them out, not on every change") {
    constexpr std::uint32_t seed = 0xC0FFEEu;
    S s({4096, true, seed});
    J j(s);
    auto t = tree::create(s, j, 9);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    REQUIRE(h);
    for (std::uint64_t k = 1; k <= 100; ++k) REQUIRE(t->insert(*h, k * 7, k) == errc::ok);
    const std::uint64_t root = t->anchor().root;
    REQUIRE(t->height() == 1);
    {
        auto b = s.read(root);
        REQUIRE(b);
        // Changed by the engine and not sealed yet: the stored checksum is stale.
        CHECK_FALSE(b->sealed());
        CHECK(b->checked());
        CHECK(load_le<std::uint32_t>(b->data() + 4) != node_checksum(b->data(), 4096, seed));
    }
    // The tree reads, walks and verifies fine meanwhile.
    CHECK(*t->find(7 * 50) == 50);
    CHECK_CLEAN(*t);
    // Raw access seals first: the bytes are what a device would hold.
    const unsigned char* p = s.raw_block(root);
    REQUIRE(p);
    CHECK(load_le<std::uint32_t>(p + 4) == node_checksum(p, 4096, seed));
    {
        auto b = s.read(root);
        REQUIRE(b);
        CHECK(b->sealed());
        CHECK_FALSE(b->checked()); // handed out raw: verified again on the next read
    }
    CHECK(*t->find(7) == 1);
    // A raw change after that is caught by the next read's verification.
    unsigned char* w = s.raw_block(root);
    w[200] ^= 1;
    CHECK(t->find(7).error() == errc::bad_checksum);
    CHECK(t->last_fault().block == root);
}

TEST_CASE("memory storage: a tree changed many times seals to the same bytes as one sealed after every change") {
    // Two storages, one tree each, the same operations. The reference
    // storage's buffers seal now (a wrapper without defer_seal), the other
    // defers. Every block must end up byte-identical.
    struct eager_storage {
        struct buffer {
            S::buffer b;
            unsigned char* data() noexcept { return b.data(); }
            std::uint64_t blkno() const noexcept { return b.blkno(); }
        };
        S* in;
        std::uint32_t block_size() const noexcept { return in->block_size(); }
        bool checksums() const noexcept { return in->checksums(); }
        std::uint32_t checksum_seed() const noexcept { return in->checksum_seed(); }
        result<buffer> read(std::uint64_t n) noexcept {
            auto r = in->read(n);
            if (!r) return r.error();
            return buffer{*r};
        }
        result<buffer> allocate() noexcept {
            auto r = in->allocate();
            if (!r) return r.error();
            return buffer{*r};
        }
        errc free(std::uint64_t n) noexcept { return in->free(n); }
        errc write(buffer&) noexcept { return errc::ok; }
        errc flush() noexcept { return errc::ok; }
    };
    static_assert(BlockStorage<eager_storage>);
    static_assert(!SealDeferringBuffer<eager_storage::buffer>);
    using EJ = null_journal<eager_storage>;

    S ds({1024, true, 5}), es_inner({1024, true, 5});
    eager_storage es{&es_inner};
    J dj(ds);
    EJ ej(es);
    auto dt = tree::create(ds, dj, 2);
    auto et = btree<u64_map_traits, eager_storage, EJ>::create(es, ej, 2);
    REQUIRE(dt);
    REQUIRE(et);
    auto dh = dj.start(unlimited_credits);
    auto eh = ej.start(unlimited_credits);
    std::mt19937_64 rng(3);
    std::map<std::uint64_t, std::uint64_t> m;
    for (int i = 0; i < 20000; ++i) {
        const std::uint64_t k = rng() % 5000;
        if (rng() % 3 == 0 && m.count(k)) {
            REQUIRE(dt->erase(*dh, k) == errc::ok);
            REQUIRE(et->erase(*eh, k) == errc::ok);
            m.erase(k);
        } else {
            bool a = false, b = false;
            REQUIRE(dt->insert_or_assign(*dh, k, k + i, &a) == errc::ok);
            REQUIRE(et->insert_or_assign(*eh, k, k + i, &b) == errc::ok);
            REQUIRE(a == b);
            m[k] = k + i;
        }
    }
    CHECK_CLEAN(*dt);
    CHECK(same_contents(*dt, m));
    REQUIRE(ds.end_block() == es_inner.end_block());
    for (std::uint64_t b = 1; b < ds.end_block(); ++b) {
        CAPTURE(b);
        const unsigned char* x = ds.raw_block(b);
        const unsigned char* y = es_inner.raw_block(b);
        REQUIRE(x);
        REQUIRE(y);
        CHECK(std::memcmp(x, y, 1024) == 0);
    }
}

TEST_CASE("memory storage: verify() passes nodes whose seal is pending and reports damage done after raw access") {
    constexpr std::uint32_t seed = 77;
    S s({512, true, seed});
    J j(s);
    auto t = tree::create(s, j, 4);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    REQUIRE(h);
    for (std::uint64_t k = 0; k < 3000; ++k) REQUIRE(t->insert(*h, k * 3, k) == errc::ok);
    REQUIRE(t->height() >= 2);
    // Every node the tree holds was changed since it was sealed (or never
    // sealed at all): all checksums are stale, and verify() is clean.
    std::vector<std::uint64_t> nodes;
    std::uint64_t stale = 0;
    for (std::uint64_t b = 1; b < s.end_block(); ++b) {
        auto r = s.read(b);
        REQUIRE(r);
        if (header_of(r->data())->magic.get() != u64_map_traits::magic) continue;
        nodes.push_back(b);
        if (!r->sealed()) ++stale;
        if (load_le<std::uint32_t>(r->data() + 4) != node_checksum(r->data(), 512, seed)) CHECK_FALSE(r->sealed());
    }
    REQUIRE(nodes.size() > 10);
    CHECK(stale == nodes.size());
    CHECK_CLEAN(*t);
    // One byte of a leaf's key area flipped through raw access (which
    // seals the node first): verify() names that block, with a checksum
    // fault, although its neighbours are still pending.
    std::uint64_t leaf = 0;
    for (const std::uint64_t b : nodes)
        if (header_of(s.read(b)->data())->level.get() == 0) leaf = b;
    REQUIRE(leaf != 0);
    s.raw_block(leaf)[sizeof(node_header) + 3] ^= 0x10;
    for (const std::uint64_t b : nodes)
        if (b != leaf) CHECK_FALSE(s.read(b)->sealed());
    const verify_report rep = t->verify();
    REQUIRE(rep.problem_count >= 1);
    CHECK(rep.problems[0].kind == problem_kind::bad_node);
    CHECK(rep.problems[0].fault == node_fault::checksum);
    CHECK(rep.problems[0].blkno == leaf);
}

namespace {

constexpr std::uint32_t vbs = 1024;
constexpr std::uint64_t vblocks = 4096;
using V = volume<crash_device>;
using vtree = btree<u64_map_traits, V::storage, V::journal_type>;
static_assert(SealDeferringBuffer<V::buffer>);

hosted::journal_sizes vsizes() {
    hosted::journal_sizes z;
    z.block_size = vbs;
    z.cache_blocks = 1024;
    z.max_transaction_blocks = 256;
    z.committed_capacity = 64;
    z.staging_blocks = 16;
    z.bitmap_blocks = hosted::volume_bitmap_blocks(vblocks, vbs);
    z.revoke_capacity = 4096;
    return z;
}

// Every node of the tree, as the device holds it, has a valid checksum.
void check_device_nodes(const crash_device& d, vtree& t, std::uint32_t seed) {
    REQUIRE(t.for_each_node([&](std::uint64_t b, unsigned) {
        const unsigned char* p = d.block(b);
        CAPTURE(b);
        CHECK(load_le<std::uint32_t>(p + 4) == node_checksum(p, vbs, seed));
    }) == errc::ok);
}

} // namespace

TEST_CASE("volume: nodes are sealed by the journal's frozen trigger as the transaction commits") {
    crash_device d(vbs, vblocks);
    std::vector<unsigned char> scratch(vbs);
    volume_geometry g;
    g.journal_blocks = 1024;
    g.uuid[3] = 7;
    REQUIRE(V::create(d, g, scratch.data()) == errc::ok);
    std::map<std::uint64_t, std::uint64_t> m;
    std::uint32_t seed = 0;
    {
        hosted::owned_memory mem(vsizes());
        V v(d, mem.volume());
        REQUIRE(v.open({}) == errc::ok);
        seed = v.store().checksum_seed();
        REQUIRE(v.store().checksums());
        auto t = vtree::create(v.store(), v.journal(), 1);
        REQUIRE(t);
        std::mt19937_64 rng(5);
        for (int round = 0; round < 6; ++round) {
            for (int i = 0; i < 150; ++i) {
                auto h = v.start(t->insert_credits() + t->erase_credits());
                REQUIRE(h);
                const std::uint64_t k = rng() % 3000;
                if (i % 4 == 3 && m.count(k)) {
                    REQUIRE(t->erase(*h, k) == errc::ok);
                    m.erase(k);
                } else {
                    REQUIRE(t->insert_or_assign(*h, k, k * 3) == errc::ok);
                    m[k] = k * 3;
                }
                REQUIRE(v.set_anchor(0, t->anchor()) == errc::ok);
                REQUIRE(v.stop(*h) == errc::ok);
            }
            // Changed in the running transaction: not sealed yet, and the
            // tree reads and verifies meanwhile.
            auto root = v.store().read(t->anchor().root);
            REQUIRE(root);
            CHECK_FALSE(root->sealed());
            CHECK(load_le<std::uint32_t>(root->data() + 4) != node_checksum(root->data(), vbs, seed));
            root->reset();
            CHECK_CLEAN(*t);
            REQUIRE(same_contents(*t, m));
            REQUIRE(v.commit() == errc::ok);
            // Committed: sealed in the cache (the copy in the log is that one).
            auto r2 = v.store().read(t->anchor().root);
            REQUIRE(r2);
            CHECK(r2->sealed());
            CHECK(load_le<std::uint32_t>(r2->data() + 4) == node_checksum(r2->data(), vbs, seed));
        }
        REQUIRE(v.close() == errc::ok); // checkpoint: every node home
        REQUIRE(v.open({}) == errc::ok);
        auto an = v.anchor(0);
        REQUIRE(an);
        auto t2 = vtree::open(v.store(), v.journal(), *an);
        REQUIRE(t2);
        check_device_nodes(d, *t2, seed);
        REQUIRE(v.close() == errc::ok);
    }
    // A fresh open reads every node from the device and verifies it.
    hosted::owned_memory mem(vsizes());
    V v(d, mem.volume());
    REQUIRE(v.open({}) == errc::ok);
    auto an = v.anchor(0);
    REQUIRE(an);
    auto t = vtree::open(v.store(), v.journal(), *an);
    REQUIRE(t);
    CHECK_CLEAN(*t);
    CHECK(same_contents(*t, m));
    REQUIRE(v.close() == errc::ok);
}

TEST_CASE("volume without node checksums: the journal has no trigger and nothing is sealed") {
    crash_device d(vbs, vblocks);
    std::vector<unsigned char> scratch(vbs);
    volume_geometry g;
    g.journal_blocks = 1024;
    g.node_checksums = false;
    REQUIRE(V::create(d, g, scratch.data()) == errc::ok);
    hosted::owned_memory mem(vsizes());
    V v(d, mem.volume());
    REQUIRE(v.open({}) == errc::ok);
    REQUIRE_FALSE(v.store().checksums());
    auto t = vtree::create(v.store(), v.journal(), 1);
    REQUIRE(t);
    auto h = v.start(t->insert_credits());
    REQUIRE(h);
    REQUIRE(t->insert(*h, 5, 6) == errc::ok);
    REQUIRE(v.set_anchor(0, t->anchor()) == errc::ok);
    REQUIRE(v.stop(*h) == errc::ok);
    auto b = v.store().read(t->anchor().root);
    REQUIRE(b);
    CHECK(b->sealed());
    CHECK(load_le<std::uint32_t>(b->data() + 4) == 0);
    b->reset();
    REQUIRE(v.commit() == errc::ok);
    REQUIRE(v.close() == errc::ok);
}
