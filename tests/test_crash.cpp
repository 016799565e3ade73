// Crash consistency of a volume (two trees, allocator, anchors) under the
// jbd2 journal: a random workload is recorded write by write, and every
// crash point is recovered: each prefix of the write stream, the same with
// a torn last block, and with the writes since the last flush reordered or
// dropped. After each recovery both trees verify clean, the allocator agrees
// with them, and they hold exactly the state of one committed transaction:
// never older than the last commit durable at the crash point, never newer
// than the last commit block written before it.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include <jbtree/hosted/owned_memory.hpp>
#include <jbtree/volume/volume.hpp>

#include "crash_device.hpp"

#include <cstdlib>
#include <map>
#include <random>

using namespace jt;

namespace {

constexpr std::uint32_t bs = 1024;
constexpr std::uint64_t dev_blocks = 3072;

using model = std::map<std::uint64_t, std::uint64_t>;
struct snapshot {
    model a, b;
    std::size_t commit_event = 0; // events() when the commit block had been written
};

hosted::journal_sizes sizes() {
    hosted::journal_sizes z;
    z.block_size = bs;
    z.cache_blocks = 600;
    z.max_transaction_blocks = 128;
    z.committed_capacity = 64;
    z.staging_blocks = 16;
    z.bitmap_blocks = hosted::volume_bitmap_blocks(dev_blocks, bs);
    z.revoke_capacity = 4096;
    return z;
}

template <class Dev>
using tree_t = btree<u64_map_traits, typename volume<Dev>::storage, typename volume<Dev>::journal_type>;

// Open a crashed state and check it. Returns the tid it holds (the newest
// replayed), or fails the test.
template <class Dev>
std::uint32_t check_state(Dev& dev, hosted::owned_memory& mem, const std::map<std::uint32_t, snapshot>& snaps,
                          std::uint32_t first_tid) {
    volume<Dev> v(dev, mem.volume());
    jbd2::recovery_info info;
    volume_problem why{};
    const errc e = v.open({}, &why, &info);
    INFO("open: " << describe(e) << " / " << describe(why));
    REQUIRE(e == errc::ok);
    // The newest transaction on disk (replayed, or checkpointed earlier).
    const std::uint32_t tid = info.end_tid - 1;
    const model empty;
    const model* want_a = &empty;
    const model* want_b = &empty;
    if (jbd2::tid_geq(tid, first_tid)) {
        auto it = snaps.find(tid);
        REQUIRE(it != snaps.end());
        want_a = &it->second.a;
        want_b = &it->second.b;
    }
    std::uint64_t nodes = 0;
    for (std::uint32_t slot = 0; slot < 2; ++slot) {
        const model& want = slot == 0 ? *want_a : *want_b;
        auto an = v.anchor(slot);
        if (!an) {
            REQUIRE(an.error() == errc::not_found);
            REQUIRE(want.empty());
            continue;
        }
        auto t = tree_t<Dev>::open(v.store(), v.journal(), *an);
        REQUIRE(t);
        auto rep = t->verify();
        REQUIRE(rep.problem_count == 0);
        REQUIRE(same_contents(*t, want));
        auto st = t->stats();
        REQUIRE(st);
        nodes += st->nodes();
    }
    // Every data block is a node of one of the trees, or free.
    REQUIRE(v.free_blocks() + nodes == v.end_block() - v.data_start());
    return tid;
}

} // namespace

TEST_CASE("crash at every point of a 10,000-operation workload over two trees recovers the last durable commit") {
    crash_device dev(bs, dev_blocks);
    {
        std::vector<unsigned char> scratch(bs);
        volume_geometry g;
        g.journal_blocks = 384;
        g.uuid[3] = 0x5A;
        REQUIRE(volume<crash_device>::create(dev, g, scratch.data()) == errc::ok);
    }
    hosted::owned_memory mem(sizes());
    std::map<std::uint32_t, snapshot> snaps; // by tid
    std::uint32_t first_tid = 0;
    const int operations = std::getenv("JBTREE_CRASH_OPS") ? std::atoi(std::getenv("JBTREE_CRASH_OPS")) : 10000;
    {
        volume<crash_device> v(dev, mem.volume());
        REQUIRE(v.open({}) == errc::ok);
        first_tid = v.journal().next_tid();
        dev.start_recording();
        auto a = tree_t<crash_device>::create(v.store(), v.journal(), 1);
        auto b = tree_t<crash_device>::create(v.store(), v.journal(), 2);
        REQUIRE(a);
        REQUIRE(b);
        model ma, mb;
        // Whenever the journal's next tid moves, the transaction before it
        // committed with the models as they were then.
        std::uint32_t tid = v.journal().next_tid();
        auto note_commits = [&] {
            while (tid != v.journal().next_tid()) {
                snaps[tid] = snapshot{ma, mb, dev.events()};
                ++tid;
            }
        };
        std::mt19937_64 rng(2026);
        int next_commit = 1 + static_cast<int>(rng() % 40);
        for (int i = 0; i < operations; ++i) {
            const std::uint32_t credits = a->insert_credits() + b->insert_credits();
            auto h = v.start(credits);
            note_commits(); // start() may commit a full transaction
            REQUIRE(h);
            const std::uint64_t k = rng() % 2500;
            const unsigned what = rng() % 8;
            auto apply = [&](tree_t<crash_device>& t, model& m, unsigned op) {
                errc e;
                if (op < 4) {
                    e = t.insert(*h, k, i);
                    if (e == errc::ok) m[k] = static_cast<std::uint64_t>(i);
                    else REQUIRE(e == errc::exists);
                } else if (op < 6) {
                    e = t.erase(*h, k);
                    if (e == errc::ok) m.erase(k);
                    else REQUIRE(e == errc::not_found);
                } else {
                    e = t.insert_or_assign(*h, k, i);
                    REQUIRE(e == errc::ok);
                    m[k] = static_cast<std::uint64_t>(i);
                }
            };
            if (what < 3) apply(*a, ma, static_cast<unsigned>(rng() % 8));
            else if (what < 6) apply(*b, mb, static_cast<unsigned>(rng() % 8));
            else { // both trees in one handle
                apply(*a, ma, static_cast<unsigned>(rng() % 8));
                apply(*b, mb, static_cast<unsigned>(rng() % 8));
            }
            REQUIRE(v.set_anchor(0, a->anchor()) == errc::ok);
            REQUIRE(v.set_anchor(1, b->anchor()) == errc::ok);
            REQUIRE(v.stop(*h) == errc::ok);
            if (--next_commit == 0) {
                REQUIRE(v.commit() == errc::ok);
                note_commits();
                next_commit = 1 + static_cast<int>(rng() % 40);
            }
        }
        REQUIRE(v.commit() == errc::ok);
        note_commits();
        CHECK_CLEAN(*a);
        CHECK_CLEAN(*b);
        MESSAGE("workload: " << operations << " operations, " << snaps.size() << " commits, " << dev.events()
                             << " block writes, " << dev.flush_marks().size() << " flushes, "
                             << v.journal().stats().checkpoints << " checkpoints, "
                             << v.journal().stats().home_writes << " blocks written home");
        // The volume goes away without close(): the last crash point is "now".
    }
    REQUIRE(snaps.size() > static_cast<std::size_t>(operations / 40));

    // Newest commit whose commit block is among the first k events, and the
    // newest one durable (flushed) before crash point k.
    auto newest_written = [&](std::size_t k) {
        std::uint32_t t = first_tid - 1;
        for (const auto& [tid, s] : snaps)
            if (s.commit_event <= k) t = tid;
        return t;
    };

    std::uint64_t states = 0;
    auto r = dev.replay();
    std::size_t k = 0;
    for (;;) {
        INFO("crash point " << k << " of " << dev.events());
        const std::uint32_t written = newest_written(k);
        const std::uint32_t durable = newest_written(dev.durable(k));
        {
            auto st = r.crash(crash_mode::prefix, 0);
            const std::uint32_t got = check_state(st, mem, snaps, first_tid);
            REQUIRE(got == written); // nothing lost, nothing from the future
            ++states;
        }
        if (k > 0) {
            auto st = r.crash(crash_mode::torn_last, k);
            // A torn write whose old and new bytes agree past the cut wrote
            // the whole block after all.
            const std::size_t cut = st.torn_cut();
            const bool torn = std::memcmp(dev.event_data(k - 1) + cut, dev.data_before(k - 1) + cut, bs - cut) != 0;
            const std::uint32_t got = check_state(st, mem, snaps, first_tid);
            // A torn commit block does not count (its checksum fails);
            // anything written before it does.
            REQUIRE(got == newest_written(torn ? k - 1 : k));
            ++states;
        }
        {
            auto st = r.crash(crash_mode::reorder_unflushed, k * 7 + 1);
            const std::uint32_t got = check_state(st, mem, snaps, first_tid);
            REQUIRE(jbd2::tid_geq(got + 1, durable + 1)); // got >= durable (tids may start anywhere)
            REQUIRE(jbd2::tid_geq(written, got));
            ++states;
        }
        if (!r.advance()) break;
        ++k;
    }
    MESSAGE("crash states recovered and checked: " << states);
    CHECK(states >= 3 * dev.events());
}
