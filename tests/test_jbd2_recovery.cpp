// jbd2 recovery: jbtree replays the journals of ../shared/corpus/jbd2/ and
// must produce the same image as `e2fsck -E journal_only -y` (every block
// identical except s_wtime and the checksum of the ext4 superblock), and
// refuse what e2fsck refuses or repairs, changing nothing.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include "ext4_image.hpp"

#include <jbtree/ext2fs/io_device.hpp>
#include <jbtree/ext2fs/journal_extents.hpp>
#include <jbtree/journal/jbd2_mkjournal.hpp>
#include <jbtree/journal/jbd2_recovery.hpp>
#include <jbtree/storage/memory_device.hpp>

#include "jbtree/ext2fs/libext2fs.hpp"

#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace jt;
namespace fs = std::filesystem;

namespace {

const fs::path corpus = fs::path(JBTREE_SOURCE_ROOT) / ".." / "shared" / "corpus" / "jbd2";

std::vector<unsigned char> slurp(const fs::path& p) {
    std::vector<unsigned char> out(fs::file_size(p));
    std::ifstream in(p, std::ios::binary);
    in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
    REQUIRE(in.gcount() == static_cast<std::streamsize>(out.size()));
    return out;
}

int run(const std::string& cmd) {
    const int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// The journal of an ext4 image file: journal blocks mapped through the
// journal inode with libext2fs, I/O with pread/pwrite.
struct image_journal {
    int fd = -1;
    std::uint32_t bs = 0;
    std::uint64_t fs_blocks = 0;
    std::vector<std::uint64_t> map;

    std::uint32_t block_size() const noexcept { return bs; }
    std::uint32_t journal_blocks() const noexcept { return static_cast<std::uint32_t>(map.size()); }
    errc read_log(std::uint32_t j, unsigned char* out) noexcept {
        if (j >= map.size() || map[j] == 0) return errc::io;
        return pread(fd, out, bs, static_cast<off_t>(map[j] * bs)) == static_cast<ssize_t>(bs) ? errc::ok : errc::io;
    }
    errc write_log(std::uint32_t j, const unsigned char* in) noexcept {
        if (j >= map.size() || map[j] == 0) return errc::io;
        return pwrite(fd, in, bs, static_cast<off_t>(map[j] * bs)) == static_cast<ssize_t>(bs) ? errc::ok : errc::io;
    }
    errc write_home(std::uint64_t b, const unsigned char* in) noexcept {
        if (b >= fs_blocks) return errc::range;
        return pwrite(fd, in, bs, static_cast<off_t>(b * bs)) == static_cast<ssize_t>(bs) ? errc::ok : errc::io;
    }
    errc flush() noexcept { return fsync(fd) == 0 ? errc::ok : errc::io; }
};

bool open_journal(const std::string& img, image_journal& j) {
    ext2_filsys efs = nullptr;
    if (ext2fs_open2(img.c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &efs)) return false;
    bool ok = false;
    const ext2_ino_t ino = efs->super->s_journal_inum;
    ext2_inode inode{};
    if (ino && !ext2fs_read_inode(efs, ino, &inode)) {
        j.bs = efs->blocksize;
        j.fs_blocks = ext2fs_blocks_count(efs->super);
        const std::uint64_t n = EXT2_I_SIZE(&inode) / j.bs;
        j.map.assign(n, 0);
        ok = true;
        for (std::uint64_t l = 0; l < n && ok; ++l) {
            blk64_t p = 0;
            ok = ext2fs_bmap2(efs, ino, &inode, nullptr, 0, l, nullptr, &p) == 0;
            j.map[l] = p;
        }
    }
    ext2fs_close_free(&efs);
    if (!ok) return false;
    j.fd = open(img.c_str(), O_RDWR);
    return j.fd >= 0;
}

// What e2fsck does to the ext4 superblock after replay: clear
// needs_recovery; a failed replay clears "valid"; an error number in the
// journal superblock (a corrupt transaction recorded by the replay, or an
// abort before the crash) is recorded as an error and cleared.
void finish_ext4_superblock(image_journal& j, errc result) {
    unsigned char sb[1024];
    REQUIRE(pread(j.fd, sb, sizeof sb, 1024) == 1024);
    using namespace ext4img;
    store_le<std::uint32_t>(sb + ext4_sb_feature_incompat,
                            load_le<std::uint32_t>(sb + ext4_sb_feature_incompat) & ~ext4_incompat_recover);
    std::uint16_t state = load_le<std::uint16_t>(sb + ext4_sb_state);
    if (result != errc::ok) state &= static_cast<std::uint16_t>(~1u); // EXT2_VALID_FS
    std::vector<unsigned char> blk(j.bs);
    REQUIRE(j.read_log(0, blk.data()) == errc::ok);
    auto* jsb = reinterpret_cast<jbd2::superblock*>(blk.data());
    if (jsb->s_errno.get() != 0) {
        state |= 2; // EXT2_ERROR_FS
        jsb->s_errno.set(0);
        if (jsb->s_feature_incompat.get() & (jbd2::incompat_csum_v2 | jbd2::incompat_csum_v3))
            jsb->s_checksum.set(jbd2::superblock_checksum(blk.data()));
        REQUIRE(j.write_log(0, blk.data()) == errc::ok);
    }
    store_le<std::uint16_t>(sb + ext4_sb_state, state);
    ext4_sb_update_checksum(sb);
    REQUIRE(pwrite(j.fd, sb, sizeof sb, 1024) == 1024);
}

} // namespace

TEST_CASE("corpus: jbtree replays jbd2 journals exactly as e2fsck -E journal_only") {
    if (!fs::exists(corpus)) {
        MESSAGE("SKIP: corpus not found at " << corpus);
        return;
    }
    if (run("e2fsck -V >/dev/null 2>&1") != 0) {
        MESSAGE("SKIP: e2fsck not installed");
        return;
    }
    char tmpl[] = "/tmp/jbtree-jbd2-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    const fs::path tmp = tmpl;
    int checked = 0, refused = 0;
    for (const auto& entry : fs::directory_iterator(corpus)) {
        const std::string name = entry.path().filename().string();
        if (name.size() < 7 || name.substr(name.size() - 7) != ".img.gz") continue;
        CAPTURE(name);
        const fs::path theirs = tmp / (name + ".e2fsck"), ours = tmp / (name + ".jbtree"), orig = tmp / (name + ".orig");
        REQUIRE(run("gzip -dc '" + entry.path().string() + "' > '" + orig.string() + "'") == 0);
        fs::copy_file(orig, theirs);
        fs::copy_file(orig, ours);
        const int rc = run("e2fsck -E journal_only -y '" + theirs.string() + "' >/dev/null 2>&1");

        image_journal j;
        REQUIRE(open_journal(ours.string(), j));
        std::vector<unsigned char> a(j.bs), b(j.bs);
        std::vector<jbd2::revoke_entry> slots(4096);
        jbd2::recovery_info info;
        const errc e = jbd2::recover(j, {a.data(), b.data(), slots.data(), slots.size()}, info);
        MESSAGE(name << ": e2fsck exit " << rc << "; jbtree: " << std::string(jbtree::describe(e))
                     << (info.refused != jbd2::sb_problem::none ? std::string(" (") + jbd2::describe(info.refused) + ")"
                                                                : std::string())
                     << ", " << info.transactions << " transactions, " << info.replayed << " blocks replayed, "
                     << info.revoke_hits << " revoked, " << info.bad_blocks << " bad");
        if (info.refused != jbd2::sb_problem::none) {
            // e2fsck did not replay this journal (it discarded and rebuilt it,
            // or refused): jbtree refuses and writes nothing.
            close(j.fd);
            REQUIRE(slurp(ours) == slurp(orig));
            ++refused;
            continue;
        }
        REQUIRE((rc == 0 || rc == 1));
        finish_ext4_superblock(j, e);
        close(j.fd);
        auto x = slurp(theirs), y = slurp(ours);
        REQUIRE(x.size() == y.size());
        // Fields e2fsck stamps from its own run may differ: s_wtime (the
        // time), s_kbytes_written (its I/O statistics, which depend on what
        // its block cache had flushed when it read them) and the superblock
        // checksum that covers both. Nothing else may.
        std::vector<std::size_t> stamped = {0x30, 0x31, 0x32, 0x33, 0x3FC, 0x3FD, 0x3FE, 0x3FF};
        for (std::size_t i = 0; i < 8; ++i) stamped.push_back(0x178 + i);
        for (std::size_t off : stamped) x[1024 + off] = y[1024 + off] = 0;
        const std::size_t first_diff =
            static_cast<std::size_t>(std::mismatch(x.begin(), x.end(), y.begin()).first - x.begin());
        CAPTURE(first_diff);
        REQUIRE(first_diff == x.size());
        ++checked;
    }
    fs::remove_all(tmp);
    MESSAGE("journals replayed identically: " << checked << ", refused: " << refused);
    CHECK(checked >= 6);
}

TEST_CASE("revoke table: newest tid wins, revokes cancel same and earlier transactions") {
    std::vector<jbd2::revoke_entry> slots(16);
    jbd2::revoke_table t(slots.data(), slots.size());
    REQUIRE(t.set(100, 5) == errc::ok);
    REQUIRE(t.set(100, 3) == errc::ok); // older: ignored
    REQUIRE(t.revoked(100, 5));
    REQUIRE(t.revoked(100, 4));
    REQUIRE(!t.revoked(100, 6)); // logged after the revoke: replayed
    REQUIRE(!t.revoked(101, 1));
    REQUIRE(t.set(200, 0xFFFFFFF0u) == errc::ok);
    REQUIRE(t.set(200, 2) == errc::ok); // tid wrapped around: 2 is newer than 0xFFFFFFF0
    REQUIRE(t.revoked(200, 1));
    REQUIRE(t.revoked(200, 0xFFFFFFFFu));
    REQUIRE(!t.revoked(200, 3));
    for (std::uint64_t b = 0; b < 12; ++b) REQUIRE(t.set(1000 + b, 1) == errc::ok);
    REQUIRE(t.set(5000, 1) == errc::no_memory); // full (7/8 load): refused, not overrun
}

TEST_CASE("ext2fs adapter: journal extents and recovery through libext2fs's io_channel match the pread path") {
    if (!fs::exists(corpus)) {
        MESSAGE("SKIP: corpus not found at " << corpus);
        return;
    }
    char tmpl[] = "/tmp/jbtree-adapter-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    const fs::path tmp = tmpl;
    int compared = 0, not_opened = 0;
    for (const auto& entry : fs::directory_iterator(corpus)) {
        const std::string name = entry.path().filename().string();
        if (name.size() < 7 || name.substr(name.size() - 7) != ".img.gz") continue;
        CAPTURE(name);
        const fs::path a = tmp / (name + ".pread"), b = tmp / (name + ".ext2fs");
        REQUIRE(run("gzip -dc '" + entry.path().string() + "' > '" + a.string() + "'") == 0);
        fs::copy_file(a, b);
        // The pread path of the test above.
        image_journal j;
        const bool have_a = open_journal(a.string(), j);
        jbd2::recovery_info ia, ib;
        errc ea = errc::invalid, eb = errc::invalid;
        std::vector<unsigned char> x1, x2;
        std::vector<jbd2::revoke_entry> slots(4096);
        if (have_a) {
            x1.resize(j.bs);
            x2.resize(j.bs);
            ea = jbd2::recover(j, {x1.data(), x2.data(), slots.data(), slots.size()}, ia);
            close(j.fd);
        }
        // The adapter: ext2fs_open2 read-write, the journal inode's extents,
        // a log_area over the io_channel device.
        ext2_filsys efs = nullptr;
        if (ext2fs_open2(b.string().c_str(), nullptr, EXT2_FLAG_64BITS | EXT2_FLAG_RW, 0, 0, unix_io_manager, &efs)) {
            ++not_opened;
            CHECK(!have_a); // whatever libext2fs cannot open, the pread path could not map either
            continue;
        }
        ext2fs_adapter::io_device dev(efs);
        jbd2::log_extent ext[8];
        std::uint32_t n = 0;
        const errc je = ext2fs_adapter::journal_extents(efs, ext, 8, n);
        if (je != errc::ok) { // no usable journal inode: the pread path found none either
            CHECK(!have_a);
            ext2fs_close_free(&efs);
            ++not_opened;
            continue;
        }
        // The extents list exactly the blocks the pread path mapped one by one.
        std::vector<std::uint64_t> blocks;
        for (std::uint32_t i = 0; i < n; ++i)
            for (std::uint32_t k = 0; k < ext[i].count; ++k) blocks.push_back(ext[i].start + k);
        REQUIRE(have_a);
        REQUIRE(blocks == j.map);
        // Too little room: errc::range, and n says how many were needed so far.
        if (n > 1) {
            std::uint32_t m = 0;
            CHECK(ext2fs_adapter::journal_extents(efs, ext, 1, m) == errc::range);
            CHECK(m == 2);
        }
        jbd2::log_area<ext2fs_adapter::io_device> log(dev, ext, n);
        REQUIRE(log.valid());
        std::vector<unsigned char> y1(dev.block_size()), y2(dev.block_size());
        eb = jbd2::recover(log, {y1.data(), y2.data(), slots.data(), slots.size()}, ib);
        // libext2fs would stamp s_kbytes_written into its in-memory superblock
        // (read before the replay) and write it back at close: drop the
        // write flag so that it writes nothing of its own (see io_device.hpp).
        efs->flags &= ~EXT2_FLAG_RW;
        ext2fs_close_free(&efs);
        CHECK(ea == eb);
        CHECK(ia.transactions == ib.transactions);
        CHECK(ia.replayed == ib.replayed);
        CHECK(ia.refused == ib.refused);
        REQUIRE(slurp(a) == slurp(b));
        ++compared;
    }
    fs::remove_all(tmp);
    MESSAGE("adapter matched the pread path on " << compared << " images; " << not_opened
                                                 << " without a journal libext2fs can open");
    CHECK(compared > 0);
}

TEST_CASE("ext2fs adapter: range, read-only and no-journal errors") {
    if (run("mkfs.ext4 -V >/dev/null 2>&1") != 0) {
        MESSAGE("SKIP: mkfs.ext4 not installed");
        return;
    }
    char tmpl[] = "/tmp/jbtree-adapter-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    const fs::path img = fs::path(tmpl) / "nojournal.img";
    REQUIRE(run("mkfs.ext4 -q -F -b 1024 -O ^has_journal '" + img.string() + "' 4096 >/dev/null 2>&1") == 0);
    ext2_filsys efs = nullptr;
    REQUIRE(ext2fs_open2(img.string().c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &efs) == 0);
    ext2fs_adapter::io_device dev(efs);
    CHECK(dev.block_size() == 1024);
    CHECK(dev.block_count() == 4096);
    std::vector<unsigned char> buf(2048);
    CHECK(dev.read_blocks(4095, 1, buf.data()) == errc::ok);
    CHECK(dev.read_blocks(4095, 2, buf.data()) == errc::range);
    CHECK(dev.read_blocks(1, 1, nullptr) == errc::invalid);
    CHECK(dev.read_blocks(1, 0, nullptr) == errc::ok);
    CHECK(dev.write_blocks(100, 1, buf.data()) == errc::invalid); // opened read-only
    CHECK(dev.flush() == errc::ok);
    jbd2::log_extent ext[4];
    std::uint32_t n = 7;
    CHECK(ext2fs_adapter::journal_extents(efs, ext, 4, n) == errc::not_supported);
    CHECK(n == 0);
    ext2fs_close_free(&efs);
    fs::remove_all(tmpl);
}

namespace {

// A journal written by hand, block by block, into a memory device: blocks
// [jstart, jstart + 64) are the journal (a log_area), the rest are home
// blocks. For the rules of docs/journal.md ("Damaged journals") that the
// e2fsck campaign (test_jbd2_damage.cpp) meets rarely or never: the
// refusals, and the error/async rules at library level.
struct hand_journal {
    static constexpr std::uint32_t bs = 1024, blocks = 512, jstart = 300, jlen = 64;
    std::vector<unsigned char> mem = std::vector<unsigned char>(std::size_t{bs} * blocks, 0);
    memory_device dev{mem.data(), bs, blocks};
    jbd2::log_extent ext{jstart, jlen};
    jbd2::log_area<memory_device> log{dev, &ext, 1};
    jbd2::format f;
    std::uint32_t next = 1, tid = 1, first_tid = 1;
    std::uint64_t time = 1000;
    std::vector<unsigned char> buf = std::vector<unsigned char>(bs);

    explicit hand_journal(const jbd2::journal_features& feat, std::uint32_t extra_incompat = 0) {
        const unsigned char uuid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        REQUIRE(jbd2::make_journal(log, feat, uuid, buf.data()) == errc::ok);
        REQUIRE(log.read_log(0, buf.data()) == errc::ok);
        auto* sb = reinterpret_cast<jbd2::superblock*>(buf.data());
        sb->s_feature_incompat.set(sb->s_feature_incompat.get() | extra_incompat);
        sb->s_start.set(1);
        if (sb->s_checksum_type) sb->s_checksum.set(jbd2::superblock_checksum(buf.data()));
        REQUIRE(log.write_log(0, buf.data()) == errc::ok);
        f = jbd2::format{bs, sb->s_feature_compat.get(), sb->s_feature_incompat.get(),
                         sb->s_checksum_type ? crc32c_raw(~0u, sb->s_uuid, 16) : 0u};
        tid = first_tid = sb->s_sequence.get();
    }
    void header(unsigned char* b, jbd2::block_type t) {
        fill_bytes(b, 0, bs);
        store_be<std::uint32_t>(b, jbd2::magic);
        store_be<std::uint32_t>(b + 4, static_cast<std::uint32_t>(t));
        store_be<std::uint32_t>(b + 8, tid);
    }
    void put(const unsigned char* b) {
        REQUIRE(log.write_log(next, b) == errc::ok);
        next = next + 1 >= jlen ? 1 : next + 1;
    }
    void tail(unsigned char* b) {
        if (f.csum_v2or3()) store_be<std::uint32_t>(b + bs - 4, jbd2::tail_checksum(f, b));
    }
    // A descriptor for `homes` (tags as the format wants), then their data:
    // block i filled with fill + i. bad_data: the data block of that index
    // is damaged after its checksum was taken. n_tags: more tags than homes
    // (their data blocks are zero), to make the count point anywhere.
    void descriptor(const std::vector<std::uint64_t>& homes, unsigned char fill, int bad_data = -1) {
        std::vector<unsigned char> d(bs);
        header(d.data(), jbd2::block_type::descriptor);
        std::vector<std::vector<unsigned char>> data;
        std::uint32_t off = 12;
        for (std::size_t i = 0; i < homes.size(); ++i) {
            data.emplace_back(bs, static_cast<unsigned char>(fill + i));
            std::uint16_t flags = i ? jbd2::tag_same_uuid : 0;
            if (i + 1 == homes.size()) flags |= jbd2::tag_last;
            unsigned char* t = d.data() + off;
            store_be<std::uint32_t>(t, static_cast<std::uint32_t>(homes[i]));
            const std::uint32_t c = jbd2::tag_checksum(f, tid, data.back().data());
            if (f.csum_v3()) {
                store_be<std::uint32_t>(t + 4, flags);
                store_be<std::uint32_t>(t + 8, static_cast<std::uint32_t>(homes[i] >> 32));
                store_be<std::uint32_t>(t + 12, c);
            } else {
                if (f.csum_v2()) store_be<std::uint16_t>(t + 4, static_cast<std::uint16_t>(c));
                store_be<std::uint16_t>(t + 6, flags);
                if (f.has_64bit()) store_be<std::uint32_t>(t + 8, static_cast<std::uint32_t>(homes[i] >> 32));
            }
            off += f.tag_bytes() + (i ? 0 : 16);
        }
        tail(d.data());
        put(d.data());
        for (std::size_t i = 0; i < data.size(); ++i) {
            if (static_cast<int>(i) == bad_data) data[i][7] ^= 1;
            put(data[i].data());
        }
    }
    void revoke(const std::vector<std::uint64_t>& blks) {
        header(buf.data(), jbd2::block_type::revoke);
        const std::uint32_t rl = f.revoke_record_bytes();
        std::uint32_t off = jbd2::revoke_header_size;
        for (std::uint64_t b : blks) {
            if (rl == 8) store_be<std::uint64_t>(buf.data() + off, b);
            else store_be<std::uint32_t>(buf.data() + off, static_cast<std::uint32_t>(b));
            off += rl;
        }
        store_be<std::uint32_t>(buf.data() + 12, off);
        tail(buf.data());
        put(buf.data());
    }
    void commit(bool good = true) {
        header(buf.data(), jbd2::block_type::commit);
        store_be<std::uint64_t>(buf.data() + jbd2::commit_sec_offset, ++time);
        if (f.csum_v2or3()) store_be<std::uint32_t>(buf.data() + jbd2::commit_chksum_offset, jbd2::commit_checksum(f, buf.data()) ^ (good ? 0u : 1u));
        put(buf.data());
        ++tid;
    }
    std::uint8_t home_byte(std::uint64_t blk) const { return mem[blk * bs + 100]; }
    jbd2::superblock jsb() const {
        jbd2::superblock sb;
        std::memcpy(&sb, mem.data() + std::size_t{jstart} * bs, sizeof sb);
        return sb;
    }
    errc recover(jbd2::recovery_info& info, std::size_t revoke_slots = 256) {
        std::vector<unsigned char> a(bs), b(bs);
        std::vector<jbd2::revoke_entry> slots(revoke_slots);
        return jbd2::recover(log, {a.data(), b.data(), slots.data(), slots.size()}, info);
    }
};

// log_area, vetted through check_home(blk): refuses one chosen block.
struct picky_log : jbd2::log_area<memory_device> {
    using log_area::log_area;
    std::uint64_t no = 0;
    errc check_home(std::uint64_t blk) noexcept { return blk == no ? errc::invalid : errc::ok; }
};
static_assert(jbd2::MappedLog<jbd2::log_area<memory_device>>);
static_assert(jbd2::HomeChecker<picky_log>);

} // namespace

TEST_CASE("recovery refuses, writing nothing, what e2fsck's result cannot be reproduced for") {
    SUBCASE("a home block past the end of the filesystem, even in a revoked tag") {
        hand_journal h({});
        h.descriptor({10, 11}, 0x40);
        h.commit();
        h.descriptor({12, 600}, 0x50); // 600: past the 512-block device
        h.revoke({600});
        h.commit();
        const std::vector<unsigned char> before = h.mem;
        jbd2::recovery_info info;
        CHECK(h.recover(info) == errc::not_supported);
        CHECK(info.refused == jbd2::sb_problem::home_refused);
        CHECK(info.refused_block == 600);
        CHECK(h.mem == before);
    }
    SUBCASE("a home block inside the journal") {
        hand_journal h({});
        h.descriptor({10, hand_journal::jstart + 40}, 0x40);
        h.commit();
        const std::vector<unsigned char> before = h.mem;
        jbd2::recovery_info info;
        CHECK(h.recover(info) == errc::not_supported);
        CHECK(info.refused == jbd2::sb_problem::home_refused);
        CHECK(info.refused_block == hand_journal::jstart + 40);
        CHECK(h.mem == before);
    }
    SUBCASE("a home block the device's check_home() refuses") {
        hand_journal h({});
        h.descriptor({10, 11, 12}, 0x40);
        h.commit();
        const std::vector<unsigned char> before = h.mem;
        picky_log picky(h.dev, &h.ext, 1);
        picky.no = 11;
        std::vector<unsigned char> a(h.bs), b(h.bs);
        std::vector<jbd2::revoke_entry> slots(64);
        jbd2::recovery_info info;
        CHECK(jbd2::recover(picky, {a.data(), b.data(), slots.data(), slots.size()}, info) == errc::not_supported);
        CHECK(info.refused == jbd2::sb_problem::home_refused);
        CHECK(info.refused_block == 11);
        CHECK(h.mem == before);
    }
    SUBCASE("more revoked blocks than the revoke table holds") {
        hand_journal h({});
        h.descriptor({10}, 0x40);
        h.revoke({20, 21, 22, 23, 24, 25, 26, 27, 28, 29});
        h.commit();
        const std::vector<unsigned char> before = h.mem;
        jbd2::recovery_info info;
        CHECK(h.recover(info, 8) == errc::not_supported);
        CHECK(info.refused == jbd2::sb_problem::revoke_table_full);
        CHECK(h.mem == before);
    }
    SUBCASE("a log that runs round the whole journal") {
        // No checksums: a descriptor whose 62 tags cover the rest of the
        // 63-block log area points back at itself, with the same tid.
        hand_journal h({false, false, false, 1});
        std::vector<std::uint64_t> homes;
        for (std::uint64_t i = 0; i < 62; ++i) homes.push_back(100 + i);
        h.descriptor(homes, 0x40);
        CHECK(h.next == 1); // wrapped round to the descriptor
        const std::vector<unsigned char> before = h.mem;
        jbd2::recovery_info info;
        CHECK(h.recover(info) == errc::not_supported);
        CHECK(info.refused == jbd2::sb_problem::log_runs_round);
        CHECK(h.mem == before);
    }
}

TEST_CASE("recovery: a failed commit is recorded only when the replay succeeds; async commit goes on") {
    SUBCASE("a bad data block, then a bad commit: not clean, no s_errno, s_sequence kept") {
        hand_journal h({});
        h.descriptor({10, 11}, 0x40, 1); // 11's logged copy damaged
        h.commit();
        h.descriptor({12}, 0x50);
        h.commit(false);
        jbd2::recovery_info info;
        CHECK(h.recover(info) == errc::bad_checksum);
        CHECK(info.replayed == 1);
        CHECK(info.bad_blocks == 1);
        CHECK(h.home_byte(10) == 0x40);
        CHECK(h.home_byte(11) == 0);
        CHECK(h.home_byte(12) == 0);
        CHECK(info.failed_commit == 0);
        CHECK(h.jsb().s_errno.get() == 0);
        CHECK(h.jsb().s_start.get() == 0);
        CHECK(h.jsb().s_sequence.get() == h.first_tid);
    }
    SUBCASE("a bad commit alone: recorded in s_errno") {
        hand_journal h({});
        h.descriptor({10}, 0x40);
        h.commit();
        h.descriptor({12}, 0x50);
        h.commit(false);
        jbd2::recovery_info info;
        CHECK(h.recover(info) == errc::ok);
        CHECK(info.transactions == 1);
        CHECK(info.failed_commit == h.first_tid + 1);
        CHECK(h.jsb().s_errno.get() == static_cast<std::uint32_t>(-22));
        CHECK(h.jsb().s_sequence.get() == h.first_tid + 2); // one past the end of the log
    }
    SUBCASE("async commit, csum v3: replay ends before the last failed commit, no s_errno") {
        hand_journal h({}, jbd2::incompat_async_commit);
        h.descriptor({10}, 0x10);
        h.commit();
        h.descriptor({11}, 0x20);
        h.commit(false); // replayed all the same: a later commit fails too
        h.descriptor({12}, 0x30);
        h.commit();
        h.descriptor({13}, 0x40);
        h.commit(false); // the end
        h.descriptor({14}, 0x50);
        h.commit();
        jbd2::recovery_info info;
        CHECK(h.recover(info) == errc::ok);
        CHECK(info.transactions == 3);
        CHECK(h.home_byte(11) == 0x20);
        CHECK(h.home_byte(12) == 0x30);
        CHECK(h.home_byte(13) == 0);
        CHECK(h.home_byte(14) == 0);
        CHECK(info.end_tid == h.first_tid + 3);
        CHECK(info.failed_commit == 0);
        CHECK(h.jsb().s_errno.get() == 0);
    }
    SUBCASE("a bad descriptor checksum: nothing replayed unless its commit is older than the last good one") {
        for (const bool stale : {false, true}) {
            CAPTURE(stale);
            hand_journal h({});
            h.descriptor({10}, 0x10);
            h.commit();
            const std::uint32_t d = h.next;
            h.descriptor({11}, 0x20);
            if (stale) h.time -= 5;
            h.commit();
            std::vector<unsigned char> blk(h.bs);
            REQUIRE(h.log.read_log(d, blk.data()) == errc::ok);
            blk[h.bs - 1] ^= 1;
            REQUIRE(h.log.write_log(d, blk.data()) == errc::ok);
            jbd2::recovery_info info;
            CHECK(h.recover(info) == (stale ? errc::ok : errc::bad_checksum));
            CHECK(h.home_byte(10) == (stale ? 0x10 : 0));
            CHECK(h.home_byte(11) == 0);
            CHECK(h.jsb().s_start.get() == 0);
        }
    }
}
