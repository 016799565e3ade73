// Interop with real ext4 images, groundwork for "jbtree as writer" (issue 3).
//
// Checks the harness of ext4_image.hpp on images made by mkfs.ext4 (metadata_csum
// on/off x 4 KiB/1 KiB blocks), then writes one transaction by hand, from the
// jbd2 format, into the image's own journal and checks that e2fsck -fy and
// the kernel (mount -o loop) replay it when it is committed and do not when
// its commit block is missing or (csum v3) fails its checksum; the kernel then
// refuses to mount (EUCLEAN) until e2fsck has run. jbtree's own recovery
// replays the same transactions, as a third opinion. The jbd2 writer will
// later take the place of the hand-built transaction.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include "ext4_image.hpp"

#include <jbtree/journal/jbd2_recovery.hpp>

#include <ctime>

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

// One scenario on a fresh copy of `base`. Returns false (after a SKIP
// message) when the kernel cannot be used here.
bool run_scenario(const test_image& base, journal_variant jv, ending end, replayer who) {
    const std::string label =
        base.cfg().name() + ", " + describe(jv) + ", " + describe(end) + ", " + describe(who);
    if (who == replayer::kernel) {
        const std::string why = loop_mount_skip_reason();
        if (!why.empty()) {
            MESSAGE("SKIP: " << label << ": " << why);
            return false;
        }
    }
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
