// The rmap facade (maps/rmap.hpp): record format, merge and split rules,
// queries, credits, and random operation sequences against a per-block model.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include <jbtree/hosted/owned_memory.hpp>
#include <jbtree/maps/rmap.hpp>
#include <jbtree/storage/memory_device.hpp>
#include <jbtree/volume/volume.hpp>

#include <algorithm>
#include <optional>

using namespace jt;

namespace {

using S = memory_storage<>;
using J = null_journal<S>;
using map_t = rmap<S, J>;
using rec = rmap_record;

constexpr std::uint64_t ino1 = 12, ino2 = 13, ino3 = 14;

std::string text(const rec& r) {
    return "{" + std::to_string(r.start) + "+" + std::to_string(r.length) + " o" + std::to_string(r.owner) + " @" +
           std::to_string(r.offset) + " f" + std::to_string(r.flags) + "}";
}
std::string text(const std::vector<rec>& v) {
    std::string s;
    for (auto& r : v) s += text(r) + " ";
    return s;
}

template <class Map>
std::vector<rec> records(Map& m) {
    std::vector<rec> out;
    REQUIRE(m.for_each([&](const rec& r) {
        out.push_back(r);
        return true;
    }) == errc::ok);
    return out;
}

template <class Report>
std::string report_text(const Report& r) {
    std::string s = jt::report_text(r.tree) + "; map: " + std::to_string(r.problem_count) + " problem(s)";
    for (std::uint32_t i = 0; i < r.kept(); ++i)
        s += std::string("; ") + describe(r.problems[i].kind) + " at " + std::to_string(r.problems[i].start);
    return s;
}

#define CHECK_MAP_CLEAN(m)                                                                                             \
    do {                                                                                                               \
        const auto rep_ = (m).verify();                                                                                \
        INFO(report_text(rep_));                                                                                       \
        REQUIRE(rep_.clean());                                                                                         \
        REQUIRE(rep_.mergeable == 0);                                                                                  \
        REQUIRE(rep_.records == (m).size());                                                                           \
    } while (0)

// A map in memory with one handle per operation holding exactly `credits`.
struct fixture {
    explicit fixture(std::uint32_t bs = 512) : s({bs, true, 7}), j(s) {
        auto r = map_t::create(s, j, 3);
        REQUIRE(r);
        m.emplace(std::move(*r));
    }
    errc map(std::uint64_t start, std::uint64_t len, std::uint64_t owner, std::uint64_t off, std::uint32_t flags = 0) {
        auto h = j.start(m->map_credits());
        REQUIRE(h);
        const errc e = m->map(*h, start, len, owner, off, flags);
        REQUIRE(h->used <= m->map_credits() + 0u);
        REQUIRE(j.stop(*h) == errc::ok);
        return e;
    }
    errc unmap(std::uint64_t start, std::uint64_t len, std::uint64_t owner, std::uint64_t off) {
        auto c = m->unmap_credits(start, len, owner, off);
        const std::uint32_t credits = c ? *c : 1u;
        auto h = j.start(credits);
        REQUIRE(h);
        const errc e = m->unmap(*h, start, len, owner, off);
        if (!c) REQUIRE(e == c.error());
        REQUIRE(h->used <= credits);
        REQUIRE(j.stop(*h) == errc::ok);
        return e;
    }
    S s;
    J j;
    std::optional<map_t> m;
};

} // namespace

TEST_CASE("rmap record format: 24-byte key, 12-byte value, little-endian, magic JBR1") {
    unsigned char k[24], v[12];
    rmap_traits::encode_key({0x0102030405060708ull, 0x1112131415161718ull, 0x2122232425262728ull}, k);
    const unsigned char want_k[24] = {8,    7,    6,    5,    4,    3,    2,    1,    0x18, 0x17, 0x16, 0x15,
                                      0x14, 0x13, 0x12, 0x11, 0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21};
    CHECK(std::memcmp(k, want_k, 24) == 0);
    rmap_traits::encode_value({0x3132333435363738ull, 0x41424344u}, v);
    const unsigned char want_v[12] = {0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31, 0x44, 0x43, 0x42, 0x41};
    CHECK(std::memcmp(v, want_v, 12) == 0);
    CHECK(rmap_traits::decode_key(k) == rmap_key{0x0102030405060708ull, 0x1112131415161718ull, 0x2122232425262728ull});
    CHECK(rmap_traits::decode_value(v) == rmap_value{0x3132333435363738ull, 0x41424344u});
    const unsigned char magic[4] = {0x31, 0x52, 0x42, 0x4A};
    unsigned char m4[4];
    store_le<std::uint32_t>(m4, rmap_traits::magic);
    CHECK(std::memcmp(m4, magic, 4) == 0);
    // Key order: start, then owner, then offset.
    CHECK(rmap_traits::compare({1, 9, 9}, {2, 0, 0}) < 0);
    CHECK(rmap_traits::compare({2, 1, 9}, {2, 2, 0}) < 0);
    CHECK(rmap_traits::compare({2, 2, 1}, {2, 2, 2}) < 0);
    CHECK(rmap_traits::compare({2, 2, 2}, {2, 2, 2}) == 0);
    // High key: last block, then maximal owner and offset; saturating.
    CHECK(rmap_traits::high_key({100, 5, 7}, {10, 0}) == rmap_key{109, ~0ull, ~0ull});
    CHECK(rmap_traits::high_key({~0ull - 1, 5, 7}, {10, 0}) == rmap_key{~0ull, ~0ull, ~0ull});
    // Node capacities: 12 records per 512-byte leaf, 8 entries per internal
    // node (key, high key, child = 56 bytes); 112 and 72 at 4 KiB.
    CHECK(node_layout<rmap_traits>(512).capacity(true) == 12);
    CHECK(node_layout<rmap_traits>(512).capacity(false) == 8);
    CHECK(node_layout<rmap_traits>(4096).capacity(true) == 112);
    CHECK(node_layout<rmap_traits>(4096).capacity(false) == 72);
}

TEST_CASE("rmap owners and flags: which combinations are valid, which count as data") {
    CHECK(rmap_owner::valid(1));
    CHECK(!rmap_owner::valid(0));
    CHECK(!rmap_owner::valid(rmap_owner::none));
    CHECK(!rmap_owner::valid(rmap_owner::special_base)); // reserved, unnamed
    for (std::uint64_t o : {rmap_owner::fs, rmap_owner::reserved_gdt, rmap_owner::bitmaps, rmap_owner::inode_table,
                            rmap_owner::journal, rmap_owner::jbtree, rmap_owner::unknown}) {
        CHECK(rmap_owner::valid(o));
        CHECK(rmap_owner::is_special(o));
        CHECK(rmap_valid_attrs(o, 0, 0));
        CHECK(!rmap_valid_attrs(o, 1, 0));
        CHECK(!rmap_valid_attrs(o, 0, rmap_flags::xattr));
        CHECK(!rmap_is_data(o, 0));
    }
    CHECK(rmap_valid_attrs(ino1, 77, 0));
    CHECK(rmap_valid_attrs(ino1, 77, rmap_flags::unwritten));
    CHECK(rmap_valid_attrs(ino1, 0, rmap_flags::xattr));
    CHECK(rmap_valid_attrs(ino1, 0, rmap_flags::bmbt));
    CHECK(!rmap_valid_attrs(ino1, 5, rmap_flags::bmbt));
    CHECK(!rmap_valid_attrs(ino1, 0, rmap_flags::bmbt | rmap_flags::xattr));
    CHECK(!rmap_valid_attrs(ino1, 0, rmap_flags::xattr | rmap_flags::unwritten));
    CHECK(!rmap_valid_attrs(ino1, 0, 8));
    CHECK(rmap_is_data(ino1, 0));
    CHECK(rmap_is_data(ino1, rmap_flags::unwritten));
    CHECK(!rmap_is_data(ino1, rmap_flags::xattr));
    CHECK(!rmap_is_data(ino1, rmap_flags::bmbt));
}

TEST_CASE("rmap map: merges with both neighbours of the same owner, exactly") {
    {
        fixture f;
        auto& m = *f.m;
        // Left merge: physically and logically contiguous, same flags.
        REQUIRE(f.map(100, 10, ino1, 0) == errc::ok);
        REQUIRE(f.map(110, 5, ino1, 10) == errc::ok);
        CHECK(records(m) == std::vector<rec>{{100, 15, ino1, 0, 0}});
        // Physically contiguous but not logically: two records.
        REQUIRE(f.map(90, 10, ino1, 0) == errc::ok);
        CHECK(records(m) == std::vector<rec>{{90, 10, ino1, 0, 0}, {100, 15, ino1, 0, 0}});
    }
    fixture f;
    auto& m2 = *f.m;
    // Right merge: the merged record takes the lower key.
    REQUIRE(f.map(100, 10, ino1, 50) == errc::ok);
    REQUIRE(f.map(90, 10, ino1, 40) == errc::ok);
    CHECK(records(m2) == std::vector<rec>{{90, 20, ino1, 40, 0}});
    // Filling the hole between two records makes one.
    REQUIRE(f.map(120, 10, ino1, 70) == errc::ok);
    CHECK(records(m2).size() == 2);
    REQUIRE(f.map(110, 10, ino1, 60) == errc::ok);
    CHECK(records(m2) == std::vector<rec>{{90, 40, ino1, 40, 0}});
    CHECK_MAP_CLEAN(m2);

    // No merge: other flags, a logical gap, another owner.
    REQUIRE(f.map(130, 5, ino1, 80, rmap_flags::unwritten) == errc::ok);
    REQUIRE(f.map(85, 5, ino1, 0) == errc::ok);
    REQUIRE(f.map(135, 5, ino2, 85) == errc::ok);
    CHECK(records(m2) == std::vector<rec>{{85, 5, ino1, 0, 0},
                                          {90, 40, ino1, 40, 0},
                                          {130, 5, ino1, 80, rmap_flags::unwritten},
                                          {135, 5, ino2, 85, 0}});
    // Unwritten extends unwritten.
    REQUIRE(f.map(135, 3, ino1, 85, rmap_flags::unwritten) == errc::ok);
    CHECK(records(m2)[2] == rec{130, 8, ino1, 80, rmap_flags::unwritten});
    CHECK_MAP_CLEAN(m2);
}

TEST_CASE("rmap map: offset-less records merge physically; overlaps with the same owner are refused") {
    fixture f;
    auto& m = *f.m;
    REQUIRE(f.map(1, 1, rmap_owner::fs, 0) == errc::ok);
    REQUIRE(f.map(3, 2, rmap_owner::fs, 0) == errc::ok);
    REQUIRE(f.map(2, 1, rmap_owner::fs, 0) == errc::ok);
    REQUIRE(f.map(5, 4, rmap_owner::inode_table, 0) == errc::ok);
    CHECK(records(m) == std::vector<rec>{{1, 4, rmap_owner::fs, 0, 0}, {5, 4, rmap_owner::inode_table, 0, 0}});
    // Extent-tree blocks of one inode merge too, but not with its data.
    REQUIRE(f.map(20, 1, ino1, 0, rmap_flags::bmbt) == errc::ok);
    REQUIRE(f.map(21, 1, ino1, 0, rmap_flags::bmbt) == errc::ok);
    REQUIRE(f.map(22, 1, ino1, 1, 0) == errc::ok);
    CHECK(records(m)[2] == rec{20, 2, ino1, 0, rmap_flags::bmbt});
    CHECK(records(m)[3] == rec{22, 1, ino1, 1, 0});

    const auto before = records(m);
    const auto anchor = m.anchor();
    CHECK(f.map(4, 3, rmap_owner::fs, 0) == errc::exists);  // overlaps 1..4
    CHECK(f.map(21, 1, ino1, 7, 0) == errc::exists);        // data over its own bmbt block
    CHECK(f.map(0, 100, ino1, 0, 0) == errc::exists);        // covers everything
    CHECK(f.map(0, 0, ino1, 0, 0) == errc::invalid);         // empty range
    CHECK(f.map(~0ull, 2, ino1, 0, 0) == errc::invalid);     // runs past 2^64-1
    CHECK(f.map(5, 1, ino1, ~0ull, 0) == errc::ok);          // logical block 2^64-1 itself is fine ...
    CHECK(f.map(6, 2, ino2, ~0ull, 0) == errc::invalid);     // ... past it is not
    CHECK(f.map(30, 1, rmap_owner::fs, 3) == errc::invalid); // special owners have no offset
    CHECK(f.map(30, 1, rmap_owner::special_base, 0) == errc::invalid);
    CHECK(f.map(30, 1, 0, 0) == errc::invalid);
    CHECK(f.map(30, 1, ino1, 0, 8) == errc::invalid);
    REQUIRE(f.unmap(5, 1, ino1, ~0ull) == errc::ok);
    CHECK(records(m) == before);
    CHECK(m.anchor() == anchor);
    // Another owner may share the blocks (reflink, shared xattr block).
    REQUIRE(f.map(1, 8, ino2, 0) == errc::ok);
    REQUIRE(f.map(3, 1, ino3, 0, rmap_flags::xattr) == errc::ok);
    CHECK_MAP_CLEAN(m);
    std::vector<rec> owners;
    REQUIRE(m.owners_of(3, [&](const rec& r) {
        owners.push_back(r);
        return true;
    }) == errc::ok);
    // In key order: (start, owner, offset).
    CHECK(owners == std::vector<rec>{{1, 8, ino2, 0, 0}, {1, 4, rmap_owner::fs, 0, 0}, {3, 1, ino3, 0, rmap_flags::xattr}});
}

TEST_CASE("rmap unmap: trims, splits and spans records; refuses anything not mapped that way") {
    fixture f;
    auto& m = *f.m;
    REQUIRE(f.map(100, 20, ino1, 0) == errc::ok);
    // Middle: a head and a tail with the right offsets.
    REQUIRE(f.unmap(105, 3, ino1, 5) == errc::ok);
    CHECK(records(m) == std::vector<rec>{{100, 5, ino1, 0, 0}, {108, 12, ino1, 8, 0}});
    // Head and tail trims.
    REQUIRE(f.unmap(100, 2, ino1, 0) == errc::ok);
    REQUIRE(f.unmap(118, 2, ino1, 18) == errc::ok);
    CHECK(records(m) == std::vector<rec>{{102, 3, ino1, 2, 0}, {108, 10, ino1, 8, 0}});
    // Not mapped (the hole 105..107), wrong offset, wrong owner, offset-less
    // with an offset: not_found and nothing changes.
    const auto before = records(m);
    CHECK(f.unmap(104, 5, ino1, 4) == errc::not_found);
    CHECK(f.unmap(108, 2, ino1, 9) == errc::not_found);
    CHECK(f.unmap(108, 2, ino2, 8) == errc::not_found);
    CHECK(f.unmap(0, 1, ino1, 0) == errc::not_found);
    CHECK(f.unmap(108, 0, ino1, 8) == errc::invalid);
    CHECK(f.unmap(108, 1, rmap_owner::fs, 8) == errc::invalid);
    CHECK(records(m) == before);

    // Spanning several records of one owner (flags differ, so they did not
    // merge), with another owner's records interleaved.
    fixture f2;
    auto& m2 = *f2.m;
    REQUIRE(f2.map(10, 5, ino1, 100) == errc::ok);
    REQUIRE(f2.map(15, 5, ino1, 105, rmap_flags::unwritten) == errc::ok);
    REQUIRE(f2.map(20, 5, ino1, 110) == errc::ok);
    REQUIRE(f2.map(25, 5, ino1, 115, rmap_flags::unwritten) == errc::ok);
    REQUIRE(f2.map(12, 15, ino2, 0) == errc::ok);
    auto c = m2.unmap_credits(12, 15, ino1, 102);
    REQUIRE(c);
    // Head (assign), three erases, tail (insert) at height 1: 4 + 3*3 + 4.
    CHECK(m2.tree().height() == 1);
    CHECK(*c == 4 + 3 * 3 + 4);
    REQUIRE(f2.unmap(12, 15, ino1, 102) == errc::ok);
    CHECK(records(m2) == std::vector<rec>{{10, 2, ino1, 100, 0},
                                          {12, 15, ino2, 0, 0},
                                          {27, 3, ino1, 117, rmap_flags::unwritten}});
    // Offset-less records: any stretch with offset 0.
    REQUIRE(f2.map(40, 10, rmap_owner::jbtree, 0) == errc::ok);
    REQUIRE(f2.unmap(42, 3, rmap_owner::jbtree, 0) == errc::ok);
    CHECK(records(m2)[3] == rec{40, 2, rmap_owner::jbtree, 0, 0});
    CHECK(records(m2)[4] == rec{45, 5, rmap_owner::jbtree, 0, 0});
    CHECK_MAP_CLEAN(m2);
}

TEST_CASE("rmap queries: overlapping, owners_of, ranges_of, find") {
    fixture f(4096);
    auto& m = *f.m;
    REQUIRE(f.map(0, 10, rmap_owner::fs, 0) == errc::ok);
    REQUIRE(f.map(10, 100, ino1, 0) == errc::ok);
    REQUIRE(f.map(50, 10, ino2, 7) == errc::ok);
    REQUIRE(f.map(200, 1, ino2, 0, rmap_flags::xattr) == errc::ok);
    REQUIRE(f.map(200, 1, ino3, 0, rmap_flags::xattr) == errc::ok);
    std::vector<rec> got;
    auto collect = [&](const rec& r) {
        got.push_back(r);
        return true;
    };
    REQUIRE(m.overlapping(9, 10, collect) == errc::ok);
    CHECK(got == std::vector<rec>{{0, 10, rmap_owner::fs, 0, 0}, {10, 100, ino1, 0, 0}});
    got.clear();
    REQUIRE(m.owners_of(200, collect) == errc::ok);
    CHECK(got.size() == 2);
    got.clear();
    REQUIRE(m.owners_of(150, collect) == errc::ok);
    CHECK(got.empty());
    REQUIRE(m.ranges_of(ino2, collect) == errc::ok);
    CHECK(got == std::vector<rec>{{50, 10, ino2, 7, 0}, {200, 1, ino2, 0, rmap_flags::xattr}});
    auto r = m.find(50, ino2, 7);
    REQUIRE(r);
    CHECK(*r == rec{50, 10, ino2, 7, 0});
    CHECK(m.find(50, ino2, 8).error() == errc::not_found);
    // The callback's false stops the walk.
    int calls = 0;
    REQUIRE(m.overlapping(0, ~0ull, [&](const rec&) { return ++calls < 2; }) == errc::ok);
    CHECK(calls == 2);
}

TEST_CASE("rmap credits: the declared figure always suffices; one less changes nothing") {
    fixture f(512);
    auto& m = *f.m;
    std::mt19937_64 rng(3);
    int short_checks = 0;
    for (int i = 0; i < 1500; ++i) {
        const std::uint64_t start = rng() % 3000, len = 1 + rng() % 6, owner = 1 + rng() % 3;
        const std::uint64_t off = start + 1000 * owner;
        const bool unmap = rng() % 3 == 0;
        std::uint32_t need;
        if (unmap) {
            auto c = m.unmap_credits(start, len, owner, off);
            if (!c) continue;
            need = *c;
        } else {
            need = m.map_credits();
        }
        const auto before = records(m);
        const auto anchor = m.anchor();
        {
            auto h = f.j.start(need - 1);
            REQUIRE(h);
            const errc e = unmap ? m.unmap(*h, start, len, owner, off) : m.map(*h, start, len, owner, off, 0);
            REQUIRE(e == errc::no_credits);
            REQUIRE(h->used == 0);
            ++short_checks;
        }
        REQUIRE(m.anchor() == anchor);
        if (i % 50 == 0) REQUIRE(records(m) == before);
        auto h = f.j.start(need);
        REQUIRE(h);
        const errc e = unmap ? m.unmap(*h, start, len, owner, off) : m.map(*h, start, len, owner, off, 0);
        REQUIRE((e == errc::ok || e == errc::exists));
        REQUIRE(h->used <= need);
    }
    CHECK(short_checks > 1000);
    CHECK(m.tree().height() >= 3);
    CHECK_MAP_CLEAN(m);
}

// ---- differential: random operations against a per-block model ----------------

namespace {

// Per block: (owner, logical offset) -> flags; offset-less mappings at
// offset 0. One owner may map a block at several offsets.
using mapping = std::pair<std::uint64_t, std::uint64_t>;
using model_t = std::vector<std::map<mapping, std::uint32_t>>;

// Does mapping block b to (owner, off, flags) collide with what b has:
// the same owner at the same offset, or either of them offset-less?
bool model_collides(const std::map<mapping, std::uint32_t>& at, std::uint64_t owner, std::uint64_t off,
                    std::uint32_t flags) {
    for (auto it = at.lower_bound({owner, 0}); it != at.end() && it->first.first == owner; ++it)
        if (rmap_offsetless(owner, flags) || rmap_offsetless(owner, it->second) || it->first.second == off) return true;
    return false;
}

// The records the map must hold: maximal runs of one owner with the same
// flags, logically contiguous (or offset-less).
std::vector<rec> canonical(const model_t& md) {
    std::vector<rec> out;
    // Open runs by what the next block must hold to continue them:
    // (owner, logical offset (0: offset-less), flags).
    using next_key = std::tuple<std::uint64_t, std::uint64_t, std::uint32_t>;
    std::map<next_key, rec> open;
    for (std::uint64_t b = 0; b < md.size(); ++b) {
        std::map<next_key, rec> next;
        for (auto& [m, flags] : md[b]) {
            const auto [o, off] = m;
            const bool less = rmap_offsetless(o, flags);
            auto it = open.find({o, off, flags});
            rec r = it != open.end() ? it->second : rec{b, 0, o, less ? 0 : off, flags};
            if (it != open.end()) open.erase(it);
            ++r.length;
            next[{o, less ? 0 : off + 1, flags}] = r;
        }
        for (auto& [k, r] : open) out.push_back(r);
        open = std::move(next);
    }
    for (auto& [k, r] : open) out.push_back(r);
    std::sort(out.begin(), out.end(), [](const rec& a, const rec& b) {
        return rmap_traits::compare(a.key(), b.key()) < 0;
    });
    return out;
}

void differential(std::uint32_t bs, std::uint64_t nblocks, int steps, int verify_every, std::uint64_t seed) {
    CAPTURE(bs);
    CAPTURE(seed);
    fixture f(bs);
    auto& m = *f.m;
    model_t md(nblocks);
    std::mt19937_64 rng(seed);
    const std::uint64_t specials[] = {rmap_owner::fs, rmap_owner::bitmaps, rmap_owner::inode_table, rmap_owner::jbtree,
                                      rmap_owner::unknown};
    std::uint64_t oks = 0, merges_seen = 0, same_owner_overlaps = 0;
    for (int step = 0; step < steps; ++step) {
        CAPTURE(step);
        const int op = static_cast<int>(rng() % 100);
        if (op < 55) {
            // map
            std::uint64_t owner;
            std::uint32_t flags = 0;
            if (rng() % 10 < 7) {
                owner = 1 + rng() % 5;
                const int fl = static_cast<int>(rng() % 20);
                flags = fl < 12 ? 0 : fl < 15 ? rmap_flags::unwritten : fl < 18 ? rmap_flags::bmbt : rmap_flags::xattr;
            } else {
                owner = specials[rng() % 5];
            }
            const std::uint64_t start = rng() % nblocks;
            const std::uint64_t len = std::min<std::uint64_t>(1 + rng() % 12, nblocks - start);
            std::uint64_t off = 0;
            if (!rmap_offsetless(owner, flags)) off = rng() % 10 < 7 ? start + 1000 * owner : rng() % 5000;
            bool invalid = false;
            if (rng() % 40 == 0) { // an invalid request now and then
                invalid = true;
                switch (rng() % 4) {
                case 0: owner = 0; break;
                case 1: flags = 8; break;
                case 2: owner = rmap_owner::fs, off = 3, flags = 0; break;
                default: owner = 1, flags = rmap_flags::bmbt, off = 2; break;
                }
            }
            bool clash = false;
            for (std::uint64_t b = start; b < start + len && !invalid; ++b)
                clash = clash || model_collides(md[b], owner, rmap_offsetless(owner, flags) ? 0 : off + (b - start), flags);
            const std::size_t before = m.size();
            const errc e = f.map(start, len, owner, off, flags);
            CAPTURE(start);
            CAPTURE(len);
            CAPTURE(owner);
            CAPTURE(off);
            CAPTURE(flags);
            if (invalid) REQUIRE(e == errc::invalid);
            else if (clash) REQUIRE(e == errc::exists);
            else {
                REQUIRE(e == errc::ok);
                ++oks;
                if (m.size() <= before) ++merges_seen;
                bool shared = false; // the owner already maps one of these blocks, elsewhere
                for (std::uint64_t b = start; b < start + len; ++b) {
                    auto it = md[b].lower_bound({owner, 0});
                    shared = shared || (it != md[b].end() && it->first.first == owner);
                }
                same_owner_overlaps += shared;
                for (std::uint64_t b = start; b < start + len; ++b)
                    md[b][{owner, rmap_offsetless(owner, flags) ? 0 : off + (b - start)}] = flags;
            }
        } else if (op < 90) {
            // unmap: mostly a stretch that starts at a mapped block
            std::uint64_t start = rng() % nblocks, owner = 1 + rng() % 5, off = rng() % 5000;
            std::uint64_t len = 1 + rng() % 10;
            if (rng() % 10 < 8) {
                for (int t = 0; t < 20 && md[start].empty(); ++t) start = rng() % nblocks;
                if (!md[start].empty()) {
                    auto it = md[start].begin();
                    std::advance(it, static_cast<long>(rng() % md[start].size()));
                    owner = it->first.first;
                    off = it->first.second;
                }
            }
            len = std::min(len, nblocks - start);
            // Every block mapped to owner at off + (b - start), or offset-less with off 0.
            bool ok = true;
            std::vector<mapping> gone;
            for (std::uint64_t b = start; b < start + len && ok; ++b) {
                auto it = md[b].find({owner, off + (b - start)});
                if (it != md[b].end() && rmap_offsetless(owner, it->second)) it = md[b].end();
                if (it == md[b].end() && off == 0) {
                    it = md[b].find({owner, 0});
                    if (it != md[b].end() && !rmap_offsetless(owner, it->second)) it = md[b].end();
                }
                ok = it != md[b].end();
                if (ok) gone.push_back(it->first);
            }
            const bool invalid = rmap_owner::is_special(owner) && off != 0;
            const errc e = f.unmap(start, len, owner, off);
            if (invalid) REQUIRE(e == errc::invalid);
            else if (!ok) REQUIRE(e == errc::not_found);
            else {
                REQUIRE(e == errc::ok);
                ++oks;
                for (std::uint64_t b = start; b < start + len; ++b) md[b].erase(gone[b - start]);
            }
        } else {
            // queries
            const std::uint64_t a = rng() % nblocks, b = std::min(nblocks - 1, a + rng() % 30);
            const auto want = canonical(md);
            std::vector<rec> got, exp;
            REQUIRE(m.overlapping(a, b, [&](const rec& r) {
                got.push_back(r);
                return true;
            }) == errc::ok);
            for (auto& r : want)
                if (r.start <= b && r.last() >= a) exp.push_back(r);
            REQUIRE(got == exp);
            got.clear();
            exp.clear();
            REQUIRE(m.owners_of(a, [&](const rec& r) {
                got.push_back(r);
                return true;
            }) == errc::ok);
            REQUIRE(got.size() == md[a].size());
            const std::uint64_t o = 1 + rng() % 5;
            got.clear();
            REQUIRE(m.ranges_of(o, [&](const rec& r) {
                got.push_back(r);
                return true;
            }) == errc::ok);
            for (auto& r : want)
                if (r.owner == o) exp.push_back(r);
            REQUIRE(got == exp);
        }
        if (step % verify_every == 0) {
            CHECK_MAP_CLEAN(m);
            const auto want = canonical(md);
            const auto got = records(m);
            INFO("want " << text(want));
            INFO("got  " << text(got));
            REQUIRE(got == want);
        }
    }
    CHECK_MAP_CLEAN(m);
    REQUIRE(records(m) == canonical(md));
    // The workload did real work (in small block spaces most maps clash).
    CHECK(oks > static_cast<std::uint64_t>(steps) / 5);
    CHECK(merges_seen > static_cast<std::uint64_t>(steps) / 200); // and merged often
    CHECK(same_owner_overlaps > static_cast<std::uint64_t>(steps) / 100); // one owner, a block at two offsets
    // Take everything back out, record by record: every block comes back.
    for (const rec& r : canonical(md)) REQUIRE(f.unmap(r.start, r.length, r.owner, r.offset) == errc::ok);
    CHECK(m.empty());
    CHECK(f.s.blocks_in_use() == 0);
}

} // namespace

TEST_CASE("rmap differential: 512-byte nodes (12 records per leaf), verify after every step") {
    differential(512, 400, 4000, 1, 1);
    differential(512, 1500, 3000, 3, 2);
}

TEST_CASE("rmap differential: 4 KiB nodes") {
    differential(4096, 5000, 6000, 200, 3);
}

// ---- the volume: the same facade over the jbd2 journal -------------------------

TEST_CASE("rmap in a volume: changes commit with the journal, reopen gives them back") {
    constexpr std::uint32_t bs = 1024;
    constexpr std::uint64_t blocks = 4096;
    std::vector<unsigned char> mem(std::size_t{bs} * blocks);
    memory_device d(mem.data(), bs, blocks);
    using V = volume<memory_device>;
    using vmap_t = rmap<V::storage, V::journal_type>;
    std::vector<unsigned char> scratch(bs);
    volume_geometry g;
    g.journal_blocks = 512;
    g.uuid[0] = 7;
    REQUIRE(V::create(d, g, scratch.data()) == errc::ok);
    hosted::journal_sizes z;
    z.block_size = bs;
    z.cache_blocks = 512;
    z.max_transaction_blocks = 128;
    z.committed_capacity = 64;
    z.staging_blocks = 16;
    z.bitmap_blocks = hosted::volume_bitmap_blocks(blocks, bs);
    std::vector<rec> committed;
    {
        hosted::owned_memory mm(z);
        V v(d, mm.volume());
        REQUIRE(v.open({}) == errc::ok);
        auto r = vmap_t::create(v.store(), v.journal(), 5);
        REQUIRE(r);
        std::mt19937_64 rng(9);
        for (int i = 0; i < 600; ++i) {
            const std::uint64_t start = rng() % 20000, len = 1 + rng() % 4, owner = 1 + rng() % 4;
            auto h = v.start(r->map_credits());
            REQUIRE(h);
            const errc e = r->map(*h, start, len, owner, start, 0);
            REQUIRE((e == errc::ok || e == errc::exists));
            REQUIRE(v.set_anchor(0, r->anchor()) == errc::ok);
            REQUIRE(v.stop(*h) == errc::ok);
            if (i % 3 == 0) {
                auto c = r->unmap_credits(start, 1, owner, start);
                if (c) {
                    auto h2 = v.start(*c);
                    REQUIRE(h2);
                    REQUIRE(r->unmap(*h2, start, 1, owner, start) == errc::ok);
                    REQUIRE(v.set_anchor(0, r->anchor()) == errc::ok);
                    REQUIRE(v.stop(*h2) == errc::ok);
                }
            }
        }
        REQUIRE(v.commit() == errc::ok);
        committed = records(*r);
        CHECK_MAP_CLEAN(*r);
        // Uncommitted changes vanish with a crash.
        auto h = v.start(r->map_credits());
        REQUIRE(h);
        REQUIRE(r->map(*h, 50000, 5, 9, 0, 0) == errc::ok);
        REQUIRE(v.set_anchor(0, r->anchor()) == errc::ok);
        REQUIRE(v.stop(*h) == errc::ok);
    }
    hosted::owned_memory mm(z);
    V v(d, mm.volume());
    REQUIRE(v.open({}) == errc::ok);
    auto a = v.anchor(0);
    REQUIRE(a);
    auto r = vmap_t::open(v.store(), v.journal(), *a);
    REQUIRE(r);
    CHECK_MAP_CLEAN(*r);
    CHECK(records(*r) == committed);
    CHECK(committed.size() > 300);
    REQUIRE(v.close() == errc::ok);
}
