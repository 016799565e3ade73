// The node format: layouts, validation, and corruption caught by
// validation or verify().
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include <algorithm>

using namespace jt;

namespace {

using S = memory_storage<>;
using J = null_journal<S>;

template <class Traits>
using tree_t = btree<Traits, S, J>;

// Blocks currently holding nodes of tree type Traits.
template <class Traits>
std::vector<std::uint64_t> node_blocks(S& s) {
    std::vector<std::uint64_t> out;
    for (std::uint64_t b = 1; s.raw_block(b); ++b)
        if (header_of(s.raw_block(b))->magic.get() == Traits::magic) out.push_back(b);
    return out;
}

} // namespace

TEST_CASE("layout capacities follow docs/format.md") {
    // cap = (block_size - 64) / (key_size + payload_size)
    CHECK(node_layout<u64_map_traits>(4096).capacity(true) == 252);
    CHECK(node_layout<u64_map_traits>(4096).capacity(false) == 252);
    CHECK(node_layout<u64_extent_traits>(4096).capacity(false) == 168); // key + high key + child
    CHECK(node_layout<u64_map_traits>(512).capacity(true) == 28);
    CHECK(node_layout<u64_map_traits>(65536).capacity(true) == 4092);
    CHECK(node_layout<u64_blob_traits<255>>(4096).capacity(true) == 4032); // bytes
    CHECK(node_layout<u64_blob_traits<255>>(4096).usable());
    CHECK(!node_layout<u64_blob_traits<255>>(512).usable()); // fewer than three of the largest records
}

TEST_CASE("slotted node: random inserts and erases keep records tiling the block") {
    using T = u64_blob_traits<100>;
    using L = node_layout<T>;
    const L lay(1024);
    std::vector<unsigned char> block(1024);
    lay.init(block.data(), 42, 0, 3);
    std::vector<std::pair<std::uint64_t, std::vector<unsigned char>>> model;
    std::mt19937_64 rng(8);
    // Keys are random, not sorted: this checks the layout only.
    const node_expectation want{42, 3, 0, false, 0, false};
    for (int step = 0; step < 20000; ++step) {
        CAPTURE(step);
        const std::uint32_t cnt = L::count(block.data());
        REQUIRE(cnt == model.size());
        const std::uint32_t vlen = static_cast<std::uint32_t>(rng() % 101);
        if (rng() % 2 && lay.free_units(block.data(), true) >= L::leaf_units_for(vlen)) {
            const std::uint32_t i = cnt ? static_cast<std::uint32_t>(rng() % (cnt + 1)) : 0;
            unsigned char key[8];
            std::vector<unsigned char> val(vlen);
            for (auto& b : val) b = static_cast<unsigned char>(rng());
            const std::uint64_t k = rng();
            store_le<std::uint64_t>(key, k);
            lay.insert(block.data(), true, i, key, val.data(), vlen);
            model.insert(model.begin() + i, {k, val});
        } else if (cnt) {
            const std::uint32_t i = static_cast<std::uint32_t>(rng() % cnt);
            const std::uint32_t m = 1 + static_cast<std::uint32_t>(rng() % std::min<std::uint32_t>(3, cnt - i));
            lay.erase_range(block.data(), true, i, m);
            model.erase(model.begin() + i, model.begin() + i + m);
        }
        if (model.empty()) continue;
        REQUIRE(check_node(lay, block.data(), want) == node_fault::none);
        for (std::uint32_t i = 0; i < model.size(); ++i) {
            REQUIRE(load_le<std::uint64_t>(lay.key(block.data(), true, i)) == model[i].first);
            REQUIRE(lay.payload_len(block.data(), true, i) == model[i].second.size());
            if (!model[i].second.empty())
                REQUIRE(std::memcmp(lay.payload(block.data(), true, i), model[i].second.data(),
                                    model[i].second.size()) == 0);
        }
        // Free space is zero: nodes carry no stale bytes.
        const std::uint32_t slots_end = node_header_size + 2 * L::count(block.data());
        const std::uint32_t ds = header_of(block.data())->data_start.get();
        REQUIRE(std::all_of(block.begin() + slots_end, block.begin() + ds, [](unsigned char c) { return c == 0; }));
    }
}

TEST_CASE("checksums on: flipping any byte of any node is caught") {
    using T = u64_map_traits;
    S s({512, true, 0xABCDEFu});
    J j(s);
    auto t = tree_t<T>::create(s, j, 2);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    for (std::uint64_t k = 0; k < 2000; ++k) REQUIRE(t->insert(*h, k * 7, k) == errc::ok);
    REQUIRE(t->height() == 3);
    CHECK_CLEAN(*t);
    const auto blocks = node_blocks<T>(s);
    REQUIRE(blocks.size() > 20);
    int caught_by_verify = 0, caught_by_find = 0;
    for (std::uint64_t b : blocks) {
        unsigned char* p = s.raw_block(b);
        const std::uint64_t some_key = load_le<std::uint64_t>(p + node_header_size) ; // first key of the node
        for (std::uint32_t off = 0; off < 512; off += (off < 64 ? 1 : 7)) {
            CAPTURE(b);
            CAPTURE(off);
            p[off] ^= 0x20;
            const auto rep = t->verify();
            REQUIRE(!rep.clean());
            ++caught_by_verify;
            // Reading through the damaged node fails cleanly (never a wrong answer).
            auto r = t->find(some_key);
            if (!r) {
                REQUIRE((r.error() == errc::bad_checksum || r.error() == errc::corrupted));
                ++caught_by_find;
            } else {
                REQUIRE(*r == some_key / 7);
            }
            p[off] ^= 0x20;
        }
    }
    CHECK_CLEAN(*t);
    MESSAGE("corruptions caught: " << caught_by_verify << " by verify, " << caught_by_find << " by find");
}

TEST_CASE("checksums off: every checked header field and broken records are caught") {
    using T = padded_extent_traits<16, 16>; // interval mode: high keys are checked too
    S s({512, false, 0});
    J j(s);
    auto t = tree_t<T>::create(s, j, 2);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    for (std::uint64_t k = 0; k < 400; ++k) REQUIRE(t->insert(*h, k * 10, 1 + k % 9) == errc::ok);
    REQUIRE(t->height() >= 3);
    CHECK_CLEAN(*t);
    const node_layout<T>& lay = t->layout();
    // Header bytes that carry no checkable meaning without checksums: the
    // checksum itself and the transaction id.
    auto unchecked = [](std::uint32_t off) { return (off >= 4 && off < 8) || (off >= 16 && off < 24); };
    for (std::uint64_t b : node_blocks<T>(s)) {
        unsigned char* p = s.raw_block(b);
        const bool leaf = header_of(p)->level.get() == 0;
        for (std::uint32_t off = 0; off < node_header_size; ++off) {
            if (unchecked(off)) continue;
            // Leaf links of the first/last leaf are 0; flipping one bit makes
            // a link that disagrees with the leaf order either way.
            CAPTURE(b);
            CAPTURE(off);
            p[off] ^= 0x01;
            REQUIRE(!t->verify().clean());
            p[off] ^= 0x01;
        }
        const std::uint32_t cnt = header_of(p)->count.get();
        // A key moved past its right neighbour breaks the order.
        if (cnt >= 2) {
            unsigned char* k0 = lay.key(p, leaf, 0);
            unsigned char saved[16];
            std::memcpy(saved, k0, 16);
            store_le<std::uint64_t>(k0, load_le<std::uint64_t>(lay.key(p, leaf, 1)) + 1);
            const auto rep = t->verify();
            REQUIRE(rep.has(problem_kind::key_order));
            std::memcpy(k0, saved, 16);
        }
        if (!leaf) {
            // An internal high key that no longer matches its subtree.
            unsigned char* high = lay.payload(p, false, 0);
            high[0] ^= 0x01;
            REQUIRE(t->verify().has(problem_kind::entry_high));
            high[0] ^= 0x01;
            // A child pointer to block 0, to a node of another level, and to a
            // node at the right level but elsewhere in the tree.
            unsigned char* child = lay.payload(p, false, 0) + 16;
            const std::uint64_t c0 = load_le<std::uint64_t>(child);
            store_le<std::uint64_t>(child, 0);
            REQUIRE(t->verify().has(problem_kind::null_child));
            store_le<std::uint64_t>(child, b);
            REQUIRE(t->verify().has(problem_kind::bad_node));
            const std::uint64_t c1 = load_le<std::uint64_t>(lay.payload(p, false, 1) + 16);
            store_le<std::uint64_t>(child, c1); // the same child reachable twice
            const auto rep = t->verify();
            REQUIRE(!rep.clean());
            REQUIRE((rep.has(problem_kind::entry_key) || rep.has(problem_kind::key_bound)));
            store_le<std::uint64_t>(child, c0);
        }
    }
    CHECK_CLEAN(*t);
}

TEST_CASE("misdirected, cross-linked and freed blocks are refused") {
    using T = u64_map_traits;
    S s({512, true, 5});
    J j(s);
    auto t = tree_t<T>::create(s, j, 2);
    auto other = tree_t<T>::create(s, j, 3);
    REQUIRE(t);
    REQUIRE(other);
    auto h = j.start(unlimited_credits);
    for (std::uint64_t k = 0; k < 300; ++k) {
        REQUIRE(t->insert(*h, k, k) == errc::ok);
        REQUIRE(other->insert(*h, k, k) == errc::ok);
    }
    const std::uint64_t root = t->anchor().root;
    std::vector<unsigned char> saved(s.raw_block(root), s.raw_block(root) + 512);
    // A block of the other tree written over our root: valid checksum, wrong owner/self.
    std::memcpy(s.raw_block(root), s.raw_block(other->anchor().root), 512);
    auto rep = t->verify();
    REQUIRE(rep.problem_count >= 1);
    REQUIRE(rep.problems[0].kind == problem_kind::bad_node);
    REQUIRE((rep.problems[0].fault == node_fault::self || rep.problems[0].fault == node_fault::owner));
    REQUIRE(t->find(5).error() == errc::corrupted);
    std::memcpy(s.raw_block(root), saved.data(), 512);
    CHECK_CLEAN(*t);
    // A freed block is poisoned: anything still pointing at it sees bad magic.
    auto fresh = s.allocate();
    REQUIRE(fresh);
    const std::uint64_t fb = fresh->blkno();
    std::memcpy(s.raw_block(fb), s.raw_block(root), 512);
    REQUIRE(s.free(fb) == errc::ok);
    REQUIRE(check_node(t->layout(), s.raw_block(fb), {fb, 2, t->height() - 1u, true, 5}) == node_fault::magic);
}

TEST_CASE("checksums off: sibling links closed into a ring are refused, not walked forever") {
    using T = u64_map_traits;
    S s({512, false, 6});
    J j(s);
    auto t = tree_t<T>::create(s, j, 2);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    for (std::uint64_t k = 0; k < 300; ++k) REQUIRE(t->insert(*h, k, k) == errc::ok);
    std::uint64_t first = 0, last = 0;
    for (const std::uint64_t b : node_blocks<T>(s)) {
        const node_header* nh = header_of(s.raw_block(b));
        if (nh->level.get() != 0) continue;
        if (nh->left.get() == 0) first = b;
        if (nh->right.get() == 0) last = b;
    }
    REQUIRE(first);
    REQUIRE(last);
    REQUIRE(first != last);
    // The links agree with each other, so only key order can tell.
    header_of(s.raw_block(last))->right.set(first);
    header_of(s.raw_block(first))->left.set(last);

    auto c = t->first();
    REQUIRE(c);
    errc e = errc::ok;
    std::uint64_t steps = 0;
    while (!c->at_end() && e == errc::ok && steps < 1000) {
        e = c->next();
        ++steps;
    }
    REQUIRE(e == errc::corrupted);
    REQUIRE(steps == 300); // every record once, then the bad link
    auto b = t->last();
    REQUIRE(b);
    e = errc::ok;
    steps = 0;
    while (!b->at_end() && e == errc::ok && steps < 1000) {
        e = b->prev();
        ++steps;
    }
    REQUIRE(e == errc::corrupted);
    REQUIRE(steps == 300);
    std::uint64_t seen = 0;
    REQUIRE(t->for_each([&](const std::uint64_t&, const std::uint64_t&) { return ++seen < 1000; }) == errc::corrupted);
    REQUIRE(seen == 300);
    REQUIRE(t->verify().problem_count >= 1);

    // Now also unsort the first leaf: its first key becomes the largest of
    // all. The leaf's own key order (checked when it is read) and its
    // parent's separator both refuse it before any record is reported.
    const std::uint32_t first_count = header_of(s.raw_block(first))->count.get();
    REQUIRE(first_count > 1);
    store_le<std::uint64_t>(s.raw_block(first) + sizeof(node_header), 1000); // key slot 0
    REQUIRE(t->first().error() == errc::corrupted);
    CHECK(t->last_fault().block == first);
    CHECK(t->last_fault().what == node_fault::order);
    seen = 0;
    REQUIRE(t->for_each([&](const std::uint64_t&, const std::uint64_t&) { return ++seen < 1000; }) == errc::corrupted);
    REQUIRE(seen == 0);
}

TEST_CASE("a node dumped from a tree matches the documented byte layout") {
    using T = u64_map_traits;
    S s({512, true, 0x12345678u});
    J j(s);
    auto t = tree_t<T>::create(s, j, 0x0A0B0C0D);
    REQUIRE(t);
    auto h = j.start(unlimited_credits);
    REQUIRE(t->insert(*h, 0x1122334455667788ull, 0x99) == errc::ok);
    REQUIRE(t->insert(*h, 1, 2) == errc::ok);
    const unsigned char* p = s.raw_block(t->anchor().root);
    CHECK(load_le<std::uint32_t>(p + 0) == T::magic);
    CHECK(load_le<std::uint32_t>(p + 4) == node_checksum(p, 512, 0x12345678u));
    CHECK(load_le<std::uint64_t>(p + 8) == t->anchor().root);
    CHECK(load_le<std::uint64_t>(p + 16) == j.transaction_id(*h));
    CHECK(load_le<std::uint64_t>(p + 24) == 0);
    CHECK(load_le<std::uint64_t>(p + 32) == 0);
    CHECK(load_le<std::uint32_t>(p + 40) == 0x0A0B0C0D);
    CHECK(load_le<std::uint32_t>(p + 44) == 2);
    CHECK(load_le<std::uint16_t>(p + 48) == 0);
    CHECK(load_le<std::uint16_t>(p + 50) == 0);
    CHECK(load_le<std::uint16_t>(p + 52) == 8);
    CHECK(load_le<std::uint16_t>(p + 54) == 8);
    CHECK(load_le<std::uint32_t>(p + 56) == 0);
    CHECK(load_le<std::uint32_t>(p + 60) == 0);
    // keys at 64, values after the key array (capacity 28)
    CHECK(load_le<std::uint64_t>(p + 64) == 1);
    CHECK(load_le<std::uint64_t>(p + 72) == 0x1122334455667788ull);
    CHECK(load_le<std::uint64_t>(p + 64 + 28 * 8) == 2);
    CHECK(load_le<std::uint64_t>(p + 64 + 28 * 8 + 8) == 0x99);
    // the checksum is crc32c_raw seeded, over the block with the field zeroed
    std::vector<unsigned char> copy(p, p + 512);
    std::memset(copy.data() + 4, 0, 4);
    CHECK(crc32c_raw(0x12345678u, copy.data(), 512) == load_le<std::uint32_t>(p + 4));
}
