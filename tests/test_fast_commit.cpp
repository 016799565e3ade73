// The fast-commit area's scan (jbd2_fast_commit.hpp): which tags e2fsck's
// rules make valid, which blocks make its recovery fail, which are refused
// as unreproducible; random blocks never read outside the block (run under
// ASan/UBSan in CI).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include <jbtree/journal/jbd2_fast_commit.hpp>
#include <jbtree/journal/jbd2_recovery.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

using namespace jt;
namespace fc = jbtree::jbd2::fc;

namespace {

// A fast-commit block writer: tags appended, the crc kept as the kernel
// keeps it (from the last TAIL), the block's end filled by the TAIL.
struct fc_writer {
    std::vector<unsigned char> b;
    std::uint32_t at = 0, crc = 0;
    explicit fc_writer(std::uint32_t bs) : b(bs, 0) {}

    void put(std::uint16_t t, std::uint16_t len, const std::vector<unsigned char>& v) {
        REQUIRE(at + 4 + len <= b.size());
        store_le<std::uint16_t>(&b[at], t);
        store_le<std::uint16_t>(&b[at + 2], len);
        for (std::size_t i = 0; i < v.size() && i < len; ++i) b[at + 4 + i] = v[i];
        crc = crc32c_raw(crc, &b[at], 4u + len);
        at += 4u + len;
    }
    void head(std::uint32_t tid, std::uint32_t features = 0) {
        std::vector<unsigned char> v(8);
        store_le<std::uint32_t>(&v[0], features);
        store_le<std::uint32_t>(&v[4], tid);
        put(static_cast<std::uint16_t>(fc::tag::head), 8, v);
    }
    void del_range(std::uint32_t ino, std::uint32_t lblk, std::uint32_t len) {
        std::vector<unsigned char> v(12);
        store_le<std::uint32_t>(&v[0], ino);
        store_le<std::uint32_t>(&v[4], lblk);
        store_le<std::uint32_t>(&v[8], len);
        put(static_cast<std::uint16_t>(fc::tag::del_range), 12, v);
    }
    // A TAIL whose length runs to `end` (the block's end by default).
    void tail(std::uint32_t tid, std::uint32_t end = 0) {
        if (end == 0) end = static_cast<std::uint32_t>(b.size());
        const auto len = static_cast<std::uint16_t>(end - at - 4);
        store_le<std::uint16_t>(&b[at], static_cast<std::uint16_t>(fc::tag::tail));
        store_le<std::uint16_t>(&b[at + 2], len);
        store_le<std::uint32_t>(&b[at + 4], tid);
        const std::uint32_t c = crc32c_raw(crc, &b[at], 8);
        store_le<std::uint32_t>(&b[at + 8], c);
        crc = 0;
        at = end;
    }
};

} // namespace

TEST_CASE("fast-commit area: where e2fsck reads it") {
    fc::area a;
    REQUIRE(fc::area_of(4096, 0, a) == errc::ok); // 0 means 256
    CHECK(a.first == 4096 - 256 + 1);
    CHECK(a.last == 4096);
    CHECK(a.log_last == 4096 - 256);
    REQUIRE(fc::area_of(1040, 16, a) == errc::ok);
    CHECK(a.first == 1025);
    CHECK(fc::area_of(1100, 256, a) == errc::corrupted); // fewer than 1024 log blocks left
    CHECK(fc::area_of(1000, 5000, a) == errc::corrupted); // more than the journal
}

TEST_CASE("fast-commit scan: valid tags up to the last good TAIL") {
    const std::uint32_t bs = 1024, tid = 77;
    fc_writer w(bs);
    w.head(tid);
    w.del_range(12, 0, 3);
    w.tail(tid, 200);
    w.del_range(13, 5, 1);
    w.tail(tid);
    fc::scanner s;
    CHECK(s.block(w.b.data(), bs, 0, tid) == fc::step::next);
    CHECK(s.valid() == 5);

    SUBCASE("a second fast commit with a bad crc: the first stays valid") {
        w.b[210] ^= 1; // the second DEL_RANGE's value
        fc::scanner t;
        CHECK(t.block(w.b.data(), bs, 0, tid) == fc::step::stop);
        CHECK(t.valid() == 3);
    }
    SUBCASE("the first fast commit bad: recovery fails (bad checksum)") {
        w.b[20] ^= 1;
        fc::scanner t;
        CHECK(t.block(w.b.data(), bs, 0, tid) == fc::step::error);
        CHECK(t.error() == errc::bad_checksum);
        CHECK(t.valid() == 0);
    }
    SUBCASE("a TAIL of another transaction ends the valid tags") {
        fc::scanner t;
        CHECK(t.block(w.b.data(), bs, 0, tid + 1) == fc::step::error); // HEAD's tid is not the log's end
        CHECK(t.error() == errc::invalid);
    }
    SUBCASE("the crc carries on into the next block") {
        fc_writer w2(bs);
        w2.crc = 0;
        w2.del_range(14, 1, 1);
        w2.tail(tid);
        CHECK(s.block(w2.b.data(), bs, 1, tid) == fc::step::next);
        CHECK(s.valid() == 7);
        CHECK(s.block(std::vector<unsigned char>(bs, 0).data(), bs, 2, tid) == fc::step::stop); // tag 0: unknown
        CHECK(s.valid() == 7);
    }
}

TEST_CASE("fast-commit scan: what e2fsck rejects, and what cannot be reproduced") {
    const std::uint32_t bs = 1024, tid = 5;
    SUBCASE("no HEAD first: nothing to replay") {
        fc_writer w(bs);
        w.del_range(12, 0, 1);
        w.tail(tid);
        fc::scanner s;
        CHECK(s.block(w.b.data(), bs, 0, tid) == fc::step::stop);
        CHECK(s.valid() == 0);
    }
    SUBCASE("unknown HEAD features: recovery fails") {
        fc_writer w(bs);
        w.head(tid, 1);
        w.tail(tid);
        fc::scanner s;
        CHECK(s.block(w.b.data(), bs, 0, tid) == fc::step::error);
        CHECK(s.error() == errc::not_supported);
    }
    SUBCASE("an unknown tag before any good TAIL: recovery fails") {
        fc_writer w(bs);
        w.head(tid);
        w.put(42, 4, {});
        fc::scanner s;
        CHECK(s.block(w.b.data(), bs, 0, tid) == fc::step::error);
    }
    SUBCASE("a tag whose value runs past the block: refused") {
        fc_writer w(bs);
        w.head(tid);
        store_le<std::uint16_t>(&w.b[w.at], static_cast<std::uint16_t>(fc::tag::pad));
        store_le<std::uint16_t>(&w.b[w.at + 2], static_cast<std::uint16_t>(bs)); // past the end
        fc::scanner s;
        CHECK(s.block(w.b.data(), bs, 0, tid) == fc::step::unreproducible);
    }
    SUBCASE("a tag header across the block's end: refused") {
        fc_writer w(bs);
        w.head(tid);
        w.tail(tid, bs - 2); // the next tag would start 2 bytes before the end
        fc::scanner s;
        CHECK(s.block(w.b.data(), bs, 0, tid) == fc::step::unreproducible);
    }
}

TEST_CASE("fast-commit scan: random and damaged blocks stay inside the block") {
    std::mt19937 rng(15);
    const std::uint32_t bs = 1024, tid = 9;
    int next = 0, stop = 0, error = 0, refused = 0;
    for (int round = 0; round < 3000; ++round) {
        fc_writer w(bs);
        w.head(tid);
        for (int k = 0; k < 5; ++k) w.del_range(rng(), rng(), rng());
        w.tail(tid);
        // Flip a few bytes, sometimes in a tag's length.
        const int flips = 1 + static_cast<int>(rng() % 3);
        for (int f = 0; f < flips; ++f) w.b[rng() % (round % 2 ? 100 : bs)] ^= static_cast<unsigned char>(1 + rng() % 255);
        std::vector<unsigned char> exact(w.b); // a heap block of exactly bs bytes: ASan sees any overrun
        fc::scanner s;
        const fc::step r = s.block(exact.data(), bs, 0, tid);
        CHECK(s.valid() <= 7);
        if (r == fc::step::next) ++next;
        else if (r == fc::step::stop) ++stop;
        else if (r == fc::step::error) ++error;
        else ++refused;
    }
    MESSAGE("damaged blocks: " << next << " still valid, " << stop << " stop, " << error << " fail, " << refused
                               << " refused");
    CHECK(error > 0);
    CHECK(refused > 0);
}

// ---- recover() on a fast-commit journal in memory --------------------------

namespace {

// A journal of `n` blocks in memory, counting writes.
struct mem_log {
    std::uint32_t bs = 1024;
    std::vector<std::vector<unsigned char>> blocks;
    int log_writes = 0, home_writes = 0;
    explicit mem_log(std::uint32_t n) : blocks(n, std::vector<unsigned char>(1024, 0)) {}
    std::uint32_t block_size() const noexcept { return bs; }
    std::uint32_t journal_blocks() const noexcept { return static_cast<std::uint32_t>(blocks.size()); }
    errc read_log(std::uint32_t j, unsigned char* out) noexcept {
        if (j >= blocks.size()) return errc::io;
        std::copy(blocks[j].begin(), blocks[j].end(), out);
        return errc::ok;
    }
    errc write_log(std::uint32_t j, const unsigned char* in) noexcept {
        if (j >= blocks.size()) return errc::io;
        std::copy(in, in + bs, blocks[j].begin());
        ++log_writes;
        return errc::ok;
    }
    errc write_home(std::uint64_t, const unsigned char*) noexcept { return ++home_writes, errc::ok; }
    errc flush() noexcept { return errc::ok; }
};

// A v2 superblock with fast commits (16 blocks: the area starts at
// maxlen - 15), s_start 1, s_sequence `seq`; the log itself is empty (block
// 1 is zero), so the log's end is `seq`.
mem_log fc_journal(std::uint32_t seq, std::uint32_t head_tid, std::uint32_t tail_tid) {
    const std::uint32_t maxlen = 2048;
    mem_log d(maxlen);
    auto* sb = reinterpret_cast<jbtree::jbd2::superblock*>(d.blocks[0].data());
    sb->s_header.h_magic.set(jbtree::jbd2::magic);
    sb->s_header.h_blocktype.set(static_cast<std::uint32_t>(jbtree::jbd2::block_type::superblock_v2));
    sb->s_blocksize.set(d.bs);
    sb->s_maxlen.set(maxlen);
    sb->s_first.set(1);
    sb->s_sequence.set(seq);
    sb->s_start.set(1);
    sb->s_nr_users.set(1);
    sb->s_feature_incompat.set(jbtree::jbd2::incompat_revoke | jbtree::jbd2::incompat_fast_commit);
    sb->s_num_fc_blks.set(16);
    fc_writer w(d.bs);
    w.head(head_tid);
    w.del_range(12, 0, 3);
    w.tail(tail_tid);
    d.blocks[maxlen - 16 + 1] = w.b;
    return d;
}

struct counting_replayer {
    int vets = 0, begins = 0, applies = 0, finishes = 0;
    errc vet_result = errc::ok;
    bool enabled() noexcept { return true; }
    errc vet(const fc::tag_view&) noexcept { return ++vets, vet_result; }
    errc begin() noexcept { return ++begins, errc::ok; }
    errc apply(const fc::tag_view&) noexcept { return ++applies, errc::ok; }
    errc finish() noexcept { return ++finishes, errc::ok; }
};
static_assert(jbtree::jbd2::FastCommitReplayer<counting_replayer>);

} // namespace

TEST_CASE("recover(): fast commits refused without a replayer, applied with one, e2fsck's failures reproduced") {
    namespace jbd2 = jbtree::jbd2;
    std::vector<unsigned char> a(1024), b(1024);
    std::vector<jbd2::revoke_entry> slots(64);
    const jbd2::recovery_memory mem{a.data(), b.data(), slots.data(), slots.size()};
    jbd2::recovery_info info;

    SUBCASE("the writer's load() refuses a fast-commit journal") {
        mem_log d = fc_journal(5, 5, 5);
        jbd2::journal_info j;
        jbd2::sb_problem why = jbd2::sb_problem::none;
        CHECK(jbd2::load(d, a.data(), j, why) == errc::not_supported);
        CHECK(why == jbd2::sb_problem::fast_commit);
        CHECK(jbd2::load(d, a.data(), j, why, true) == errc::ok);
        CHECK(j.fc.first == 2033);
    }
    SUBCASE("valid fast commits and no replayer: refused, nothing written") {
        mem_log d = fc_journal(5, 5, 5);
        const auto before = d.blocks;
        CHECK(jbd2::recover(d, mem, info) == errc::not_supported);
        CHECK(info.refused == jbd2::sb_problem::fast_commit);
        CHECK(info.fc_valid == 3);
        CHECK(d.log_writes + d.home_writes == 0);
        CHECK(d.blocks == before);
    }
    SUBCASE("an area that does not start with a HEAD: nothing to apply, replayed as any journal") {
        mem_log d = fc_journal(5, 5, 5);
        std::fill(d.blocks[2033].begin(), d.blocks[2033].end(), 0);
        CHECK(jbd2::recover(d, mem, info) == errc::ok);
        CHECK(info.fc_valid == 0);
        const auto* sb = reinterpret_cast<const jbd2::superblock*>(d.blocks[0].data());
        CHECK(sb->s_start.get() == 0);
        CHECK(sb->s_sequence.get() == 6);
    }
    SUBCASE("a first fast commit whose TAIL fails, no replayer: refused (e2fsck's verdict depends on the filesystem)") {
        mem_log d = fc_journal(5, 5, 4);
        CHECK(jbd2::recover(d, mem, info) == errc::not_supported);
        CHECK(info.refused == jbd2::sb_problem::fast_commit);
        CHECK(d.log_writes == 0);
    }
    SUBCASE("the same with a replayer: e2fsck's recovery fails on it") {
        mem_log d = fc_journal(5, 5, 4);
        counting_replayer r;
        CHECK(jbd2::recover(d, mem, info, r) == errc::bad_checksum);
        CHECK(r.begins == 0);
    }
    SUBCASE("with a replayer: vetted, then applied in order, the journal emptied") {
        mem_log d = fc_journal(5, 5, 5);
        counting_replayer r;
        CHECK(jbd2::recover(d, mem, info, r) == errc::ok);
        CHECK(r.vets == 3);
        CHECK(r.begins == 1);
        CHECK(r.applies == 3);
        CHECK(r.finishes == 1);
        CHECK(info.fc_applied == 3);
        const auto* sb = reinterpret_cast<const jbd2::superblock*>(d.blocks[0].data());
        CHECK(sb->s_start.get() == 0);
        CHECK(sb->s_sequence.get() == 6);
    }
    SUBCASE("the replayer vets a tag out: refused, nothing written") {
        mem_log d = fc_journal(5, 5, 5);
        counting_replayer r;
        r.vet_result = errc::not_supported;
        CHECK(jbd2::recover(d, mem, info, r) == errc::not_supported);
        CHECK(r.begins == 0);
        CHECK(d.log_writes + d.home_writes == 0);
    }
    SUBCASE("a HEAD of another transaction: e2fsck's recovery fails, the log is dropped as it drops it") {
        mem_log d = fc_journal(5, 4, 4);
        counting_replayer r;
        CHECK(jbd2::recover(d, mem, info, r) == errc::invalid);
        CHECK(r.begins == 0);
        CHECK(info.fc_valid == 0);
        const auto* sb = reinterpret_cast<const jbd2::superblock*>(d.blocks[0].data());
        CHECK(sb->s_start.get() == 0);
        CHECK(sb->s_sequence.get() == 5); // not moved on after a failed recovery
    }
}
