// The jbd2 journal writer: what it writes is what recover() replays, for
// every feature combination it writes; escaping, revoke, wrap-around,
// checkpoint coalescing, credits and errors. And the volume on top of it.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include <jbtree/hosted/owned_memory.hpp>
#include <jbtree/journal/jbd2_journal.hpp>
#include <jbtree/journal/jbd2_mkjournal.hpp>
#include <jbtree/volume/ownership.hpp>
#include <jbtree/volume/volume.hpp>

#include "crash_device.hpp"

#include <map>
#include <random>

using namespace jt;
namespace jbd2 = jbtree::jbd2;

namespace {

using J = jbd2::journal<crash_device>;

constexpr std::uint32_t bs = 1024;
constexpr std::uint64_t dev_blocks = 4096;
// The log in two pieces, out of order on the device, to exercise the
// extent mapping the writer and recovery share.
const jbd2::log_extent log_pieces[2] = {{3000, 200}, {1000, 56}};

hosted::journal_sizes small_sizes() {
    hosted::journal_sizes z;
    z.block_size = bs;
    z.cache_blocks = 256;
    z.max_transaction_blocks = 64;
    z.committed_capacity = 64;
    z.staging_blocks = 8; // small: runs get split often
    return z;
}

void fill(unsigned char* p, std::uint64_t blk, std::uint32_t version) {
    for (std::uint32_t i = 0; i < bs; i += 4) store_le<std::uint32_t>(p + i, static_cast<std::uint32_t>(blk * 1000003u + version + i));
}
bool holds(const unsigned char* p, std::uint64_t blk, std::uint32_t version) {
    std::vector<unsigned char> want(bs);
    fill(want.data(), blk, version);
    return std::memcmp(p, want.data(), bs) == 0;
}

// Change blocks `blks` to `version` in one transaction and commit it.
void write_tx(J& j, const std::vector<std::uint64_t>& blks, std::uint32_t version, bool commit = true) {
    auto h = j.start(static_cast<std::uint32_t>(blks.size()));
    REQUIRE(h);
    for (const std::uint64_t b : blks) {
        auto buf = j.read(b);
        REQUIRE(buf);
        REQUIRE(j.get_write_access(*h, *buf) == errc::ok);
        fill(buf->data(), b, version);
        REQUIRE(j.dirty_metadata(*h, *buf) == errc::ok);
    }
    REQUIRE(j.stop(*h) == errc::ok);
    if (commit) REQUIRE(j.commit() == errc::ok);
}

errc recover_image(crash_device& d, jbd2::recovery_info& info) {
    jbd2::log_area<crash_device> log(d, log_pieces, 2);
    hosted::owned_memory m(small_sizes());
    return jbd2::recover(log, m.recovery(bs), info);
}

struct feature_case {
    const char* name;
    jbd2::journal_features f;
};

} // namespace

TEST_CASE("what the writer commits, recovery replays; what it does not commit, it does not") {
    const feature_case cases[] = {
        {"64-bit, csum v3", {true, true, false, 1}},
        {"32-bit, csum v3", {false, true, false, 1}},
        {"64-bit, csum v2", {true, false, true, 1}},
        {"32-bit, csum v2", {false, false, true, 1}},
        {"64-bit, no checksums", {true, false, false, 1}},
        {"32-bit, no checksums", {false, false, false, 7}},
    };
    for (const feature_case& c : cases) {
        CAPTURE(c.name);
        crash_device d(bs, dev_blocks);
        hosted::owned_memory m(small_sizes());
        {
            jbd2::log_area<crash_device> log(d, log_pieces, 2);
            const unsigned char uuid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
            std::vector<unsigned char> scratch(bs);
            REQUIRE(jbd2::make_journal(log, c.f, uuid, scratch.data()) == errc::ok);
        }
        J j(d, log_pieces, 2, m.journal());
        REQUIRE(j.open({}) == errc::ok);
        write_tx(j, {10, 11, 12}, 1);
        write_tx(j, {11, 13}, 2);
        write_tx(j, {10, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30}, 3);
        write_tx(j, {40}, 4, false); // stopped, never committed
        // Home locations are untouched: nothing was checkpointed yet.
        CHECK(d.block(10)[0] == 0);
        // Crash here: the journal object just goes away.
        jbd2::recovery_info info;
        REQUIRE(recover_image(d, info) == errc::ok);
        CHECK(info.transactions == 3);
        CHECK(info.start_tid == c.f.first_tid);
        CHECK(holds(d.block(10), 10, 3));
        CHECK(holds(d.block(11), 11, 2));
        CHECK(holds(d.block(12), 12, 1));
        CHECK(holds(d.block(13), 13, 2));
        for (std::uint64_t b = 20; b <= 30; ++b) CHECK(holds(d.block(b), b, 3));
        CHECK(d.block(40)[0] == 0);
        CHECK(info.new_sequence == c.f.first_tid + 4); // one past the log's end
        // The log is clean now and can be written again.
        hosted::owned_memory m2(small_sizes());
        J j2(d, log_pieces, 2, m2.journal());
        REQUIRE(j2.open({}) == errc::ok);
        CHECK(j2.next_tid() == c.f.first_tid + 4);
    }
}

TEST_CASE("open refuses a log that still needs recovery, and bad memory") {
    crash_device d(bs, dev_blocks);
    hosted::owned_memory m(small_sizes());
    jbd2::log_area<crash_device> log(d, log_pieces, 2);
    const unsigned char uuid[16] = {9};
    std::vector<unsigned char> scratch(bs);
    {
        J j(d, log_pieces, 2, m.journal());
        jbd2::sb_problem why;
        CHECK(j.open({}, &why) == errc::corrupted); // no journal yet
        CHECK(why == jbd2::sb_problem::bad_magic);
    }
    REQUIRE(jbd2::make_journal(log, {}, uuid, scratch.data()) == errc::ok);
    {
        J j(d, log_pieces, 2, m.journal());
        REQUIRE(j.open({}) == errc::ok);
        write_tx(j, {5}, 1);
    }
    {
        J j(d, log_pieces, 2, m.journal());
        CHECK(j.open({}) == errc::busy);
    }
    {
        jbd2::journal_memory bad = m.journal();
        bad.cache_blocks = bad.max_transaction_blocks; // no room beyond one transaction
        J j(d, log_pieces, 2, bad);
        CHECK(j.open({}) == errc::invalid);
    }
}

TEST_CASE("escaped blocks, credits, forget and revoke") {
    crash_device d(bs, dev_blocks);
    hosted::owned_memory m(small_sizes());
    jbd2::log_area<crash_device> log(d, log_pieces, 2);
    const unsigned char uuid[16] = {7, 7};
    std::vector<unsigned char> scratch(bs);
    REQUIRE(jbd2::make_journal(log, {}, uuid, scratch.data()) == errc::ok);
    J j(d, log_pieces, 2, m.journal());
    REQUIRE(j.open({}) == errc::ok);

    // A block that begins with the jbd2 magic is logged escaped and comes
    // back whole.
    {
        auto h = j.start(2);
        REQUIRE(h);
        auto b = j.read(50);
        REQUIRE(b);
        REQUIRE(j.get_write_access(*h, *b) == errc::ok);
        fill(b->data(), 50, 1);
        store_be<std::uint32_t>(b->data(), jbd2::magic);
        REQUIRE(j.dirty_metadata(*h, *b) == errc::ok);
        // Credits: one per block per transaction; the same block again is free.
        CHECK(j.credits_left(*h) == 1);
        REQUIRE(j.get_write_access(*h, *b) == errc::ok);
        CHECK(j.credits_left(*h) == 1);
        auto b2 = j.read(51);
        auto b3 = j.read(52);
        REQUIRE(b2);
        REQUIRE(b3);
        REQUIRE(j.get_write_access(*h, *b2) == errc::ok);
        CHECK(j.get_write_access(*h, *b3) == errc::no_credits);
        fill(b2->data(), 51, 1);
        REQUIRE(j.dirty_metadata(*h, *b2) == errc::ok);
        CHECK(j.dirty_metadata(*h, *b3) == errc::invalid); // no access taken
        REQUIRE(j.stop(*h) == errc::ok);
        CHECK(j.commit() == errc::ok);
        CHECK(j.stats().escaped == 1);
    }
    // Block 60 logged in one transaction, freed in the next, then reused
    // outside the journal (as ext4 reuses a freed metadata block for
    // data): replay must not write the old logged copy over it.
    write_tx(j, {60, 61}, 1);
    {
        auto h = j.start(1);
        REQUIRE(h);
        REQUIRE(j.forget(*h, 60) == errc::ok);
        auto b = j.read(61);
        REQUIRE(b);
        REQUIRE(j.get_write_access(*h, *b) == errc::ok);
        fill(b->data(), 61, 2);
        REQUIRE(j.dirty_metadata(*h, *b) == errc::ok);
        REQUIRE(j.stop(*h) == errc::ok);
        REQUIRE(j.commit() == errc::ok);
    }
    std::vector<unsigned char> data(bs, 0xAB);
    REQUIRE(d.write_blocks(60, 1, data.data()) == errc::ok);
    // Freed and re-journaled in one transaction: the revoke is cancelled.
    {
        auto h = j.start(1);
        REQUIRE(h);
        REQUIRE(j.forget(*h, 70) == errc::ok);
        auto b = j.read_new(70);
        REQUIRE(b);
        REQUIRE(j.get_create_access(*h, *b) == errc::ok);
        fill(b->data(), 70, 5);
        REQUIRE(j.dirty_metadata(*h, *b) == errc::ok);
        REQUIRE(j.stop(*h) == errc::ok);
        REQUIRE(j.commit() == errc::ok);
    }
    CHECK(j.stats().revoke_records == 1); // 70's revoke was cancelled
    jbd2::recovery_info info;
    REQUIRE(recover_image(d, info) == errc::ok);
    CHECK(info.transactions == 4);
    std::vector<unsigned char> want(bs);
    fill(want.data(), 50, 1);
    store_be<std::uint32_t>(want.data(), jbd2::magic);
    CHECK(std::memcmp(d.block(50), want.data(), bs) == 0);
    CHECK(holds(d.block(51), 51, 1));
    CHECK(std::memcmp(d.block(60), data.data(), bs) == 0); // revoked: not overwritten
    CHECK(info.revoke_hits >= 1);
    CHECK(holds(d.block(61), 61, 2));
    CHECK(holds(d.block(70), 70, 5));
}

TEST_CASE("checkpoint writes each block home once, however many transactions changed it") {
    crash_device d(bs, dev_blocks);
    hosted::owned_memory m(small_sizes());
    jbd2::log_area<crash_device> log(d, log_pieces, 2);
    const unsigned char uuid[16] = {3};
    std::vector<unsigned char> scratch(bs);
    REQUIRE(jbd2::make_journal(log, {}, uuid, scratch.data()) == errc::ok);
    J j(d, log_pieces, 2, m.journal());
    REQUIRE(j.open({}) == errc::ok);
    d.start_recording();
    // 8 transactions of ~20 log blocks fit the 256-block log without a
    // checkpoint; each changes the same three blocks.
    for (std::uint32_t v = 1; v <= 8; ++v) write_tx(j, {100, 101, 102, 103 + v}, v);
    REQUIRE(j.checkpoint() == errc::ok);
    std::map<std::uint64_t, int> home_writes;
    for (std::size_t i = 0; i < d.events(); ++i)
        if (d.event_block(i) >= 100 && d.event_block(i) < 200) ++home_writes[d.event_block(i)];
    CHECK(home_writes[100] == 1);
    CHECK(home_writes[101] == 1);
    CHECK(home_writes[102] == 1);
    CHECK(home_writes[104] == 1);
    CHECK(holds(d.block(100), 100, 8));
    CHECK(holds(d.block(104), 104, 1));
    CHECK(j.stats().home_writes == 11);
    CHECK(j.log_used() == 0);
    // Nothing left to replay after a checkpoint and a crash.
    jbd2::recovery_info info;
    REQUIRE(recover_image(d, info) == errc::ok);
    CHECK(info.transactions == 0);
    CHECK(holds(d.block(100), 100, 8));
}

TEST_CASE("the log wraps around many times; recovery after a crash at the end is exact") {
    for (const std::uint32_t staging : {3u, 8u, 64u}) {
        CAPTURE(staging);
        crash_device d(bs, dev_blocks);
        hosted::journal_sizes z = small_sizes();
        z.staging_blocks = staging;
        hosted::owned_memory m(z);
        jbd2::log_area<crash_device> log(d, log_pieces, 2);
        const unsigned char uuid[16] = {4};
        std::vector<unsigned char> scratch(bs);
        REQUIRE(jbd2::make_journal(log, {}, uuid, scratch.data()) == errc::ok);
        J j(d, log_pieces, 2, m.journal());
        REQUIRE(j.open({}) == errc::ok);
        std::mt19937 rng(staging);
        std::map<std::uint64_t, std::uint32_t> model;
        for (std::uint32_t v = 1; v <= 400; ++v) {
            std::vector<std::uint64_t> blks;
            const unsigned n = 1 + rng() % 30; // max_transaction_blocks() is 32 here
            for (unsigned i = 0; i < n; ++i) {
                const std::uint64_t b = 100 + rng() % 300;
                if (std::find(blks.begin(), blks.end(), b) == blks.end()) blks.push_back(b);
            }
            write_tx(j, blks, v);
            for (const auto b : blks) model[b] = v;
        }
        CHECK(j.stats().checkpoints > 10);
        CHECK(j.stats().log_blocks > 5 * 256); // wrapped several times
        jbd2::recovery_info info;
        REQUIRE(recover_image(d, info) == errc::ok);
        CHECK(info.transactions > 0);
        for (const auto& entry : model) { // not [b, v]: CAPTURE's lambda, and clang 14 cannot capture bindings
            const auto& b = entry.first;
            const auto& v = entry.second;
            CAPTURE(b);
            CHECK(holds(d.block(b), b, v));
        }
    }
}

TEST_CASE("an I/O error while committing aborts the journal; the log keeps what was committed") {
    crash_device d(bs, dev_blocks);
    hosted::owned_memory m(small_sizes());
    jbd2::log_area<crash_device> log(d, log_pieces, 2);
    const unsigned char uuid[16] = {5};
    std::vector<unsigned char> scratch(bs);
    REQUIRE(jbd2::make_journal(log, {}, uuid, scratch.data()) == errc::ok);
    J j(d, log_pieces, 2, m.journal());
    REQUIRE(j.open({}) == errc::ok);
    write_tx(j, {10}, 1);
    d.fail_writes_after(2);
    write_tx(j, {10, 11, 12, 13}, 2, false);
    CHECK(j.commit() == errc::io);
    CHECK(j.aborted());
    CHECK(j.start(1).error() == errc::io);
    d.clear_faults();
    jbd2::recovery_info info;
    REQUIRE(recover_image(d, info) == errc::ok);
    CHECK(info.transactions == 1);
    CHECK(holds(d.block(10), 10, 1));
    CHECK(d.block(11)[0] == 0);
}

// ---- the volume -----------------------------------------------------------

namespace {

using V = volume<crash_device>;
using tree_t = btree<u64_map_traits, V::storage, V::journal_type>;

hosted::journal_sizes volume_sizes() {
    hosted::journal_sizes z;
    z.block_size = bs;
    z.cache_blocks = 512;
    z.max_transaction_blocks = 128;
    z.committed_capacity = 64;
    z.staging_blocks = 16;
    z.bitmap_blocks = hosted::volume_bitmap_blocks(dev_blocks, bs);
    return z;
}

} // namespace

TEST_CASE("volume: two trees change atomically; a crash gives back the last commit") {
    crash_device d(bs, dev_blocks);
    std::vector<unsigned char> scratch(bs);
    volume_geometry g;
    g.journal_blocks = 512;
    g.uuid[0] = 42;
    REQUIRE(V::create(d, g, scratch.data()) == errc::ok);
    std::map<std::uint64_t, std::uint64_t> a_committed, b_committed, a_now, b_now;
    {
        hosted::owned_memory m(volume_sizes());
        V v(d, m.volume());
        REQUIRE(v.open({}) == errc::ok);
        auto a = tree_t::create(v.store(), v.journal(), 1);
        auto b = tree_t::create(v.store(), v.journal(), 2);
        REQUIRE(a);
        REQUIRE(b);
        std::mt19937_64 rng(11);
        for (int i = 0; i < 3000; ++i) {
            auto h = v.start(a->insert_credits() + b->erase_credits());
            REQUIRE(h);
            // One handle: insert k into a, and erase it from b (or insert it).
            const std::uint64_t k = rng() % 2000;
            if (a->insert(*h, k, i) == errc::ok) a_now[k] = i;
            if (rng() % 3 == 0) {
                if (b->erase(*h, k) == errc::ok) b_now.erase(k);
            } else if (b->insert_or_assign(*h, k, i) == errc::ok) {
                b_now[k] = i;
            }
            REQUIRE(v.set_anchor(0, a->anchor()) == errc::ok);
            REQUIRE(v.set_anchor(1, b->anchor()) == errc::ok);
            REQUIRE(v.stop(*h) == errc::ok);
            if (i % 97 == 0) {
                REQUIRE(v.commit() == errc::ok);
                a_committed = a_now;
                b_committed = b_now;
            }
        }
        CHECK_CLEAN(*a);
        CHECK_CLEAN(*b);
    }
    // Crash (the volume goes away uncommitted); reopen recovers.
    hosted::owned_memory m(volume_sizes());
    V v(d, m.volume());
    jbd2::recovery_info info;
    REQUIRE(v.open({}, nullptr, &info) == errc::ok);
    CHECK(info.transactions > 0);
    auto aa = v.anchor(0);
    auto ba = v.anchor(1);
    REQUIRE(aa);
    REQUIRE(ba);
    auto a = tree_t::open(v.store(), v.journal(), *aa);
    auto b = tree_t::open(v.store(), v.journal(), *ba);
    REQUIRE(a);
    REQUIRE(b);
    CHECK_CLEAN(*a);
    CHECK_CLEAN(*b);
    CHECK(same_contents(*a, a_committed));
    CHECK(same_contents(*b, b_committed));
    // Every block the trees hold is allocated, and the free count adds up.
    auto sa = a->stats();
    auto sb = b->stats();
    REQUIRE(sa);
    REQUIRE(sb);
    const std::uint64_t nodes = sa->nodes() + sb->nodes();
    CHECK(v.free_blocks() + nodes == v.end_block() - v.data_start());
    REQUIRE(v.close() == errc::ok);
}

TEST_CASE("volume: a damaged superblock is refused with the reason") {
    crash_device d(bs, dev_blocks);
    std::vector<unsigned char> scratch(bs);
    volume_geometry g;
    g.journal_blocks = 256;
    REQUIRE(V::create(d, g, scratch.data()) == errc::ok);
    hosted::owned_memory m(volume_sizes());
    {
        V v(d, m.volume());
        REQUIRE(v.open({}) == errc::ok);
        REQUIRE(v.close() == errc::ok);
    }
    const std::vector<unsigned char> good(d.block(0), d.block(0) + bs);
    struct damage {
        std::size_t offset;
        volume_problem want;
        errc err;
    };
    for (const damage& x : {damage{0, volume_problem::bad_magic, errc::corrupted},
                            damage{0x20, volume_problem::bad_checksum, errc::bad_checksum},
                            damage{0x90, volume_problem::bad_checksum, errc::bad_checksum}}) {
        std::memcpy(d.block(0), good.data(), bs);
        d.block(0)[x.offset] ^= 0x40;
        V v(d, m.volume());
        volume_problem why{};
        CHECK(v.open({}, &why) == x.err);
        CHECK(why == x.want);
    }
    // Geometry that disagrees with the device, checksum recomputed.
    std::memcpy(d.block(0), good.data(), bs);
    reinterpret_cast<volume_superblock*>(d.block(0))->block_count.set(dev_blocks * 2);
    reinterpret_cast<volume_superblock*>(d.block(0))->checksum.set(volume_sb_checksum(d.block(0)));
    V v(d, m.volume());
    volume_problem why{};
    CHECK(v.open({}, &why) == errc::corrupted);
    CHECK(why == volume_problem::bad_geometry);
}

TEST_CASE("volume: inside a larger device, with an external journal, touching nothing outside its range") {
    // The device: a jbd2 log at [1, 257) that is not the volume's (as an ext4
    // image's journal), the volume at [1000, 2000), a pattern everywhere else.
    crash_device d(bs, dev_blocks);
    for (std::uint64_t b = 0; b < dev_blocks; ++b) std::memset(d.block(b), static_cast<int>(b * 7 + 1), bs);
    const jbd2::log_extent log{1, 256};
    {
        jbd2::log_area<crash_device> area(d, &log, 1);
        std::vector<unsigned char> scratch(bs);
        const unsigned char uuid[16] = {7};
        REQUIRE(jbd2::make_journal(area, jbd2::journal_features{}, uuid, scratch.data()) == errc::ok);
    }
    const std::vector<unsigned char> before(d.image().begin(), d.image().end());
    std::vector<unsigned char> scratch(bs);
    volume_geometry g;
    g.first_block = 1000;
    g.block_count = 1000;
    g.external_journal = true;
    g.uuid[0] = 5;
    REQUIRE(V::create(d, g, scratch.data()) == errc::ok);
    const volume_location here{1000, &log, 1};
    std::map<std::uint64_t, std::uint64_t> committed, now;
    unsigned char stamp[volume_owner_data_size] = {};
    {
        hosted::owned_memory m(volume_sizes());
        V v(d, m.volume());
        REQUIRE(v.open({}, nullptr, nullptr, here) == errc::ok);
        CHECK(v.external_journal());
        CHECK(v.first_block() == 1000);
        CHECK(v.end_block() == 2000);
        CHECK(v.block_count() == 1000);
        auto t = tree_t::create(v.store(), v.journal(), 1);
        REQUIRE(t);
        for (std::uint64_t i = 0; i < 4000; ++i) {
            auto h = v.start(t->insert_credits());
            REQUIRE(h);
            const std::uint64_t k = (i * 7919) % 3000;
            if (t->insert_or_assign(*h, k, i) == errc::ok) now[k] = i;
            REQUIRE(v.set_anchor(0, t->anchor()) == errc::ok);
            REQUIRE(v.stop(*h) == errc::ok);
            if (i % 500 == 499) {
                stamp[0] = static_cast<unsigned char>(i / 500);
                v.set_owner_data(stamp);
                REQUIRE(v.commit() == errc::ok);
                committed = now;
            }
        }
        // Every node is inside the volume's data area.
        REQUIRE(t->for_each_node([&](std::uint64_t b, unsigned) {
            CHECK(b >= v.data_start());
            CHECK(b < 2000);
        }) == errc::ok);
    }
    // Crash. Opening refuses while the external log holds transactions
    // (replaying it is its owner's job), and with the wrong location.
    {
        hosted::owned_memory m(volume_sizes());
        V v(d, m.volume());
        CHECK(v.open({}, nullptr, nullptr, here) == errc::busy);
        V w(d, m.volume());
        volume_problem why{};
        CHECK(w.open({}, &why, nullptr, volume_location{1000}) == errc::invalid); // external log not given
        CHECK(why == volume_problem::journal);
        V x(d, m.volume());
        CHECK(x.open({}, &why, nullptr, volume_location{999, &log, 1}) != errc::ok);
    }
    hosted::owned_memory m(volume_sizes());
    {
        jbd2::log_area<crash_device> area(d, &log, 1);
        jbd2::recovery_info info;
        REQUIRE(jbd2::recover(area, m.recovery(bs), info) == errc::ok);
        CHECK(info.transactions > 0);
    }
    V v(d, m.volume());
    REQUIRE(v.open({}, nullptr, nullptr, here) == errc::ok);
    CHECK(v.owner_data()[0] == stamp[0]);
    auto a = v.anchor(0);
    REQUIRE(a);
    auto t = tree_t::open(v.store(), v.journal(), *a);
    REQUIRE(t);
    CHECK_CLEAN(*t);
    CHECK(same_contents(*t, committed));
    REQUIRE(v.close() == errc::ok);
    // Outside the volume and the log, every byte is as before.
    for (std::uint64_t b = 0; b < dev_blocks; ++b) {
        if ((b >= 1 && b < 257) || (b >= 1000 && b < 2000)) continue;
        if (std::memcmp(d.block(b), before.data() + b * bs, bs) != 0) {
            FAIL_CHECK("block " << b << " outside the volume changed");
            break;
        }
    }
}

TEST_CASE("volume: a tree bulk-built in memory at its final block numbers, written out and claimed") {
    crash_device d(bs, dev_blocks);
    std::vector<unsigned char> scratch(bs);
    volume_geometry g;
    g.journal_blocks = 256;
    g.uuid[3] = 9;
    REQUIRE(V::create(d, g, scratch.data()) == errc::ok);
    std::uint64_t nodes = 0;
    {
        hosted::owned_memory m(volume_sizes());
        V v(d, m.volume());
        REQUIRE(v.open({}) == errc::ok);
        // Built off-line: same block size, checksum seed and numbering.
        memory_storage<> ms({bs, true, v.store().checksum_seed(), v.end_block() - v.data_start(), v.data_start()});
        null_journal<memory_storage<>> nj(ms);
        auto t = btree<u64_map_traits, memory_storage<>, null_journal<memory_storage<>>>::create(ms, nj, 4);
        REQUIRE(t);
        auto h = nj.start(unlimited_credits);
        REQUIRE(h);
        std::uint64_t i = 0;
        REQUIRE(t->bulk_load(*h, 20000, [&](std::uint64_t& k, std::uint64_t& val) {
            k = i * 3;
            val = i++;
            return true;
        }) == errc::ok);
        nodes = ms.end_block() - v.data_start();
        for (std::uint64_t b = v.data_start(); b < ms.end_block(); ++b) REQUIRE(d.write_blocks(b, 1, ms.raw_block(b)) == errc::ok);
        REQUIRE(d.flush() == errc::ok);
        CHECK(v.claim(v.data_start() - 1, 2) == errc::invalid); // not in the data area
        REQUIRE(v.claim(v.data_start(), nodes) == errc::ok);
        CHECK(v.claim(v.data_start() + 1, 1) == errc::invalid); // already in use
        REQUIRE(v.set_anchor(0, t->anchor()) == errc::ok);
        REQUIRE(v.commit() == errc::ok);
    } // crash after the commit
    hosted::owned_memory m(volume_sizes());
    V v(d, m.volume());
    REQUIRE(v.open({}) == errc::ok);
    auto a = v.anchor(0);
    REQUIRE(a);
    auto t = tree_t::open(v.store(), v.journal(), *a);
    REQUIRE(t);
    CHECK_CLEAN(*t);
    CHECK(t->size() == 20000);
    std::vector<unsigned char> seen((v.end_block() - v.data_start() + 7) / 8);
    auto own = check_ownership(v, seen.data(), seen.size(), *t);
    CHECK(own.clean());
    CHECK(own.allocated == nodes);
    // It goes on changing through the journal like any other tree.
    auto h = v.start(t->insert_credits());
    REQUIRE(h);
    REQUIRE(t->insert(*h, 1, 1) == errc::ok);
    REQUIRE(v.set_anchor(0, t->anchor()) == errc::ok);
    REQUIRE(v.stop(*h) == errc::ok);
    REQUIRE(v.close() == errc::ok);
}

TEST_CASE("volume: a node's checksum is verified once per read from the device, and again after every re-read") {
    static_assert(CheckedBlockBuffer<V::journal_type::buffer>);
    crash_device d(bs, dev_blocks);
    std::vector<unsigned char> scratch(bs);
    volume_geometry g;
    g.journal_blocks = 256;
    REQUIRE(V::create(d, g, scratch.data()) == errc::ok);
    std::uint64_t leaf = 0;
    {
        hosted::owned_memory m(volume_sizes());
        V v(d, m.volume());
        REQUIRE(v.open({}) == errc::ok);
        auto t = tree_t::create(v.store(), v.journal(), 1);
        REQUIRE(t);
        auto h = v.start(t->insert_credits());
        REQUIRE(h);
        REQUIRE(t->insert(*h, 7, 70) == errc::ok);
        REQUIRE(v.set_anchor(0, t->anchor()) == errc::ok);
        REQUIRE(v.stop(*h) == errc::ok);
        REQUIRE(v.close() == errc::ok); // checkpointed: the leaf is home
        leaf = t->anchor().root;
    }
    hosted::owned_memory m(volume_sizes());
    {
        V v(d, m.volume());
        REQUIRE(v.open({}) == errc::ok);
        auto a = v.anchor(0);
        REQUIRE(a);
        REQUIRE(a->root == leaf);
        {
            auto b = v.store().read(leaf);
            REQUIRE(b);
            CHECK_FALSE(b->checked()); // just read from the device
        }
        auto t = tree_t::open(v.store(), v.journal(), *a);
        REQUIRE(t);
        auto f = t->find(7);
        REQUIRE(f);
        CHECK(*f == 70);
        auto b = v.store().read(leaf);
        REQUIRE(b);
        CHECK(b->checked()); // the engine validated it; the cache remembers
        REQUIRE(v.close() == errc::ok);
    }
    // Damage the leaf on the device: a new cache reads it and the checksum
    // catches it, on the first access.
    d.block(leaf)[bs - 1] ^= 0x01;
    V v(d, m.volume());
    REQUIRE(v.open({}) == errc::ok);
    auto a = v.anchor(0);
    REQUIRE(a);
    auto t = tree_t::open(v.store(), v.journal(), *a);
    if (t) { // open may already read the root
        auto f = t->find(7);
        REQUIRE_FALSE(f);
        CHECK(f.error() == errc::bad_checksum);
    } else {
        CHECK(t.error() == errc::bad_checksum);
    }
}

TEST_CASE("volume: check_ownership finds leaked, unallocated and doubly owned blocks") {
    crash_device d(bs, dev_blocks);
    std::vector<unsigned char> scratch(bs);
    volume_geometry g;
    g.journal_blocks = 256;
    REQUIRE(V::create(d, g, scratch.data()) == errc::ok);
    hosted::owned_memory m(volume_sizes());
    V v(d, m.volume());
    REQUIRE(v.open({}) == errc::ok);
    auto a = tree_t::create(v.store(), v.journal(), 1);
    auto b = tree_t::create(v.store(), v.journal(), 2);
    REQUIRE(a);
    REQUIRE(b);
    for (std::uint64_t k = 0; k < 600; ++k) {
        auto h = v.start(a->insert_credits() + b->insert_credits());
        REQUIRE(h);
        REQUIRE(a->insert(*h, k, k) == errc::ok);
        if (k % 3 == 0) REQUIRE(b->insert(*h, k, k) == errc::ok);
        REQUIRE(v.stop(*h) == errc::ok);
    }
    std::vector<unsigned char> seen((v.end_block() - v.data_start() + 7) / 8);
    auto clean = check_ownership(v, seen.data(), seen.size(), *a, *b);
    CHECK(clean.clean());
    CHECK(clean.nodes == a->stats()->nodes() + b->stats()->nodes());
    CHECK(clean.allocated == clean.nodes);
    // Forgetting a tree: its blocks are leaked.
    auto only_a = check_ownership(v, seen.data(), seen.size(), *a);
    CHECK(only_a.problem_count == b->stats()->nodes());
    CHECK(only_a.count(ownership_problem_kind::leaked) == std::min<std::uint64_t>(only_a.problem_count, ownership_report::max_kept));
    // The same tree twice: every node owned twice.
    auto twice = check_ownership(v, seen.data(), seen.size(), *a, *b, *b);
    CHECK(twice.problem_count == b->stats()->nodes());
    CHECK(twice.count(ownership_problem_kind::owned_twice) == twice.kept());
    CHECK(twice.problems[0].tree_id == 2);
    // A block allocated and never attached: leaked, at that block.
    {
        auto h = v.start(1);
        REQUIRE(h);
        auto blk = v.store().allocate();
        REQUIRE(blk);
        const std::uint64_t lost = blk->blkno();
        blk->reset();
        REQUIRE(v.stop(*h) == errc::ok);
        auto r = check_ownership(v, seen.data(), seen.size(), *a, *b);
        REQUIRE(r.problem_count == 1);
        CHECK(r.problems[0].kind == ownership_problem_kind::leaked);
        CHECK(r.problems[0].block == lost);
        auto h2 = v.start(1);
        REQUIRE(h2);
        REQUIRE(v.store().free(lost) == errc::ok);
        REQUIRE(v.stop(*h2) == errc::ok);
    }
    // A tree's root freed behind its back: not allocated, named with the tree.
    {
        const std::uint64_t root = a->anchor().root;
        auto h = v.start(1);
        REQUIRE(h);
        REQUIRE(v.store().free(root) == errc::ok);
        REQUIRE(v.stop(*h) == errc::ok);
        auto r = check_ownership(v, seen.data(), seen.size(), *a, *b);
        REQUIRE(r.problem_count == 1);
        CHECK(r.problems[0].kind == ownership_problem_kind::not_allocated);
        CHECK(r.problems[0].block == root);
        CHECK(r.problems[0].tree_id == 1);
    }
    // Too little memory for the bitmap of seen blocks: said, not overrun.
    auto small = check_ownership(v, seen.data(), seen.size() - 1, *a, *b);
    REQUIRE(small.problem_count == 1);
    CHECK(small.problems[0].kind == ownership_problem_kind::walk_error);
    CHECK(small.problems[0].error == errc::range);
}
