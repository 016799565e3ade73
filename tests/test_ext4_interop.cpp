// Interop with real ext4 images: jbtree as the jbd2 writer (issue 3).
//
// Checks the harness of ext4_image.hpp on images made by mkfs.ext4 (metadata_csum
// on/off x 4 KiB/1 KiB blocks), then writes one transaction by hand, from the
// jbd2 format, into the image's own journal and checks that e2fsck -fy and
// the kernel (mount -o loop) replay it when it is committed and do not when
// its commit block is missing or (csum v3) fails its checksum; the kernel then
// refuses to mount (EUCLEAN) until e2fsck has run. jbtree's own recovery
// replays the same transactions, as a third opinion.
//
// Then jbtree's journal writer (jbd2::journal over the image file, the
// journal inode's extents as its log, needs_recovery set and cleared through
// its log_state callback) writes the transactions, in the mkfs journal and in
// a journal with the kernel's features (64bit, csum_v3 with metadata_csum):
//  - three committed transactions (a block logged twice: the newest wins; a
//    block beginning with the jbd2 magic: escaped; a freed block: revoked),
//    then a crash: e2fsck -fy, the kernel and jbtree's recover() all replay
//    them, and e2fsck -fn finds the result clean;
//  - one committed transaction and one whose commit block write fails (the
//    journal aborts): only the first is replayed, by all three;
//  - a long run, three journals' worth of log with the writer's own
//    checkpoints, crashed with the live log wrapped around the journal's
//    end: all three replayers end with the newest contents; then, on the
//    journal e2fsck left, another long run and a clean close(): needs_recovery
//    clear, s_start 0, e2fsck -fn clean.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include "ext4_image.hpp"

#include <jbtree/hosted/owned_memory.hpp>
#include <jbtree/journal/jbd2_journal.hpp>
#include <jbtree/journal/jbd2_recovery.hpp>

#include <algorithm>
#include <ctime>
#include <map>
#include <optional>
#include <random>

using namespace jt;
using namespace ext4img;
namespace fs = std::filesystem;

namespace {

bool have_tools() {
    return run_command("command -v mkfs.ext4 && command -v e2fsck").exit_code == 0;
}

// The victim's blocks as they are in the raw image.
std::vector<unsigned char> raw_victim(const fs::path& img, const image_info& info) {
    std::vector<unsigned char> out;
    for (std::uint64_t p : info.victim_blocks) {
        auto b = read_image_blocks(img, info.block_size, p);
        out.insert(out.end(), b.begin(), b.end());
    }
    return out;
}

// Journal features as mkfs left them, or as the kernel leaves them after a
// mount (64bit, plus csum_v3 with metadata_csum); the writer must handle both.
enum class journal_variant { as_made, as_kernel };

const char* describe(journal_variant v) { return v == journal_variant::as_made ? "mkfs journal" : "kernel journal"; }

std::uint32_t kernel_features(const image_info& info) {
    std::uint32_t f = 0;
    if (info.fs_64bit) f |= jbd2::incompat_64bit;
    if (info.metadata_csum) f |= jbd2::incompat_csum_v3;
    return f;
}

// How the hand-built transaction ends.
enum class ending {
    committed,    // a valid commit block: replayed
    uncommitted,  // a zero block where the commit block would be: not replayed
    bad_checksum, // a commit block whose checksum is wrong (csum v2/v3 only): not replayed
};

const char* describe(ending e) {
    switch (e) {
    case ending::committed: return "committed";
    case ending::uncommitted: return "uncommitted";
    case ending::bad_checksum: return "bad commit checksum";
    }
    return "?";
}

// One transaction built by hand into the journal: a descriptor with two
// tags (victim blocks 1 and 2; the new block 2 starts with the jbd2 magic, so
// it is logged escaped), the two data blocks and the commit block (or what
// `end` puts in its place). Sets s_start/s_sequence and needs_recovery, as a
// writer that crashed before checkpointing leaves them.
struct hand_txn {
    std::uint32_t tid = 0;
    std::uint64_t home[2] = {};
    std::vector<unsigned char> contents[2]; // new contents of home[0], home[1]
};

void put_tag(const jbd2::format& f, unsigned char* t, std::uint64_t blk, std::uint16_t flags, std::uint32_t csum) {
    store_be<std::uint32_t>(t, static_cast<std::uint32_t>(blk));
    if (f.csum_v3()) {
        store_be<std::uint32_t>(t + 4, flags);
        store_be<std::uint32_t>(t + 8, static_cast<std::uint32_t>(blk >> 32));
        store_be<std::uint32_t>(t + 12, csum);
    } else {
        if (f.csum_v2()) store_be<std::uint16_t>(t + 4, static_cast<std::uint16_t>(csum));
        store_be<std::uint16_t>(t + 6, flags);
        if (f.has_64bit()) store_be<std::uint32_t>(t + 8, static_cast<std::uint32_t>(blk >> 32));
    }
}

hand_txn write_hand_transaction(const fs::path& img, image_info& info, ending end) {
    hand_txn tx;
    const std::uint32_t bs = info.block_size;
    const jbd2::format f = info.journal.format();
    REQUIRE(info.journal.start == 0);
    REQUIRE(info.victim_blocks.size() >= 3);
    tx.tid = info.journal.sequence;
    const std::uint32_t start = info.journal.first;

    for (int k = 0; k < 2; ++k) {
        tx.home[k] = info.victim_blocks[1 + k];
        tx.contents[k].resize(bs);
        for (std::uint32_t i = 0; i < bs; ++i)
            tx.contents[k][i] = static_cast<unsigned char>(i * 13u + 0xA5u + 0x40u * k + tx.tid);
    }
    store_be<std::uint32_t>(tx.contents[1].data(), jbd2::magic); // needs escaping

    // Logged copies: the escaped block has its magic zeroed.
    std::vector<unsigned char> logged0 = tx.contents[0], logged1 = tx.contents[1];
    std::memset(logged1.data(), 0, 4);

    std::vector<unsigned char> desc(bs, 0), cblk(bs, 0);
    store_be<std::uint32_t>(desc.data(), jbd2::magic);
    store_be<std::uint32_t>(desc.data() + 4, static_cast<std::uint32_t>(jbd2::block_type::descriptor));
    store_be<std::uint32_t>(desc.data() + 8, tx.tid);
    std::size_t off = 12;
    put_tag(f, desc.data() + off, tx.home[0], 0, jbd2::tag_checksum(f, tx.tid, logged0.data()));
    off += f.tag_bytes();
    std::memcpy(desc.data() + off, info.journal.uuid, 16); // first tag: no SAME_UUID, uuid follows
    off += 16;
    put_tag(f, desc.data() + off, tx.home[1], jbd2::tag_escape | jbd2::tag_same_uuid | jbd2::tag_last,
            jbd2::tag_checksum(f, tx.tid, logged1.data()));
    if (f.csum_v2or3()) store_be<std::uint32_t>(desc.data() + bs - 4, jbd2::tail_checksum(f, desc.data()));

    if (end != ending::uncommitted) {
        timespec now{};
        clock_gettime(CLOCK_REALTIME, &now);
        store_be<std::uint32_t>(cblk.data(), jbd2::magic);
        store_be<std::uint32_t>(cblk.data() + 4, static_cast<std::uint32_t>(jbd2::block_type::commit));
        store_be<std::uint32_t>(cblk.data() + 8, tx.tid);
        store_be<std::uint64_t>(cblk.data() + jbd2::commit_sec_offset, static_cast<std::uint64_t>(now.tv_sec));
        store_be<std::uint32_t>(cblk.data() + jbd2::commit_nsec_offset, static_cast<std::uint32_t>(now.tv_nsec));
        if (f.csum_v2or3())
            store_be<std::uint32_t>(cblk.data() + jbd2::commit_chksum_offset, jbd2::commit_checksum(f, cblk.data()));
        if (end == ending::bad_checksum) cblk[jbd2::commit_chksum_offset + 3] ^= 1;
    }

    // In a writer's order: needs_recovery, journal superblock, body, flush, commit, flush.
    REQUIRE(set_needs_recovery(img, true));
    std::vector<unsigned char> jsb;
    REQUIRE(read_journal_sb(img, info, jsb));
    auto* s = reinterpret_cast<jbd2::superblock*>(jsb.data());
    s->s_start.set(start);
    s->s_sequence.set(tx.tid);
    REQUIRE(write_journal_sb(img, info, jsb));

    auto dev = open_image_device(img, bs);
    REQUIRE(dev.ok());
    const unsigned char* body[3] = {desc.data(), logged0.data(), logged1.data()};
    for (std::uint32_t i = 0; i < 3; ++i)
        REQUIRE(dev->write_blocks(info.journal_physical(start + i), 1, body[i]) == errc::ok);
    REQUIRE(dev->flush() == errc::ok);
    REQUIRE(dev->write_blocks(info.journal_physical(start + 3), 1, cblk.data()) == errc::ok);
    REQUIRE(dev->flush() == errc::ok);
    REQUIRE(dev->close() == errc::ok);
    info.journal = parse_journal_sb(jsb.data());
    return tx;
}

// The victim as it must read after replay (committed) or after a discarded
// transaction (not committed).
std::vector<unsigned char> expected_victim(std::uint32_t bs, const hand_txn& tx, bool replayed) {
    std::vector<unsigned char> v = victim_pattern(bs);
    if (replayed)
        for (int k = 0; k < 2; ++k)
            std::memcpy(v.data() + static_cast<std::size_t>(1 + k) * bs, tx.contents[k].data(), bs);
    return v;
}

// Kernel log lines without their "[   12.345678] " stamps, joined by " | ".
std::string tidy_log(const std::string& log) {
    std::string out;
    std::size_t pos = 0;
    while (pos < log.size()) {
        std::size_t end = log.find('\n', pos);
        if (end == std::string::npos) end = log.size();
        std::string line = log.substr(pos, end - pos);
        if (!line.empty() && line[0] == '[' && line.find("] ") != std::string::npos)
            line = line.substr(line.find("] ") + 2);
        if (!line.empty()) out += (out.empty() ? "" : " | ") + line;
        pos = end + 1;
    }
    return out.empty() ? "(no kernel log)" : out;
}

// The first line of `text` that contains `needle`, or "".
std::string line_with(const std::string& text, const char* needle) {
    const auto at = text.find(needle);
    if (at == std::string::npos) return "";
    const auto bol = text.rfind('\n', at);
    const auto from = bol == std::string::npos ? 0 : bol + 1;
    return text.substr(from, text.find('\n', at) - from);
}

enum class replayer { e2fsck, kernel, jbtree };

const char* describe(replayer r) {
    switch (r) {
    case replayer::e2fsck: return "e2fsck -fy";
    case replayer::kernel: return "kernel mount";
    case replayer::jbtree: return "jbtree recover";
    }
    return "?";
}

// False (after a SKIP message naming the scenario) when `who` is the kernel
// and a loop mount cannot be used here.
bool replayer_available(replayer who, const std::string& label) {
    if (who != replayer::kernel) return true;
    const std::string why = loop_mount_skip_reason();
    if (why.empty()) return true;
    MESSAGE("SKIP: " << label << ": " << why);
    return false;
}

// One scenario on a fresh copy of `base`. Returns false (after a SKIP
// message) when the kernel cannot be used here.
bool run_scenario(const test_image& base, journal_variant jv, ending end, replayer who) {
    const std::string label =
        base.cfg().name() + ", " + describe(jv) + ", " + describe(end) + ", " + describe(who);
    if (!replayer_available(who, label)) return false;
    CAPTURE(label);
    const fs::path img = base.copy(std::string(describe(end)).substr(0, 3) +
                                   (jv == journal_variant::as_made ? "-m-" : "-k-") + describe(who)[0] + ".img");
    REQUIRE(!img.empty());
    image_info info;
    std::string err;
    REQUIRE_MESSAGE(read_image_info(img, info, err), err);
    if (jv == journal_variant::as_kernel)
        REQUIRE_MESSAGE(add_journal_features(img, info, kernel_features(info), err), err);
    if (end == ending::bad_checksum && !info.journal.format().csum_v2or3()) return true; // nothing to check

    const hand_txn tx = write_hand_transaction(img, info, end);
    REQUIRE(needs_recovery(img) == 1);
    REQUIRE(ext4_sb_checksum_ok(img));
    const bool replayed = end == ending::committed;
    const std::vector<unsigned char> want = expected_victim(info.block_size, tx, replayed);

    std::string how;
    if (who == replayer::e2fsck) {
        const fsck_result r = run_e2fsck(img, true);
        CHECK_MESSAGE(r.clean_or_fixed(), r.output);
        how = "e2fsck -fy exit " + std::to_string(r.exit_code);
        image_info now;
        REQUIRE_MESSAGE(read_image_info(img, now, err), err);
        // One past the last tid seen: a replayed transaction's tid + 1, or the
        // tid that was not committed; then + 1, so stale blocks cannot chain.
        CHECK(now.journal.sequence == tx.tid + (replayed ? 2u : 1u));
        if (const std::string l = line_with(r.output, "corrupt"); !l.empty()) how += "; \"" + l + "\"";
    } else if (who == replayer::jbtree) {
        image_log_device log;
        REQUIRE(log.open(img, info));
        std::vector<unsigned char> a(info.block_size), b(info.block_size);
        std::vector<jbd2::revoke_entry> slots(256);
        jbd2::recovery_info ri;
        const errc e = jbd2::recover(log, {a.data(), b.data(), slots.data(), slots.size()}, ri);
        CHECK(e == errc::ok);
        CHECK(ri.refused == jbd2::sb_problem::none);
        CHECK(ri.transactions == (replayed ? 1u : 0u));
        CHECK(ri.replayed == (replayed ? 2u : 0u));
        CHECK(ri.failed_commit == (end == ending::bad_checksum ? tx.tid : 0u));
        CHECK(ri.new_sequence == tx.tid + (replayed ? 2u : 1u)); // as e2fsck leaves it
        how = std::string("jbtree: ") + jbtree::describe(e) + ", " + std::to_string(ri.transactions) +
              " transaction(s), " + std::to_string(ri.replayed) + " block(s), s_sequence -> " +
              std::to_string(ri.new_sequence);
        if (end == ending::bad_checksum) {
            // What to do about the ext4 superblock then is the ext2fs
            // adapter's business (the corpus test does it as e2fsck does);
            // here e2fsck -fy cleans up.
            const fsck_result r = run_e2fsck(img, true);
            CHECK_MESSAGE(r.clean_or_fixed(), r.output);
            how += "; then e2fsck -fy exit " + std::to_string(r.exit_code);
        } else {
            REQUIRE(set_needs_recovery(img, false)); // the ext4 side of a finished replay
        }
    } else {
        std::vector<unsigned char> through_file;
        bool mounted = false, read_ok = false, unmounted = false;
        std::string klog, merr;
        {
            loop_mount m(img); // no REQUIRE while mounted
            mounted = m.ok();
            merr = m.error();
            read_ok = m.read(victim_name, through_file);
            klog = m.kernel_log();
            unmounted = m.unmount();
        }
        CHECK(unmounted);
        how = "kernel: " + tidy_log(klog);
        if (end == ending::bad_checksum && !mounted) {
            // The kernel refuses the fs rather than replaying (or silently
            // dropping) a transaction whose commit block is corrupt.
            how += "; mount refused: " + merr;
            const fsck_result r = run_e2fsck(img, true);
            CHECK_MESSAGE(r.clean_or_fixed(), r.output);
            how += "; then e2fsck -fy exit " + std::to_string(r.exit_code);
        } else {
            CHECK_MESSAGE(mounted, merr << "\n" << klog);
            CHECK(read_ok);
            CHECK(through_file == want);
        }
    }

    // The raw blocks, the flags and a final read-only check.
    CHECK(raw_victim(img, info) == want);
    CHECK(needs_recovery(img) == 0);
    image_info after;
    REQUIRE_MESSAGE(read_image_info(img, after, err), err);
    CHECK(after.journal.start == 0);
    CHECK(after.journal.errno_ == 0);
    const fsck_result final_check = run_e2fsck(img, false);
    CHECK_MESSAGE(final_check.clean(), final_check.output);
    MESSAGE(label << ": journal " << info.journal.features() << ", tid " << tx.tid << " -> s_sequence "
                  << after.journal.sequence << ", journal after: " << after.journal.features() << "; " << how);
    return true;
}

} // namespace

TEST_CASE("harness: mkfs images, journal map, victim blocks, needs_recovery, e2fsck, loop mount") {
    if (!have_tools()) {
        MESSAGE("SKIP: mkfs.ext4 or e2fsck not installed");
        return;
    }
    for (const config& c : all_configs) {
        CAPTURE(c.name());
        test_image t(c);
        REQUIRE_MESSAGE(t.ok(), t.error());
        image_info info;
        std::string err;
        REQUIRE_MESSAGE(read_image_info(t.path(), info, err), err);

        // fs geometry
        CHECK(info.block_size == c.block_size);
        CHECK(info.metadata_csum == c.metadata_csum);
        CHECK(info.blocks_count * info.block_size == fs::file_size(t.path()));
        CHECK(!info.needs_recovery);

        // journal map: extents cover i_size, lie inside the fs, start with the jbd2 superblock
        REQUIRE(!info.journal_extents.empty());
        CHECK(info.journal_blocks() * info.block_size == info.journal_size);
        for (const extent& e : info.journal_extents) {
            CHECK(e.physical > 0);
            CHECK(e.count > 0);
            CHECK(e.physical + e.count <= info.blocks_count);
        }
        CHECK(info.journal_physical(info.journal_blocks()) == 0);
        CHECK(info.journal_physical(info.journal_blocks() - 1) ==
              info.journal_extents.back().physical + info.journal_extents.back().count - 1);
        std::vector<unsigned char> jb = read_image_blocks(t.path(), info.block_size, info.journal_extents[0].physical);
        REQUIRE(jb.size() == info.block_size);
        CHECK(jb[0] == 0xC0);
        CHECK(jb[1] == 0x3B);
        CHECK(jb[2] == 0x39);
        CHECK(jb[3] == 0x98);
        CHECK(info.journal_magic == jbd2::magic);
        CHECK(info.journal.blocktype == static_cast<std::uint32_t>(jbd2::block_type::superblock_v2));
        CHECK(info.journal.blocksize == info.block_size);
        CHECK(info.journal.maxlen == info.journal_blocks());
        CHECK(info.journal.first == 1);
        CHECK(info.journal.start == 0);
        CHECK(info.journal.nr_users == 1);
        MESSAGE(c.name() << ": " << info.blocks_count << " blocks, journal " << info.journal_blocks() << " blocks in "
                         << info.journal_extents.size() << " extent(s) from " << info.journal_extents[0].physical
                         << ", journal features " << info.journal.features() << ", s_sequence "
                         << info.journal.sequence << ", victim blocks " << info.victim_blocks.front() << "..");

        // victim: mkfs -d copied it, its blocks are inside the fs, outside the journal
        REQUIRE(info.victim_blocks.size() == victim_blocks);
        CHECK(info.victim_size == std::uint64_t{victim_blocks} * info.block_size);
        for (std::uint64_t p : info.victim_blocks) {
            CHECK(p < info.blocks_count);
            for (const extent& e : info.journal_extents) CHECK(!(p >= e.physical && p < e.physical + e.count));
        }
        CHECK(raw_victim(t.path(), info) == victim_pattern(info.block_size));

        // BlockDevice over the image
        {
            auto dev = open_image_device(t.path(), info.block_size);
            REQUIRE(dev.ok());
            CHECK(dev->block_size() == info.block_size);
            CHECK(dev->block_count() == info.blocks_count);
            std::vector<unsigned char> b(info.block_size);
            REQUIRE(dev->read_blocks(info.victim_blocks[0], 1, b.data()) == errc::ok);
            CHECK(std::equal(b.begin(), b.end(), victim_pattern(info.block_size).begin()));
            CHECK(dev->read_blocks(info.blocks_count, 1, b.data()) == errc::range);
            CHECK(dev->write_blocks(info.blocks_count - 1, 2, b.data()) == errc::range);
        }

        // needs_recovery: set and clear keep the superblock checksum right
        const fs::path a = t.copy("toggle.img");
        REQUIRE(!a.empty());
        REQUIRE(set_needs_recovery(a, true));
        CHECK(needs_recovery(a) == 1);
        CHECK(ext4_sb_checksum_ok(a));
        REQUIRE(set_needs_recovery(a, false));
        CHECK(needs_recovery(a) == 0);
        CHECK(ext4_sb_checksum_ok(a));
        {
            const fsck_result r = run_e2fsck(a, false);
            CHECK_MESSAGE(r.clean(), r.output);
            CHECK(fs::file_size(a) == fs::file_size(t.path()));
        }
        // set with an empty journal: e2fsck -fy accepts it and clears the flag
        REQUIRE(set_needs_recovery(a, true));
        {
            const fsck_result n = run_e2fsck(a, false);
            const fsck_result r = run_e2fsck(a, true);
            CHECK_MESSAGE(r.clean_or_fixed(), r.output);
            CHECK(needs_recovery(a) == 0);
            const fsck_result f = run_e2fsck(a, false);
            CHECK_MESSAGE(f.clean(), f.output);
            MESSAGE(c.name() << ": needs_recovery on an empty journal: e2fsck -fn exit " << n.exit_code
                             << ", e2fsck -fy exit " << r.exit_code << "\n-fn said: " << n.output);
        }
        // a journal upgraded as the kernel does (64bit, csum_v3) is accepted by e2fsck
        {
            const fs::path k = t.copy("upgraded.img");
            REQUIRE(!k.empty());
            image_info ki;
            REQUIRE(read_image_info(k, ki, err));
            REQUIRE_MESSAGE(add_journal_features(k, ki, kernel_features(ki), err), err);
            image_info again;
            REQUIRE(read_image_info(k, again, err));
            CHECK(again.journal.incompat == kernel_features(ki));
            if (again.journal.csum_v3()) {
                CHECK(again.journal.checksum_type == jbd2::checksum_type_crc32c);
                std::vector<unsigned char> jsb;
                REQUIRE(read_journal_sb(k, again, jsb));
                CHECK(load_be<std::uint32_t>(jsb.data() + 0xFC) == jbd2::superblock_checksum(jsb.data()));
            }
            const fsck_result r = run_e2fsck(k, false);
            CHECK_MESSAGE(r.clean(), r.output);
        }

        // loop mount: the kernel sees the victim file as mkfs -d wrote it
        const std::string why = loop_mount_skip_reason();
        if (!why.empty()) {
            MESSAGE("SKIP: loop mount: " << why);
            continue;
        }
        const fs::path m = t.copy("mount.img");
        REQUIRE(!m.empty());
        std::vector<unsigned char> got;
        bool read_ok = false;
        {
            loop_mount mnt(m); // no REQUIRE while mounted
            CHECK_MESSAGE(mnt.ok(), mnt.error());
            read_ok = mnt.read(victim_name, got);
            CHECK(mnt.unmount());
        }
        CHECK(read_ok);
        CHECK(got == victim_pattern(info.block_size));
        const fsck_result r = run_e2fsck(m, false);
        CHECK_MESSAGE(r.clean(), r.output);
        image_info after;
        REQUIRE(read_image_info(m, after, err));
        MESSAGE(c.name() << ": after a kernel mount/umount: journal features " << after.journal.features()
                         << ", s_sequence " << after.journal.sequence);
    }
}

TEST_CASE("hand-built transaction in the image's journal: e2fsck -fy replays it if committed, else not") {
    if (!have_tools()) {
        MESSAGE("SKIP: mkfs.ext4 or e2fsck not installed");
        return;
    }
    for (const config& c : all_configs) {
        test_image t(c);
        REQUIRE_MESSAGE(t.ok(), t.error());
        for (journal_variant jv : {journal_variant::as_made, journal_variant::as_kernel})
            for (ending e : {ending::committed, ending::uncommitted, ending::bad_checksum})
                run_scenario(t, jv, e, replayer::e2fsck);
    }
}

TEST_CASE("hand-built transaction in the image's journal: jbtree's recovery agrees") {
    if (!have_tools()) {
        MESSAGE("SKIP: mkfs.ext4 or e2fsck not installed");
        return;
    }
    for (const config& c : all_configs) {
        test_image t(c);
        REQUIRE_MESSAGE(t.ok(), t.error());
        for (journal_variant jv : {journal_variant::as_made, journal_variant::as_kernel})
            for (ending e : {ending::committed, ending::uncommitted, ending::bad_checksum})
                run_scenario(t, jv, e, replayer::jbtree);
    }
}

TEST_CASE("hand-built transaction in the image's journal: the kernel replays it if committed, else not") {
    if (!have_tools()) {
        MESSAGE("SKIP: mkfs.ext4 or e2fsck not installed");
        return;
    }
    for (const config& c : all_configs) {
        test_image t(c);
        REQUIRE_MESSAGE(t.ok(), t.error());
        for (journal_variant jv : {journal_variant::as_made, journal_variant::as_kernel})
            for (ending e : {ending::committed, ending::uncommitted, ending::bad_checksum})
                if (!run_scenario(t, jv, e, replayer::kernel)) return; // SKIP printed
    }
}

// ============================================================================
// jbtree as the writer (issue 3): jbd2::journal writes the transactions into
// the image's own journal, through the image file, and sets needs_recovery
// through its log_state callback; a crash is the journal object (and the
// device) going away without close().

namespace {

// The image file under the journal, with a write budget: after
// fail_writes_after(n), n more blocks are written, then every write and
// flush fails with errc::io (a write that crosses the limit writes the blocks
// before it first): a disk that dies in the middle of a commit.
// flush_to_disk(false) makes flush() succeed without fdatasync: the crashes
// here lose nothing that was written (the process survives them), so the
// long runs skip thousands of disk flushes, which only cost time.
class budget_device {
public:
    explicit budget_device(hosted::file_device& d) noexcept : d_(&d) {}

    std::uint32_t block_size() const noexcept { return d_->block_size(); }
    std::uint64_t block_count() const noexcept { return d_->block_count(); }
    errc read_blocks(std::uint64_t blk, std::uint32_t n, unsigned char* out) noexcept {
        return d_->read_blocks(blk, n, out);
    }
    errc write_blocks(std::uint64_t blk, std::uint32_t n, const unsigned char* in) noexcept {
        if (dead_) return errc::io;
        if (limited_ && n > budget_) {
            const auto k = static_cast<std::uint32_t>(budget_);
            if (k) JBTREE_TRY(d_->write_blocks(blk, k, in));
            written_ += k;
            budget_ = 0;
            dead_ = true;
            return errc::io;
        }
        JBTREE_TRY(d_->write_blocks(blk, n, in));
        if (limited_) budget_ -= n;
        written_ += n;
        return errc::ok;
    }
    errc flush() noexcept {
        if (dead_) return errc::io;
        ++flushes_;
        return to_disk_ ? d_->flush() : errc::ok;
    }

    void fail_writes_after(std::uint64_t n) noexcept {
        limited_ = true;
        budget_ = n;
    }
    void flush_to_disk(bool on) noexcept { to_disk_ = on; }
    bool dead() const noexcept { return dead_; }
    std::uint64_t blocks_written() const noexcept { return written_; }
    std::uint64_t flushes() const noexcept { return flushes_; }

private:
    hosted::file_device* d_;
    bool limited_ = false;
    bool dead_ = false;
    bool to_disk_ = true;
    std::uint64_t budget_ = 0;
    std::uint64_t written_ = 0;
    std::uint64_t flushes_ = 0;
};
static_assert(BlockDevice<budget_device>);

using image_journal = jbd2::journal<budget_device>;

using image_recover_flag = recover_flag<budget_device>; // ext4_image.hpp

std::uint64_t realtime_ns(void*) noexcept {
    timespec t{};
    clock_gettime(CLOCK_REALTIME, &t);
    return static_cast<std::uint64_t>(t.tv_sec) * 1000000000u + static_cast<std::uint64_t>(t.tv_nsec);
}

hosted::journal_sizes writer_sizes(std::uint32_t bs) {
    hosted::journal_sizes z;
    z.block_size = bs;
    z.max_transaction_blocks = 64;
    z.cache_blocks = 256; // >= max_transaction_blocks + 64
    z.committed_capacity = 256;
    z.staging_blocks = 16;
    z.revoke_capacity = 4096;
    return z;
}

// jbtree's journal writer over an image's own journal: the image file as the
// device (block size = fs block size), the journal inode's extents as the
// log. Destroying it without close() is a crash.
class image_writer {
public:
    image_writer(const fs::path& img, const image_info& info) : dev_(file_), mem_(writer_sizes(info.block_size)) {
        auto f = open_image_device(img, info.block_size);
        if (!f) {
            error_ = std::string("cannot open the image: ") + jbtree::describe(f.error());
            return;
        }
        file_ = std::move(f.value());
        for (const extent& e : info.journal_extents)
            ext_.push_back({e.physical, static_cast<std::uint32_t>(e.count)});
        flag_.dev = &dev_;
        flag_.buf.resize(info.block_size);
        j_.emplace(dev_, ext_.data(), static_cast<std::uint32_t>(ext_.size()), mem_.journal());
        jbd2::journal_options o;
        o.clock_ns = &realtime_ns;
        o.log_state = &image_recover_flag::update;
        o.log_state_ctx = &flag_;
        jbd2::sb_problem why = jbd2::sb_problem::none;
        if (const errc e = j_->open(o, &why); e != errc::ok)
            error_ = std::string("journal open: ") + jbtree::describe(e) + " (" + jbd2::describe(why) + ")";
    }
    image_writer(const image_writer&) = delete;
    image_writer& operator=(const image_writer&) = delete;

    bool ok() const noexcept { return error_.empty(); }
    const std::string& error() const noexcept { return error_; }
    image_journal& j() noexcept { return *j_; }
    budget_device& dev() noexcept { return dev_; }
    const image_recover_flag& flag() const noexcept { return flag_; }

private:
    hosted::file_device file_;
    budget_device dev_;
    std::vector<jbd2::log_extent> ext_;
    hosted::owned_memory mem_;
    image_recover_flag flag_;
    std::string error_;
    std::optional<image_journal> j_; // last: goes first
};

struct block_change {
    std::uint64_t blk = 0;
    std::vector<unsigned char> data;
};

// One transaction through the Journal API: a handle with one credit per
// change; read, get_write_access, new bytes, dirty_metadata for each change;
// forget for each freed block; stop; commit. Returns what commit() said.
errc write_transaction(image_journal& j, const std::vector<block_change>& changes,
                       const std::vector<std::uint64_t>& freed = {}) {
    auto h = j.start(static_cast<std::uint32_t>(changes.empty() ? 1 : changes.size()));
    REQUIRE_MESSAGE(h.ok(), jbtree::describe(h.error()));
    for (const block_change& c : changes) {
        auto b = j.read(c.blk);
        REQUIRE_MESSAGE(b.ok(), jbtree::describe(b.error()));
        REQUIRE(j.get_write_access(*h, *b) == errc::ok);
        std::memcpy(b->data(), c.data.data(), c.data.size());
        REQUIRE(j.dirty_metadata(*h, *b) == errc::ok);
    }
    for (const std::uint64_t blk : freed) REQUIRE(j.forget(*h, blk) == errc::ok);
    REQUIRE(j.stop(*h) == errc::ok);
    return j.commit();
}

// New contents for a block: pseudo-random bytes from `seed`; with
// magic_first they begin with the jbd2 magic (logged escaped), otherwise
// never.
std::vector<unsigned char> new_contents(std::uint32_t bs, std::uint64_t seed, bool magic_first = false) {
    std::vector<unsigned char> v(bs);
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    for (std::uint32_t i = 0; i < bs; i += 8) {
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 32;
        store_le<std::uint64_t>(v.data() + i, x);
    }
    if (magic_first) store_be<std::uint32_t>(v.data(), jbd2::magic);
    else if (load_be<std::uint32_t>(v.data()) == jbd2::magic) v[0] ^= 1;
    return v;
}

// The journal blocks [from, from + n) as words: "D5" / "R5" / "C5" a
// descriptor / revoke / commit block of tid 5, "S" a superblock, "d" any
// other block (a logged copy), "." a zero block.
std::string log_picture(const fs::path& img, const image_info& info, std::uint32_t from, std::uint32_t n) {
    std::string s;
    for (std::uint32_t j = from; j < from + n; ++j) {
        const std::vector<unsigned char> b = read_image_blocks(img, info.block_size, info.journal_physical(j));
        std::string w;
        if (b.size() != info.block_size) {
            w = "?";
        } else if (load_be<std::uint32_t>(b.data()) == jbd2::magic) {
            const std::uint32_t type = load_be<std::uint32_t>(b.data() + 4);
            const char* t = type == 1 ? "D" : type == 2 ? "C" : type == 5 ? "R" : (type == 3 || type == 4) ? "S" : "?";
            w = std::string(t) + std::to_string(load_be<std::uint32_t>(b.data() + 8));
        } else {
            w = std::all_of(b.begin(), b.end(), [](unsigned char c) { return c == 0; }) ? "." : "d";
        }
        s += (s.empty() ? "" : " ") + w;
    }
    return s;
}

// The first kernel log line that sounds like a complaint, or "".
std::string kernel_complaint(const std::string& log) {
    for (const char* w : {"corrupt", "nvalid", "rror", "checksum", "failed", "arning", "bad ", "Bad "})
        if (const std::string l = line_with(log, w); !l.empty()) return l;
    return "";
}

// The raw contents of some blocks of an image.
using block_map = std::map<std::uint64_t, std::vector<unsigned char>>;

block_map read_blocks(const fs::path& img, std::uint32_t bs, const block_map& which) {
    block_map out;
    for (const auto& [blk, _] : which) out[blk] = read_image_blocks(img, bs, blk);
    return out;
}

// Physical blocks whose contents differ from `want`, as a list for messages.
std::string mismatches(const fs::path& img, std::uint32_t bs, const block_map& want) {
    std::string s;
    for (const auto& [blk, data] : want)
        if (read_image_blocks(img, bs, blk) != data) s += (s.empty() ? "" : " ") + std::to_string(blk);
    return s.empty() ? "none" : s;
}

// How the short scenario ends.
enum class writer_end {
    committed,   // T1, T2, T3 committed
    uncommitted, // T1 committed; T2's descriptor and data written, its commit block write failed
};

const char* describe(writer_end e) { return e == writer_end::committed ? "T1-T3 committed" : "T2 uncommitted"; }

struct short_run {
    std::uint32_t tid0 = 0;    // T1's tid
    std::uint32_t end_tid = 0; // first tid a replay must not replay
    block_map before;          // the blocks touched, as they were
    block_map want;            // and as a replay must leave them
    std::string picture;       // the log from s_first, after the crash
    std::string expected_picture;
    jbd2::journal_stats stats;
    std::string journal_features;      // the journal superblock's features after the crash
};

// The short scenario, written by jbtree into `img`, then a crash:
//   T1: victim blocks 0 and 1, and a free scratch block F
//   T2: victim block 1 again (the newest must win) and block 2
//   T3: victim block 3, new contents beginning with the jbd2 magic
//       (escaped in the log), and F freed (a revoke record: replay must not
//       write T1's copy of F)
// With writer_end::uncommitted, T2's commit block write fails (the device
// dies after T2's descriptor and data blocks) and the journal aborts.
short_run write_short_run(const fs::path& img, const image_info& info, writer_end end) {
    short_run r;
    const std::uint32_t bs = info.block_size;
    REQUIRE(info.victim_blocks.size() == victim_blocks);
    std::vector<std::uint64_t> scratch;
    std::string err;
    REQUIRE_MESSAGE(find_free_blocks(img, 1, scratch, err), err);
    const std::uint64_t v0 = info.victim_blocks[0], v1 = info.victim_blocks[1], v2 = info.victim_blocks[2],
                        v3 = info.victim_blocks[3], f = scratch[0];
    for (std::uint64_t b : {v0, v1, v2, v3, f}) r.before[b] = read_image_blocks(img, bs, b);

    const auto a0 = new_contents(bs, 100), a1 = new_contents(bs, 101), af = new_contents(bs, 102);
    const auto b1 = new_contents(bs, 201), b2 = new_contents(bs, 202);
    const auto c3 = new_contents(bs, 303, true);
    {
        image_writer w(img, info);
        REQUIRE_MESSAGE(w.ok(), w.error());
        r.tid0 = w.j().next_tid();
        CHECK(r.tid0 == info.journal.sequence);
        CHECK(w.flag().sets == 0);
        REQUIRE(write_transaction(w.j(), {{v0, a0}, {v1, a1}, {f, af}}) == errc::ok);
        CHECK(w.flag().sets == 1);
        CHECK(needs_recovery(img) == 1);
        CHECK(ext4_sb_checksum_ok(img));
        if (end == writer_end::committed) {
            REQUIRE(write_transaction(w.j(), {{v1, b1}, {v2, b2}}) == errc::ok);
            REQUIRE(write_transaction(w.j(), {{v3, c3}}, {f}) == errc::ok);
            CHECK(w.j().stats().commits == 3);
            CHECK(w.j().stats().escaped == 1);
            CHECK(w.j().stats().revoke_records == 1);
            r.end_tid = r.tid0 + 3;
        } else {
            // Descriptor and two data blocks reach the disk; the commit block does not.
            w.dev().fail_writes_after(3);
            CHECK(write_transaction(w.j(), {{v1, b1}, {v2, b2}}) == errc::io);
            CHECK(w.dev().dead());
            CHECK(w.j().aborted());
            CHECK(w.j().commit() == errc::io);
            CHECK(w.j().stats().commits == 1);
            r.end_tid = r.tid0 + 1;
        }
        CHECK(w.j().stats().checkpoints == 0);
        CHECK(w.j().stats().home_writes == 0);
        CHECK(w.flag().clears == 0);
        r.stats = w.j().stats();
    } // crash: no close()

    // Nothing went home yet (no steal, no checkpoint); the flag says replay.
    CHECK(read_blocks(img, bs, r.before) == r.before);
    CHECK(needs_recovery(img) == 1);
    CHECK(ext4_sb_checksum_ok(img));
    image_info now;
    REQUIRE_MESSAGE(read_image_info(img, now, err), err);
    CHECK(now.journal.start == info.journal.first);
    CHECK(now.journal.sequence == r.tid0);
    CHECK(now.journal.incompat == (info.journal.incompat | jbd2::incompat_revoke));
    CHECK(now.journal.compat == info.journal.compat);
    CHECK(now.journal.maxlen == info.journal.maxlen);
    if (now.journal.csum_v2() || now.journal.csum_v3()) {
        std::vector<unsigned char> jsb;
        REQUIRE(read_journal_sb(img, now, jsb));
        CHECK(load_be<std::uint32_t>(jsb.data() + 0xFC) == jbd2::superblock_checksum(jsb.data()));
    }
    r.journal_features = now.journal.features();

    const std::uint32_t t = r.tid0;
    auto w = [](const char* kind, std::uint32_t tid) { return std::string(kind) + std::to_string(tid); };
    if (end == writer_end::committed) {
        r.expected_picture = w("D", t) + " d d d " + w("C", t) + " " + w("D", t + 1) + " d d " + w("C", t + 1) + " " +
                             w("R", t + 2) + " " + w("D", t + 2) + " d " + w("C", t + 2) + " .";
        r.picture = log_picture(img, info, info.journal.first, 14);
        r.want = {{v0, a0}, {v1, b1}, {v2, b2}, {v3, c3}, {f, r.before[f]}};
    } else {
        r.expected_picture = w("D", t) + " d d d " + w("C", t) + " " + w("D", t + 1) + " d d .";
        r.picture = log_picture(img, info, info.journal.first, 9);
        r.want = {{v0, a0}, {v1, a1}, {v2, r.before[v2]}, {v3, r.before[v3]}, {f, af}};
    }
    CHECK(r.picture == r.expected_picture);
    return r;
}

// The victim file's contents a replay must leave.
std::vector<unsigned char> victim_from(const image_info& info, const block_map& want) {
    std::vector<unsigned char> v;
    for (std::uint64_t p : info.victim_blocks) {
        const auto it = want.find(p);
        REQUIRE(it != want.end());
        v.insert(v.end(), it->second.begin(), it->second.end());
    }
    return v;
}

// After a replay by anyone: the blocks, the flags, the journal superblock
// and a read-only e2fsck.
void check_replayed(const fs::path& img, const block_map& want, std::string& how) {
    image_info after;
    std::string err;
    REQUIRE_MESSAGE(read_image_info(img, after, err), err);
    CHECK_MESSAGE(read_blocks(img, after.block_size, want) == want,
                  "blocks that differ: " << mismatches(img, after.block_size, want));
    CHECK(needs_recovery(img) == 0);
    CHECK(ext4_sb_checksum_ok(img));
    CHECK(after.journal.start == 0);
    CHECK(after.journal.errno_ == 0);
    const fsck_result final_check = run_e2fsck(img, false);
    CHECK_MESSAGE(final_check.clean(), final_check.output);
    how += "; then s_sequence " + std::to_string(after.journal.sequence) + ", journal " + after.journal.features() +
           ", e2fsck -fn exit " + std::to_string(final_check.exit_code);
}

// Replay with jbtree's recover() (and the ext4 side: clear needs_recovery).
jbd2::recovery_info jbtree_replay(const fs::path& img, const image_info& info, errc& e) {
    image_log_device log;
    REQUIRE(log.open(img, info));
    hosted::owned_memory m(writer_sizes(info.block_size));
    jbd2::recovery_info ri;
    e = jbd2::recover(log, m.recovery(info.block_size), ri);
    if (e == errc::ok) REQUIRE(set_needs_recovery(img, false));
    return ri;
}

// Mount, read the victim file, unmount (no REQUIRE while mounted).
struct kernel_read {
    bool mounted = false, read_ok = false, unmounted = false;
    std::vector<unsigned char> victim;
    std::string error, log;
};

kernel_read mount_and_read(const fs::path& img) {
    kernel_read k;
    loop_mount m(img);
    k.mounted = m.ok();
    k.error = m.error();
    k.read_ok = m.read(victim_name, k.victim);
    k.log = m.kernel_log();
    k.unmounted = m.unmount();
    return k;
}

// One short scenario on a fresh copy of `base`. False (after a SKIP message)
// when the kernel cannot be used here.
bool run_writer_scenario(const test_image& base, journal_variant jv, writer_end end, replayer who) {
    const std::string label = base.cfg().name() + ", " + describe(jv) + ", jbtree wrote " + describe(end) + ", " +
                              describe(who);
    if (!replayer_available(who, label)) return false;
    CAPTURE(label);
    const fs::path img = base.copy(std::string("w-") + (end == writer_end::committed ? "c-" : "u-") +
                                   (jv == journal_variant::as_made ? "m-" : "k-") + describe(who)[0] + ".img");
    REQUIRE(!img.empty());
    image_info info;
    std::string err;
    REQUIRE_MESSAGE(read_image_info(img, info, err), err);
    if (jv == journal_variant::as_kernel)
        REQUIRE_MESSAGE(add_journal_features(img, info, kernel_features(info), err), err);

    const short_run run = write_short_run(img, info, end);
    const std::uint32_t transactions = run.end_tid - run.tid0;
    std::string how;
    if (who == replayer::e2fsck) {
        const fsck_result r = run_e2fsck(img, true);
        CHECK_MESSAGE(r.exit_code == 0, r.output); // a replay alone is no error to fix
        how = "e2fsck -fy exit " + std::to_string(r.exit_code);
        image_info now;
        REQUIRE_MESSAGE(read_image_info(img, now, err), err);
        CHECK(now.journal.sequence == run.end_tid + 1);
    } else if (who == replayer::jbtree) {
        errc e = errc::ok;
        const jbd2::recovery_info ri = jbtree_replay(img, info, e);
        CHECK(e == errc::ok);
        CHECK(ri.refused == jbd2::sb_problem::none);
        CHECK(ri.start_tid == run.tid0);
        CHECK(ri.end_tid == run.end_tid);
        CHECK(ri.transactions == transactions);
        CHECK(ri.failed_commit == 0);
        CHECK(ri.bad_blocks == 0);
        CHECK(ri.new_sequence == run.end_tid + 1);
        if (end == writer_end::committed) {
            CHECK(ri.replayed == 5); // T1: v0 v1 (F revoked), T2: v1 v2, T3: v3
            CHECK(ri.revoke_records == 1);
            CHECK(ri.revoke_hits == 1);
        } else {
            CHECK(ri.replayed == 3);
            CHECK(ri.revoke_records == 0);
        }
        how = std::string("jbtree: ") + jbtree::describe(e) + ", " + std::to_string(ri.transactions) +
              " transaction(s), " + std::to_string(ri.replayed) + " block(s), " + std::to_string(ri.revoke_hits) +
              " revoked";
    } else {
        const kernel_read k = mount_and_read(img);
        CHECK(k.unmounted);
        CHECK_MESSAGE(k.mounted, k.error << "\n" << k.log);
        CHECK(k.read_ok);
        CHECK(k.victim == victim_from(info, run.want));
        const std::string complaint = kernel_complaint(k.log);
        CHECK_MESSAGE(complaint.empty(), complaint);
        how = "kernel: " + tidy_log(k.log);
    }
    check_replayed(img, run.want, how);

    if (who == replayer::jbtree) {
        // The journal jbtree recovered takes a new session: one more
        // transaction, then a clean close().
        image_info now;
        REQUIRE_MESSAGE(read_image_info(img, now, err), err);
        block_map want = run.want;
        const std::uint64_t v0 = info.victim_blocks[0];
        want[v0] = new_contents(info.block_size, 400);
        {
            image_writer w(img, now);
            REQUIRE_MESSAGE(w.ok(), w.error());
            CHECK(w.j().next_tid() == run.end_tid + 1);
            REQUIRE(write_transaction(w.j(), {{v0, want[v0]}}) == errc::ok);
            CHECK(needs_recovery(img) == 1);
            REQUIRE(w.j().close() == errc::ok);
            CHECK(w.flag().sets == 1);
            CHECK(w.flag().clears == 1);
        }
        how += "; a new jbtree session and close()";
        check_replayed(img, want, how);
    }
    MESSAGE(label << ": journal " << info.journal.features() << " -> " << run.journal_features
                  << ", tids " << run.tid0 << ".." << run.end_tid - 1 << ", log: " << run.picture << "; " << how);
    return true;
}

} // namespace

namespace {

// Every mkfs configuration x journal as made / as the kernel leaves it x
// committed / uncommitted end, replayed by `who`. False when the replayer
// is unavailable (SKIP printed by run_writer_scenario).
bool all_writer_scenarios(replayer who) {
    if (!have_tools()) {
        MESSAGE("SKIP: mkfs.ext4 or e2fsck not installed");
        return false;
    }
    for (const config& c : all_configs) {
        test_image t(c);
        REQUIRE_MESSAGE(t.ok(), t.error());
        for (journal_variant jv : {journal_variant::as_made, journal_variant::as_kernel})
            for (writer_end e : {writer_end::committed, writer_end::uncommitted})
                if (!run_writer_scenario(t, jv, e, who)) return false;
    }
    return true;
}

} // namespace

TEST_CASE("jbtree writes the transactions: e2fsck -fy replays the committed ones, the newest copy wins") {
    (void)all_writer_scenarios(replayer::e2fsck);
}

TEST_CASE("jbtree writes the transactions: jbtree's recovery agrees, and the journal is usable again") {
    (void)all_writer_scenarios(replayer::jbtree);
}

TEST_CASE("jbtree writes the transactions: the kernel replays the committed ones") {
    (void)all_writer_scenarios(replayer::kernel);
}

namespace {

// A long run of jbtree transactions over the victim's blocks and free
// scratch blocks. `hot` (the first hot_count blocks, the victim's among them)
// change often and are nearly always logged again before a checkpoint
// reaches them; the cold rest change now and then, so checkpoints do write
// them home. Each transaction changes 2..20 hot and 0..1 cold blocks (now
// and then with contents that begin with the jbd2 magic) and may free a
// scratch block it does not change (a revoke record). The run goes on until
// the writer has written at least min_log_blocks log blocks and checkpointed
// by itself at least once and, with end_wrapped, until the live part of the
// log (from the tail in the journal superblock, log_used() blocks) runs
// across the end of the journal, so that a replay must wrap too.
struct long_run {
    block_map want;                 // newest contents of the blocks changed
    std::vector<std::uint64_t> freed; // blocks freed since their last change: no replay may touch them
    std::uint64_t transactions = 0;
    std::uint32_t first_tid = 0, next_tid = 0;
    std::uint32_t tail = 0, used = 0; // the live log at the end
    jbd2::journal_stats stats;

    // Freed blocks must hold whatever the writer left at home.
    void settle_freed(const fs::path& img, std::uint32_t bs) {
        for (std::uint64_t b : freed) want[b] = read_image_blocks(img, bs, b);
    }
};

long_run write_long_run(image_writer& w, const image_info& info, const std::vector<std::uint64_t>& blocks,
                        std::size_t first_scratch, std::size_t hot_count, std::uint64_t min_log_blocks, bool end_wrapped,
                        std::uint32_t seed) {
    long_run r;
    const std::uint32_t bs = info.block_size;
    std::mt19937 rng(seed);
    std::vector<unsigned char> jsb(bs);
    r.first_tid = w.j().next_tid();
    for (;;) {
        const jbd2::journal_stats& st = w.j().stats();
        if (st.log_blocks >= min_log_blocks && st.checkpoints >= 1) {
            REQUIRE(w.j().area().read_log(0, jsb.data()) == errc::ok);
            r.tail = load_be<std::uint32_t>(jsb.data() + 0x1C);
            r.used = w.j().log_used();
            if (!end_wrapped || r.tail + r.used > info.journal.maxlen) break;
        }
        REQUIRE(r.transactions < 20000);

        auto pick = [&](std::size_t from, std::size_t to, std::size_t n) {
            std::vector<std::size_t> p;
            for (std::size_t i = from; i < to; ++i) p.push_back(i);
            std::shuffle(p.begin(), p.end(), rng);
            p.resize(n);
            return p;
        };
        std::vector<std::size_t> chosen = pick(0, hot_count, 2 + rng() % 19);
        for (std::size_t i : pick(hot_count, blocks.size(), rng() % 2)) chosen.push_back(i);
        std::vector<block_change> changes;
        for (std::size_t i : chosen)
            changes.push_back({blocks[i],
                               new_contents(bs, (std::uint64_t{seed} << 40) ^ (r.transactions << 20) ^ blocks[i],
                                            rng() % 5 == 0)});
        std::vector<std::uint64_t> freed;
        if (rng() % 4 == 0) {
            const std::size_t i = first_scratch + rng() % (blocks.size() - first_scratch);
            if (std::find(chosen.begin(), chosen.end(), i) == chosen.end()) freed.push_back(blocks[i]);
        }
        REQUIRE(write_transaction(w.j(), changes, freed) == errc::ok);
        ++r.transactions;
        for (const block_change& c : changes) {
            r.want[c.blk] = c.data;
            r.freed.erase(std::remove(r.freed.begin(), r.freed.end(), c.blk), r.freed.end());
        }
        for (std::uint64_t b : freed) {
            r.want.erase(b);
            if (std::find(r.freed.begin(), r.freed.end(), b) == r.freed.end()) r.freed.push_back(b);
        }
    }
    r.next_tid = w.j().next_tid();
    r.stats = w.j().stats();
    return r;
}

std::string describe(const long_run& r, const image_info& info) {
    return std::to_string(r.transactions) + " transactions (tids " + std::to_string(r.first_tid) + ".." +
           std::to_string(r.next_tid - 1) + "), " + std::to_string(r.stats.log_blocks) + " log blocks in a " +
           std::to_string(info.journal.maxlen) + "-block journal, " + std::to_string(r.stats.logged_blocks) +
           " logged copies (" + std::to_string(r.stats.escaped) + " escaped), " +
           std::to_string(r.stats.revoke_records) + " revoke records, " + std::to_string(r.stats.checkpoints) +
           " checkpoints, " + std::to_string(r.stats.home_writes) + " home writes; live log " +
           std::to_string(r.used) + " blocks from " + std::to_string(r.tail);
}

} // namespace

TEST_CASE("jbtree writes a long run that wraps the log and checkpoints: crash and replay; then close() cleanly") {
    if (!have_tools()) {
        MESSAGE("SKIP: mkfs.ext4 or e2fsck not installed");
        return;
    }
    const std::string no_kernel = loop_mount_skip_reason();
    if (!no_kernel.empty()) MESSAGE("SKIP: the kernel's replay of the long run: " << no_kernel);
    for (const config& c : all_configs) {
        test_image t(c);
        REQUIRE_MESSAGE(t.ok(), t.error());
        for (journal_variant jv : {journal_variant::as_made, journal_variant::as_kernel}) {
            const std::string label = c.name() + ", " + describe(jv) + ", long run";
            CAPTURE(label);
            const fs::path img = t.copy(std::string("long-") + (jv == journal_variant::as_made ? "m" : "k") + ".img");
            REQUIRE(!img.empty());
            image_info info;
            std::string err;
            REQUIRE_MESSAGE(read_image_info(img, info, err), err);
            if (jv == journal_variant::as_kernel)
                REQUIRE_MESSAGE(add_journal_features(img, info, kernel_features(info), err), err);
            std::vector<std::uint64_t> blocks = info.victim_blocks, scratch;
            REQUIRE_MESSAGE(find_free_blocks(img, 56, scratch, err), err);
            blocks.insert(blocks.end(), scratch.begin(), scratch.end());
            const std::uint32_t bs = info.block_size;

            // 1. Three journals' worth of log, then a crash with the live log wrapped.
            long_run run;
            {
                image_writer w(img, info);
                REQUIRE_MESSAGE(w.ok(), w.error());
                w.dev().flush_to_disk(false);
                run = write_long_run(w, info, blocks, victim_blocks, 24, 3ull * info.journal.maxlen, true, 1);
            }
            run.settle_freed(img, bs);
            CHECK(needs_recovery(img) == 1);
            CHECK(run.stats.checkpoints >= 2);
            CHECK(run.stats.escaped > 0);
            CHECK(run.stats.revoke_records > 0);
            CHECK(run.stats.home_writes > 0);
            image_info crashed;
            REQUIRE_MESSAGE(read_image_info(img, crashed, err), err);
            CHECK(crashed.journal.start == run.tail);
            const std::uint32_t live_tid = crashed.journal.sequence;
            std::string how = describe(run, info) + " (s_sequence " + std::to_string(live_tid) + ")";

            const fs::path img_j = t.copy("long-jbtree.img"), img_k = t.copy("long-kernel.img");
            REQUIRE(!img_j.empty());
            REQUIRE(!img_k.empty());
            std::error_code ec;
            fs::copy_file(img, img_j, fs::copy_options::overwrite_existing, ec);
            REQUIRE(!ec);
            fs::copy_file(img, img_k, fs::copy_options::overwrite_existing, ec);
            REQUIRE(!ec);

            {
                const fsck_result r = run_e2fsck(img, true);
                CHECK_MESSAGE(r.exit_code == 0, r.output);
                image_info now;
                REQUIRE_MESSAGE(read_image_info(img, now, err), err);
                CHECK(now.journal.sequence == run.next_tid + 1);
                how += "\n  e2fsck -fy exit " + std::to_string(r.exit_code);
                check_replayed(img, run.want, how);
            }
            {
                errc e = errc::ok;
                const jbd2::recovery_info ri = jbtree_replay(img_j, info, e);
                CHECK(e == errc::ok);
                CHECK(ri.start_tid == live_tid);
                CHECK(ri.end_tid == run.next_tid);
                CHECK(ri.new_sequence == run.next_tid + 1);
                CHECK(ri.bad_blocks == 0);
                how += "\n  jbtree: " + std::string(jbtree::describe(e)) + ", " + std::to_string(ri.transactions) +
                       " transactions, " + std::to_string(ri.replayed) + " blocks, " +
                       std::to_string(ri.revoke_records) + " revoke records, " + std::to_string(ri.revoke_hits) +
                       " revoked copies skipped";
                check_replayed(img_j, run.want, how);
            }
            if (no_kernel.empty()) {
                const kernel_read k = mount_and_read(img_k);
                CHECK(k.unmounted);
                CHECK_MESSAGE(k.mounted, k.error << "\n" << k.log);
                CHECK(k.read_ok);
                CHECK(k.victim == victim_from(info, run.want));
                const std::string complaint = kernel_complaint(k.log);
                CHECK_MESSAGE(complaint.empty(), complaint);
                how += "\n  kernel: " + tidy_log(k.log);
                check_replayed(img_k, run.want, how);
            }

            // 2. On the journal e2fsck left: another long run, then close().
            image_info again;
            REQUIRE_MESSAGE(read_image_info(img, again, err), err);
            long_run run2;
            std::uint64_t close_home_writes = 0;
            {
                image_writer w(img, again);
                REQUIRE_MESSAGE(w.ok(), w.error());
                w.dev().flush_to_disk(false);
                CHECK(w.j().next_tid() == again.journal.sequence);
                run2 = write_long_run(w, again, blocks, victim_blocks, 24, 2ull * again.journal.maxlen, false, 2);
                run2.settle_freed(img, bs); // close() must not write them either
                CHECK(needs_recovery(img) == 1);
                const std::uint64_t checkpoints = w.j().stats().checkpoints;
                const std::uint64_t home_writes = w.j().stats().home_writes;
                REQUIRE(w.j().close() == errc::ok);
                CHECK(w.j().stats().checkpoints == checkpoints + 1);
                close_home_writes = w.j().stats().home_writes - home_writes;
                CHECK(w.flag().sets == 1);
                CHECK(w.flag().clears == 1);
            }
            block_map want = run.want; // blocks run 2 did not touch keep run 1's contents
            for (const auto& [b, data] : run2.want) want[b] = data;
            how += "\n  then " + describe(run2, again) + "; close() wrote " + std::to_string(close_home_writes) +
                   " blocks home";
            check_replayed(img, want, how); // nothing to replay: needs_recovery clear, s_start 0, e2fsck -fn clean
            MESSAGE(label << ": " << how);
        }
    }
}
