// The refcount map (maps/refcount_map.hpp) against a per-block model:
// record bytes, adjust with splits, merges and reports, restartable adjust
// across handles, exact credit figures, and the rmap sweep (rebuild and
// cross-check) against brute-force owner counts.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include <jbtree/maps/refcount_map.hpp>
#include <jbtree/maps/rmap.hpp>

#include <optional>

using namespace jt;

namespace {

using S = memory_storage<>;
using J = null_journal<S>;
using map_t = refcount_map<S, J>;
using rec = refcount_record;

std::string text(const std::vector<rec>& v) {
    std::string s;
    for (auto& r : v) s += "{" + std::to_string(r.start) + "+" + std::to_string(r.length) + " x" + std::to_string(r.refcount) + "} ";
    return s;
}

std::vector<rec> records(map_t& m) {
    std::vector<rec> out;
    REQUIRE(m.for_each([&](const rec& r) {
        out.push_back(r);
        return true;
    }) == errc::ok);
    return out;
}

// The canonical records of a per-block count vector (1 = not stored):
// maximal runs of equal counts >= 2.
std::vector<rec> canonical(const std::vector<std::uint32_t>& c, std::uint64_t base = 0) {
    std::vector<rec> out;
    for (std::size_t i = 0; i < c.size();) {
        if (c[i] < 2) {
            ++i;
            continue;
        }
        std::size_t j = i;
        while (j < c.size() && c[j] == c[i]) ++j;
        out.push_back(rec{base + i, static_cast<std::uint32_t>(j - i), c[i]});
        i = j;
    }
    return out;
}

struct report_item {
    std::uint64_t start, len;
    std::uint32_t after;
    friend bool operator==(const report_item&, const report_item&) = default;
};

#define CHECK_REFCOUNT_CLEAN(m, allow_mergeable)                                                                       \
    do {                                                                                                               \
        const auto rep_ = (m).verify();                                                                                \
        INFO(report_text(rep_.tree) << "; map problems " << rep_.problem_count);                                      \
        REQUIRE(rep_.clean());                                                                                         \
        REQUIRE(rep_.mergeable <= (allow_mergeable));                                                                  \
        REQUIRE(rep_.records == (m).size());                                                                           \
    } while (0)

struct fixture {
    explicit fixture(std::uint32_t bs = 512) : s({bs, true, 9}), j(s) {
        auto r = map_t::create(s, j, 4);
        REQUIRE(r);
        m.emplace(std::move(*r));
    }
    // adjust in one handle holding exactly adjust_credits(); must finish.
    errc adjust(std::uint64_t start, std::uint64_t len, int delta, std::vector<report_item>* rep = nullptr) {
        auto c = m->adjust_credits(start, len, delta);
        if (!c) return c.error();
        REQUIRE(*c <= 0xFFFF'FFFFull);
        // 0 when nothing changes (-1 over gaps only); a handle needs >= 1.
        auto h = j.start(static_cast<std::uint32_t>(*c ? *c : 1));
        REQUIRE(h);
        auto r = m->adjust(*h, start, len, delta, [&](std::uint64_t s0, std::uint64_t l0, std::uint32_t a) {
            if (rep) rep->push_back({s0, l0, a});
        });
        REQUIRE(h->used <= *c);
        REQUIRE(j.stop(*h) == errc::ok);
        if (!r) return r.error();
        REQUIRE(r->done);
        REQUIRE(r->next == start + len);
        return errc::ok;
    }
    S s;
    J j;
    std::optional<map_t> m;
};

// Apply delta to the model over [start, start+len); the expected reports.
std::vector<report_item> model_adjust(std::vector<std::uint32_t>& c, std::uint64_t start, std::uint64_t len, int delta) {
    std::vector<report_item> out;
    for (std::uint64_t b = start; b < start + len; ++b) {
        std::uint32_t after = 0;
        if (delta > 0) {
            c[b] += 1;
            continue;
        }
        if (c[b] >= 2) {
            c[b] -= 1;
            if (c[b] != 1) continue;
            after = 1;
        } else {
            after = 0; // a gap: the last data owner goes
        }
        if (!out.empty() && out.back().after == after && out.back().start + out.back().len == b) ++out.back().len;
        else out.push_back({b, 1, after});
    }
    return out;
}

// Merge touching reports with the same `after` (adjust may report one
// stretch in several pieces, one per step).
std::vector<report_item> coalesce(const std::vector<report_item>& v) {
    std::vector<report_item> out;
    for (auto& r : v) {
        if (!out.empty() && out.back().after == r.after && out.back().start + out.back().len == r.start)
            out.back().len += r.len;
        else out.push_back(r);
    }
    return out;
}

} // namespace

TEST_CASE("refcount record format: 8-byte key, 8-byte value, little-endian, magic JBC1") {
    unsigned char k[8], v[8];
    refcount_traits::encode_key(0x0102030405060708ull, k);
    refcount_traits::encode_value(refcount_value{0x11223344u, 0x55667788u}, v);
    const unsigned char want_k[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    const unsigned char want_v[8] = {0x44, 0x33, 0x22, 0x11, 0x88, 0x77, 0x66, 0x55};
    CHECK(std::memcmp(k, want_k, 8) == 0);
    CHECK(std::memcmp(v, want_v, 8) == 0);
    CHECK(refcount_traits::decode_key(k) == 0x0102030405060708ull);
    CHECK(refcount_traits::decode_value(v) == refcount_value{0x11223344u, 0x55667788u});
    unsigned char m[4];
    store_le<std::uint32_t>(m, refcount_traits::magic);
    CHECK(std::memcmp(m, "1CBJ", 4) == 0); // bytes 31 43 42 4A
}

TEST_CASE("refcount adjust: gaps become 2, splits at both ends, merges, and what dropped is reported") {
    fixture f;
    auto& m = *f.m;
    std::vector<report_item> rep;
    REQUIRE(f.adjust(100, 10, +1) == errc::ok); // [100,110) x2
    CHECK(records(m) == std::vector<rec>{{100, 10, 2}});
    REQUIRE(f.adjust(105, 10, +1) == errc::ok); // x3 over [105,110), x2 [100,105) and [110,115)
    CHECK(records(m) == std::vector<rec>{{100, 5, 2}, {105, 5, 3}, {110, 5, 2}});
    CHECK(m.refcount_of(99).value() == 1);
    CHECK(m.refcount_of(107).value() == 3);
    REQUIRE(f.adjust(105, 5, -1, &rep) == errc::ok); // back to one record x2: merged
    CHECK(rep.empty());
    CHECK(records(m) == std::vector<rec>{{100, 15, 2}});
    CHECK_REFCOUNT_CLEAN(m, 0u);
    // -1 over a record and the gaps around it: 2 -> 1 reported as 1, gaps as 0.
    REQUIRE(f.adjust(95, 25, -1, &rep) == errc::ok);
    CHECK(coalesce(rep) == std::vector<report_item>{{95, 5, 0}, {100, 15, 1}, {115, 5, 0}});
    CHECK(m.empty());
    // Invalid arguments change nothing.
    CHECK(f.adjust(1, 0, +1) == errc::invalid);
    CHECK(f.adjust(1, 1, 2) == errc::invalid);
    CHECK(f.adjust(~0ull, 2, +1) == errc::invalid);
    CHECK(m.empty());
}

TEST_CASE("refcount differential: random adjusts against a per-block model, verify after every step") {
    for (std::uint32_t bs : {512u, 4096u}) {
        CAPTURE(bs);
        fixture f(bs);
        auto& m = *f.m;
        constexpr std::uint64_t space = 600;
        std::vector<std::uint32_t> model(space, 1);
        std::mt19937_64 rng(bs);
        std::size_t reports = 0;
        for (int step = 0; step < 3000; ++step) {
            CAPTURE(step);
            const std::uint64_t len = 1 + rng() % (rng() % 4 == 0 ? 200 : 20);
            const std::uint64_t start = rng() % (space - len);
            // Bias toward +1 so that counts build up, then drain.
            const int delta = (step < 2000 ? rng() % 3 != 0 : rng() % 3 == 0) ? +1 : -1;
            std::vector<report_item> got;
            REQUIRE(f.adjust(start, len, delta, &got) == errc::ok);
            const auto want = model_adjust(model, start, len, delta);
            REQUIRE(coalesce(got) == want);
            reports += want.size();
            const auto now = records(m);
            INFO(text(now));
            REQUIRE(now == canonical(model));
            if (step % 10 == 0) CHECK_REFCOUNT_CLEAN(m, 0u);
            const std::uint64_t probe = rng() % space;
            REQUIRE(m.refcount_of(probe).value() == std::max<std::uint32_t>(model[probe], 1u));
        }
        CHECK_REFCOUNT_CLEAN(m, 0u);
        MESSAGE("block " << bs << ": " << m.size() << " records at height " << m.tree().height() << ", " << reports
                         << " reported stretches");
    }
}

TEST_CASE("refcount adjust: with too few credits it stops cleanly and continues in the next handle") {
    fixture f(512);
    auto& m = *f.m;
    constexpr std::uint64_t space = 2000;
    std::vector<std::uint32_t> model(space, 1);
    std::mt19937_64 rng(5);
    // A fragmented map: many small records of different counts.
    for (int i = 0; i < 400; ++i) {
        const std::uint64_t len = 1 + rng() % 6, start = rng() % (space - len);
        REQUIRE(f.adjust(start, len, +1) == errc::ok);
        model_adjust(model, start, len, +1);
    }
    REQUIRE(records(m) == canonical(model));
    std::size_t handles = 0, stops = 0;
    for (int round = 0; round < 40; ++round) {
        const std::uint64_t len = 200 + rng() % 1500, start = rng() % (space - len);
        const int delta = round % 2 ? -1 : +1;
        auto want_rep = model_adjust(model, start, len, delta);
        std::vector<report_item> got;
        std::uint64_t p = start, end = start + len;
        while (p < end) {
            // Between one step's worth and a few steps' worth of credits.
            const std::uint32_t credits = m.adjust_step_credits() + static_cast<std::uint32_t>(rng() % 40);
            auto h = f.j.start(credits);
            REQUIRE(h);
            auto r = m.adjust(*h, p, end - p, delta, [&](std::uint64_t s0, std::uint64_t l0, std::uint32_t a) {
                got.push_back({s0, l0, a});
            });
            REQUIRE(r);
            REQUIRE(h->used <= credits);
            REQUIRE(f.j.stop(*h) == errc::ok);
            ++handles;
            REQUIRE(r->next > p); // progress every time
            REQUIRE(r->next <= end);
            if (!r->done) {
                ++stops;
                // Between handles the map is valid; only the merge at the
                // stop point may be pending.
                CHECK_REFCOUNT_CLEAN(m, 1u);
            }
            p = r->next;
        }
        REQUIRE(coalesce(got) == want_rep);
        REQUIRE(records(m) == canonical(model));
        CHECK_REFCOUNT_CLEAN(m, 0u);
    }
    CHECK(stops > 40);
    MESSAGE(handles << " handles, " << stops << " stops, " << m.size() << " records");
}

TEST_CASE("refcount adjust_credits is exact: that many finishes, one less stops; too few for a step changes nothing") {
    fixture f(512);
    auto& m = *f.m;
    std::mt19937_64 rng(17);
    std::vector<std::uint32_t> model(1500, 1);
    for (int i = 0; i < 300; ++i) {
        const std::uint64_t len = 1 + rng() % 5, start = rng() % 1400;
        REQUIRE(f.adjust(start, len, +1) == errc::ok);
        model_adjust(model, start, len, +1);
    }
    int stopped = 0;
    for (int t = 0; t < 60; ++t) {
        const std::uint64_t len = 1 + rng() % 300, start = rng() % (1500 - len);
        const int delta = rng() % 2 ? +1 : -1;
        auto c = m.adjust_credits(start, len, delta);
        REQUIRE(c);
        const auto before = records(m);
        if (*c > 1) { // one less: the call does not finish (or, if the first step does not fit, does nothing)
            auto h = f.j.start(static_cast<std::uint32_t>(*c - 1));
            REQUIRE(h);
            auto r = m.adjust(*h, start, len, delta);
            REQUIRE(h->used <= *c - 1);
            REQUIRE(f.j.stop(*h) == errc::ok);
            if (r) {
                REQUIRE_FALSE(r->done);
                ++stopped;
                // Finish the rest in a second handle.
                auto c2 = m.adjust_credits(r->next, start + len - r->next, delta);
                REQUIRE(c2);
                auto h2 = f.j.start(static_cast<std::uint32_t>(*c2 ? *c2 : 1));
                auto r2 = m.adjust(*h2, r->next, start + len - r->next, delta);
                REQUIRE(r2);
                REQUIRE(r2->done);
                REQUIRE(f.j.stop(*h2) == errc::ok);
            } else {
                REQUIRE(r.error() == errc::no_credits);
                REQUIRE(records(m) == before);
                REQUIRE(f.adjust(start, len, delta) == errc::ok);
            }
        } else {
            REQUIRE(f.adjust(start, len, delta) == errc::ok);
        }
        model_adjust(model, start, len, delta);
        REQUIRE(records(m) == canonical(model));
    }
    CHECK(stopped > 0);
    // Fewer credits than one step: no_credits, nothing changed.
    const auto before = records(m);
    REQUIRE(m.adjust_step_credits() > 1);
    auto h = f.j.start(1);
    REQUIRE(h);
    // A range that needs a split at both ends of a record.
    auto r = m.adjust(*h, 0, 1500, +1);
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::no_credits);
    CHECK(h->used == 0);
    REQUIRE(f.j.stop(*h) == errc::ok);
    CHECK(records(m) == before);
}

// ---- the sweep: rmap -> refcount ---------------------------------------------------

namespace {

using rmap_t = rmap<S, J>;

struct vec_source { // a hand-made extent list
    std::vector<owner_extent> v;
    std::size_t i = 0;
    errc rewind() noexcept {
        i = 0;
        return errc::ok;
    }
    result<bool> next(owner_extent& e) noexcept {
        if (i == v.size()) return false;
        e = v[i++];
        return true;
    }
};

} // namespace

TEST_CASE("refcount sweep: hand-made extents, edge cases and bad input") {
    std::uint64_t ends[8];
    const sweep_scratch sc{ends, 8};
    auto sweep = [&](std::vector<owner_extent> v) {
        vec_source src{std::move(v)};
        refcount_sweep<vec_source> sw(src, sc);
        REQUIRE(sw.rewind() == errc::ok);
        std::vector<rec> out;
        for (rec r{};;) {
            auto m = sw.next(r);
            if (!m) return result<std::vector<rec>>(m.error());
            if (!*m) return result<std::vector<rec>>(out);
            out.push_back(r);
        }
    };
    CHECK(sweep({}).value().empty());
    CHECK(sweep({{10, 5, true}}).value().empty());
    CHECK(sweep({{10, 5, true}, {10, 5, true}}).value() == std::vector<rec>{{10, 5, 2}});
    // [10,14], [12,16], [14]: 12-13 have 2 owners, 14 has 3, 15-16 one.
    CHECK(sweep({{10, 5, true}, {12, 5, true}, {14, 1, true}}).value() == std::vector<rec>{{12, 2, 2}, {14, 1, 3}});
    CHECK(sweep({{10, 5, true}, {10, 5, false}}).value().empty()); // metadata does not count
    CHECK(sweep({{10, 5, true}, {10, 5, true}, {15, 5, true}, {15, 5, true}}).value() ==
          std::vector<rec>{{10, 10, 2}}); // touching runs of one count merge
    // The last blocks of the block space.
    CHECK(sweep({{~0ull - 3, 4, true}, {~0ull - 1, 2, true}}).value() == std::vector<rec>{{~0ull - 1, 2, 2}});
    CHECK(sweep({{20, 5, true}, {10, 5, true}}).error() == errc::invalid);   // unsorted
    CHECK(sweep({{20, 0, true}}).error() == errc::invalid);                  // empty extent
    CHECK(sweep({{~0ull, 2, true}}).error() == errc::invalid);               // past the end
    std::vector<owner_extent> many(9, owner_extent{5, 1, true});
    CHECK(sweep(many).error() == errc::no_memory); // deeper than the scratch
}

TEST_CASE("refcount rebuild from an rmap equals brute force; cross_check finds every difference") {
    constexpr std::uint64_t space = 3000;
    for (std::uint64_t seed : {1u, 2u, 3u}) {
        CAPTURE(seed);
        std::mt19937_64 rng(seed);
        S s({1024, true, 3});
        J j(s);
        auto rm = rmap_t::create(s, j, 1);
        REQUIRE(rm);
        std::vector<std::uint32_t> owners(space, 0);
        // Data extents of 40 inodes, overlapping (reflinks), plus metadata
        // records that must not count.
        for (int i = 0; i < 900; ++i) {
            const std::uint64_t len = 1 + rng() % 30, start = rng() % (space - len);
            const std::uint64_t ino = 12 + rng() % 40;
            const bool meta = rng() % 8 == 0;
            auto h = j.start(rm->map_credits());
            REQUIRE(h);
            const errc e = meta ? rm->map(*h, start, len, ino, 0, rmap_flags::bmbt)
                                : rm->map(*h, start, len, ino, rng() % 100000, 0);
            REQUIRE(j.stop(*h) == errc::ok);
            if (e == errc::exists) continue; // this inode already has some of these blocks
            REQUIRE(e == errc::ok);
            if (!meta)
                for (std::uint64_t b = start; b < start + len; ++b) ++owners[b];
        }
        std::vector<std::uint64_t> ends(64);
        const sweep_scratch sc{ends.data(), ends.size()};
        auto src = rm->extents();
        auto n = map_t::rebuild_count(src, sc);
        REQUIRE(n);
        auto rc = map_t::create(s, j, 2);
        REQUIRE(rc);
        const std::uint64_t need = rc->rebuild_credits(*n);
        auto h = j.start(static_cast<std::uint32_t>(need));
        REQUIRE(h);
        REQUIRE(rc->rebuild_from_rmap(*h, src, sc, *n) == errc::ok);
        REQUIRE(h->used <= need);
        REQUIRE(j.stop(*h) == errc::ok);
        CHECK_REFCOUNT_CLEAN(*rc, 0u);
        REQUIRE(records(*rc) == canonical(owners));
        // Clean: no mismatches.
        auto none = rc->cross_check(src, sc, [](std::uint64_t, std::uint64_t, std::uint32_t, std::uint32_t) {});
        REQUIRE(none);
        CHECK(*none == 0);
        // Disturb the map in three places; cross_check names each stretch.
        std::vector<std::uint64_t> at;
        for (int k = 0; k < 3; ++k) at.push_back(200 + 1000 * static_cast<std::uint64_t>(k) + rng() % 500);
        for (std::uint64_t b : at) {
            auto h2 = j.start(rc->adjust_step_credits() * 3);
            REQUIRE(rc->adjust(*h2, b, 1, +1));
            REQUIRE(j.stop(*h2) == errc::ok);
        }
        std::vector<std::tuple<std::uint64_t, std::uint64_t, std::uint32_t, std::uint32_t>> found;
        auto bad = rc->cross_check(src, sc, [&](std::uint64_t a, std::uint64_t l, std::uint32_t e, std::uint32_t g) {
            found.emplace_back(a, l, e, g);
        });
        REQUIRE(bad);
        REQUIRE(*bad == 3);
        for (std::size_t k = 0; k < 3; ++k) {
            const std::uint32_t want = std::max<std::uint32_t>(owners[at[k]], 1u);
            CHECK(found[k] == std::make_tuple(at[k], std::uint64_t{1}, want, want + 1));
        }
        // A rebuild into a map that is not empty is refused.
        auto h3 = j.start(static_cast<std::uint32_t>(need));
        CHECK(rc->rebuild_from_rmap(*h3, src, sc, *n) == errc::not_empty);
        REQUIRE(j.stop(*h3) == errc::ok);
        MESSAGE("seed " << seed << ": " << rm->size() << " rmap records -> " << *n << " refcount records");
    }
}
