// The concrete policies: memory storage and the null journal.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

using namespace jt;

namespace {

// An allocator that fails after a number of allocations, counting live bytes.
struct limited_allocator {
    long* left;
    std::int64_t* live;
    void* allocate(std::size_t n, std::size_t align) noexcept {
        if (*left == 0) return nullptr;
        --*left;
        *live += static_cast<std::int64_t>(n);
        return heap_allocator{}.allocate(n, align);
    }
    void deallocate(void* p, std::size_t n, std::size_t align) noexcept {
        *live -= static_cast<std::int64_t>(n);
        heap_allocator{}.deallocate(p, n, align);
    }
};

} // namespace

TEST_CASE("memory storage: allocate, read, free, reuse, poison") {
    memory_storage<> s({1024});
    REQUIRE(s.read(0).error() == errc::io); // block 0 is never a block
    REQUIRE(s.read(1).error() == errc::io); // not allocated yet
    auto a = s.allocate();
    auto b = s.allocate();
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(a->blkno() != 0);
    REQUIRE(a->blkno() != b->blkno());
    for (std::uint32_t i = 0; i < 1024; ++i) REQUIRE(a->data()[i] == 0); // zero-filled
    a->data()[5] = 7;
    REQUIRE(s.read(a->blkno())->data()[5] == 7);
    REQUIRE(s.blocks_in_use() == 2);
    const std::uint64_t freed = a->blkno();
    REQUIRE(s.free(freed) == errc::ok);
    REQUIRE(s.blocks_in_use() == 1);
    REQUIRE(s.raw_block(freed)[100] == memory_storage<>::poison);
    auto c = s.allocate(); // reuses the freed block, zeroed again
    REQUIRE(c);
    REQUIRE(c->blkno() == freed);
    REQUIRE(c->data()[5] == 0);
    REQUIRE(s.free(0) == errc::invalid);
    REQUIRE(s.free(999) == errc::invalid);
    REQUIRE(reinterpret_cast<std::uintptr_t>(c->data()) % 64 == 0);
}

TEST_CASE("memory storage: blocks across chunks stay distinct, in place and bounded in memory") {
    // Enough 1 KiB blocks for growing chunks, full-sized ones (128 KiB:
    // 128 blocks) and several regrowths of the index.
    memory_storage<> s({1024, false, 0, 0, 7});
    constexpr std::uint64_t n = 3000;
    std::vector<unsigned char*> where;
    for (std::uint64_t i = 0; i < n; ++i) {
        auto b = s.allocate();
        REQUIRE(b);
        REQUIRE(b->blkno() == 7 + i);
        REQUIRE(reinterpret_cast<std::uintptr_t>(b->data()) % memory_storage<>::alignment == 0);
        store_le<std::uint64_t>(b->data(), b->blkno());
        store_le<std::uint64_t>(b->data() + 1016, ~b->blkno());
        where.push_back(b->data());
    }
    // Every block reads back at the address it was handed out at (blocks
    // never move), with its own contents: no two overlap.
    for (std::uint64_t i = 0; i < n; ++i) {
        auto b = s.read(7 + i);
        REQUIRE(b);
        REQUIRE(b->data() == where[i]);
        REQUIRE(load_le<std::uint64_t>(b->data()) == 7 + i);
        REQUIRE(load_le<std::uint64_t>(b->data() + 1016) == ~(7 + i));
    }
    CHECK(s.read(7 + n).error() == errc::io);
    // Held: the blocks, at most one chunk more, and the index (a pointer
    // per chunk, a byte per block, room for twice the blocks).
    CHECK(s.bytes_reserved() >= n * 1024);
    CHECK(s.bytes_reserved() <= n * 1024 + memory_storage<>::max_chunk_bytes + 2 * n * 9);
    // Freed blocks are reused before a chunk grows.
    REQUIRE(s.free(7 + 100) == errc::ok);
    REQUIRE(s.free(7 + 2000) == errc::ok);
    const std::uint64_t held = s.bytes_reserved();
    auto a = s.allocate();
    auto b = s.allocate();
    REQUIRE(a);
    REQUIRE(b);
    CHECK(((a->blkno() == 7 + 100 && b->blkno() == 7 + 2000) || (a->blkno() == 7 + 2000 && b->blkno() == 7 + 100)));
    CHECK(a->data() == where[a->blkno() - 7]);
    CHECK(s.bytes_reserved() == held);
}

TEST_CASE("memory_storage: numbering from first_block, as the blocks will be numbered on a device") {
    memory_storage<> s({1024, false, 0, 3, 5000});
    REQUIRE(s.end_block() == 5000);
    std::uint64_t got[3];
    for (auto& g : got) {
        auto b = s.allocate();
        REQUIRE(b);
        g = b->blkno();
        b->data()[0] = static_cast<unsigned char>(g);
    }
    CHECK(got[0] == 5000);
    CHECK(got[1] == 5001);
    CHECK(got[2] == 5002);
    CHECK(s.end_block() == 5003);
    CHECK(s.allocate().error() == errc::no_space); // max_blocks 3
    CHECK(s.read(5001)->data()[0] == static_cast<unsigned char>(5001));
    CHECK(s.raw_block(5002) != nullptr);
    CHECK(s.raw_block(4999) == nullptr);
    CHECK(s.raw_block(5003) == nullptr);
    CHECK(s.read(1).error() == errc::io);
    CHECK(s.free(4999) == errc::invalid);
    REQUIRE(s.free(5001) == errc::ok);
    auto again = s.allocate();
    REQUIRE(again);
    CHECK(again->blkno() == 5001);
    memory_storage<> bad({1024, false, 0, 0, 0});
    CHECK(bad.allocate().error() == errc::invalid);
}

TEST_CASE("memory storage: limits and allocator failure") {
    memory_storage<> capped({512, false, 0, 3});
    for (int i = 0; i < 3; ++i) REQUIRE(capped.allocate());
    REQUIRE(capped.allocate().error() == errc::no_space);

    memory_storage<> bad({1000});
    REQUIRE(bad.allocate().error() == errc::invalid); // not a power of two

    long left = 5;
    std::int64_t live = 0;
    {
        memory_storage<limited_allocator> s({512}, limited_allocator{&left, &live});
        int got = 0;
        for (;;) {
            auto r = s.allocate();
            if (!r) {
                REQUIRE(r.error() == errc::no_memory);
                break;
            }
            ++got;
        }
        // One allocation went to the index, then four chunks of 1, 2, 4
        // and 8 blocks.
        REQUIRE(got == 15);
        // A tree on top sees the failure as an error, not a crash.
        null_journal<memory_storage<limited_allocator>> j(s);
        left = 0;
        auto t = btree<u64_map_traits, memory_storage<limited_allocator>, null_journal<memory_storage<limited_allocator>>>::create(
            s, j, 1);
        REQUIRE(t);
        auto h = j.start(10);
        REQUIRE(t->insert(*h, 1, 1) == errc::no_memory);
        REQUIRE(t->empty());
        REQUIRE(t->verify().clean());
    }
    REQUIRE(live == 0); // everything given back
}

TEST_CASE("null journal: credit books and handle state") {
    memory_storage<> s({512});
    null_journal<memory_storage<>> j(s);
    REQUIRE(j.start(0).error() == errc::invalid);
    auto h = j.start(2);
    REQUIRE(h);
    auto b = s.allocate();
    REQUIRE(b);
    REQUIRE(j.credits_left(*h) == 2);
    REQUIRE(j.get_write_access(*h, *b) == errc::ok);
    REQUIRE(j.get_create_access(*h, *b) == errc::ok);
    REQUIRE(j.credits_left(*h) == 0);
    REQUIRE(j.get_write_access(*h, *b) == errc::no_credits);
    REQUIRE(h->used == 3);
    REQUIRE(j.dirty_metadata(*h, *b) == errc::ok);
    REQUIRE(j.stop(*h) == errc::ok);
    REQUIRE(j.stop(*h) == errc::invalid); // stopped twice
    REQUIRE(j.dirty_metadata(*h, *b) == errc::invalid);
    auto h2 = j.start(unlimited_credits);
    REQUIRE(j.transaction_id(*h2) > j.transaction_id(*h));
    for (int i = 0; i < 1000; ++i) REQUIRE(j.get_write_access(*h2, *b) == errc::ok);
    REQUIRE(j.credits_left(*h2) == unlimited_credits);
}

TEST_CASE("every node written carries the id of the transaction that wrote it") {
    memory_storage<> s({512});
    null_journal<memory_storage<>> j(s);
    auto t = btree<u64_map_traits, memory_storage<>, null_journal<memory_storage<>>>::create(s, j, 1);
    REQUIRE(t);
    auto h1 = j.start(unlimited_credits);
    for (std::uint64_t k = 0; k < 100; ++k) REQUIRE(t->insert(*h1, k, k) == errc::ok);
    REQUIRE(j.stop(*h1) == errc::ok);
    auto h2 = j.start(unlimited_credits);
    REQUIRE(t->insert(*h2, 1000, 1) == errc::ok); // appends to the last leaf
    auto c = t->last();
    REQUIRE(c);
    // The last leaf was written by h2; the first by h1.
    std::uint64_t last_leaf = 0, first_leaf = 0;
    for (std::uint64_t b = 1; s.raw_block(b); ++b) {
        const node_header* hd = header_of(s.raw_block(b));
        if (hd->magic.get() != u64_map_traits::magic || hd->level.get() != 0) continue;
        if (hd->right.get() == 0) last_leaf = b;
        if (hd->left.get() == 0) first_leaf = b;
    }
    REQUIRE(last_leaf);
    REQUIRE(first_leaf);
    REQUIRE(first_leaf != last_leaf);
    REQUIRE(header_of(s.raw_block(last_leaf))->txid.get() == j.transaction_id(*h2));
    REQUIRE(header_of(s.raw_block(first_leaf))->txid.get() == j.transaction_id(*h1));
}
