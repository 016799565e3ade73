// Damaged journals (issue 17): `jbtree-e2fs replay` must give the image
// `e2fsck -E journal_only -y` gives, byte for byte (but the superblock's
// write time, lifetime kbytes counter and checksum), or refuse and leave the
// image untouched.
//
// A campaign with a fixed seed: base images whose journals jbtree's own
// jbd2 writer fills with six transactions (two descriptors in one, escaped
// blocks, revokes, a block logged again later), in every checksum flavour
// e2fsck knows (csum v3 64-bit with 1 and 4 KiB blocks, csum v3 with async
// commit, csum v2 32-bit, no checksum, v1 COMPAT_CHECKSUM, v1 with async
// commit; and a csum v3 journal the kernel aborted, s_errno set), crashed
// before checkpoint; and the journals of ../shared/corpus/jbd2. Each
// variant flips one to three bytes of the live log: first the damage each
// rule of docs/journal.md needs (systematic_flips), then at random in
// descriptor, data, revoke or commit blocks (half the flips in the bytes
// that carry meaning: tags, header, r_count and records, commit checksum
// and time). Both replayers run on a copy each; the counts of matches and
// refusals are printed, and a mismatch fails the test.
//
// $JBTREE_DAMAGE_VARIANTS and $JBTREE_DAMAGE_CORPUS_VARIANTS set the random
// variants per base, $JBTREE_DAMAGE_ONLY picks bases by name, $JBTREE_E2FS
// replaces the tool under test.
//
// Why not `e2fsck -f`: with -f, -E journal_only goes on to a full check
// after the replay (check_if_skip returns before looking at journal_only),
// which is not what `replay` is meant to equal.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include "ext4_image.hpp"

#include <jbtree/hosted/owned_memory.hpp>
#include <jbtree/journal/jbd2_journal.hpp>
#include <jbtree/journal/jbd2_recovery.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <random>
#include <sstream>

using namespace jt;
using namespace ext4img;
namespace fs = std::filesystem;

namespace {

// The tool under test ($JBTREE_E2FS overrides it, e.g. to try another build).
const std::string tool = [] {
    const char* t = std::getenv("JBTREE_E2FS");
    return std::string(t && *t ? t : JBTREE_E2FS_TOOL);
}();

// A whole file, read in one go (istreambuf_iterator is slow under ASan).
bool slurp(const fs::path& p, std::vector<unsigned char>& out) {
    std::error_code ec;
    const auto n = fs::file_size(p, ec);
    if (ec) return false;
    out.resize(n);
    return pread_file(p, 0, out.size(), out.data());
}

// ---------------------------------------------------------------- writing the base journals

// Commit times: a fixed, strictly increasing clock (one second and a bit
// per commit), so that a flip in a commit time is judged the same way on
// every run.
std::uint64_t fake_clock_ns(void* ctx) noexcept {
    auto* t = static_cast<std::uint64_t*>(ctx);
    *t += 1'000'000'123ull;
    return *t;
}

using file_recover_flag = recover_flag<hosted::file_device>; // ext4_image.hpp

// Pseudo-random block contents; with magic_first they begin with the jbd2
// magic (logged escaped).
std::vector<unsigned char> contents(std::uint32_t bs, std::mt19937_64& rng, bool magic_first = false) {
    std::vector<unsigned char> v(bs);
    for (std::uint32_t i = 0; i < bs; i += 8) store_le<std::uint64_t>(v.data() + i, rng());
    if (magic_first) store_be<std::uint32_t>(v.data(), jbd2::magic);
    else if (load_be<std::uint32_t>(v.data()) == jbd2::magic) v[0] ^= 1;
    return v;
}

// Six transactions through jbtree's writer over the image's own journal,
// then a crash (the writer is dropped without close()).
bool write_transactions(const fs::path& img, const image_info& info, std::uint64_t seed, std::string& err) {
    std::vector<std::uint64_t> free_blocks;
    if (!find_free_blocks(img, 160, free_blocks, err)) return false;
    auto f = open_image_device(img, info.block_size);
    if (!f) {
        err = std::string("cannot open the image: ") + jbtree::describe(f.error());
        return false;
    }
    hosted::file_device file = std::move(f.value());
    std::vector<jbd2::log_extent> ext;
    for (const extent& e : info.journal_extents) ext.push_back({e.physical, static_cast<std::uint32_t>(e.count)});
    hosted::journal_sizes z;
    z.block_size = info.block_size;
    z.max_transaction_blocks = 200;
    z.cache_blocks = 400;
    z.committed_capacity = 64;
    z.staging_blocks = 16;
    z.revoke_capacity = 1024;
    hosted::owned_memory mem(z);
    file_recover_flag flag{&file, std::vector<unsigned char>(info.block_size)};
    std::uint64_t clock = 1'700'000'000'000'000'000ull;
    std::optional<jbd2::journal<hosted::file_device>> j;
    j.emplace(file, ext.data(), static_cast<std::uint32_t>(ext.size()), mem.journal());
    jbd2::journal_options o;
    o.clock_ns = &fake_clock_ns;
    o.clock_ctx = &clock;
    o.log_state = &file_recover_flag::update;
    o.log_state_ctx = &flag;
    jbd2::sb_problem why = jbd2::sb_problem::none;
    if (const errc e = j->open(o, &why); e != errc::ok) {
        err = std::string("journal open: ") + jbtree::describe(e) + " (" + jbd2::describe(why) + ")";
        return false;
    }
    std::mt19937_64 rng(seed);
    auto tx = [&](std::size_t from, std::size_t n, std::vector<std::uint64_t> freed, std::size_t magic_at) {
        auto h = j->start(static_cast<std::uint32_t>(n + 1));
        REQUIRE(h.ok());
        for (std::size_t i = 0; i < n; ++i) {
            auto b = j->read(free_blocks[from + i]);
            REQUIRE(b.ok());
            REQUIRE(j->get_write_access(*h, *b) == errc::ok);
            const auto v = contents(info.block_size, rng, i == magic_at);
            std::memcpy(b->data(), v.data(), v.size());
            REQUIRE(j->dirty_metadata(*h, *b) == errc::ok);
        }
        for (std::uint64_t blk : freed) REQUIRE(j->forget(*h, blk) == errc::ok);
        REQUIRE(j->stop(*h) == errc::ok);
        REQUIRE(j->commit() == errc::ok);
    };
    const std::size_t none = ~std::size_t{0};
    tx(0, 6, {}, 2);                      // T1: six blocks, one escaped
    tx(6, 4, {free_blocks[1]}, none);     // T2: four blocks and a revoke of a T1 block
    tx(10, 90, {}, 40);                   // T3: ninety blocks: two or more descriptors
    tx(0, 3, {}, none);                   // T4: T1's first blocks again
    tx(100, 5, {free_blocks[12]}, 0);     // T5: a revoke of a T3 block, an escaped block
    tx(105, 2, {free_blocks[0]}, none);   // T6: a revoke of a block T1 and T4 logged
    j.reset();                            // crash: nothing checkpointed
    return true;
}

// ---------------------------------------------------------------- the log as written

enum class kind : std::uint8_t { descriptor, data, revoke, commit };
const char* describe(kind k) {
    switch (k) {
    case kind::descriptor: return "descriptor";
    case kind::data: return "data";
    case kind::revoke: return "revoke";
    case kind::commit: return "commit";
    }
    return "?";
}

struct log_block {
    std::uint32_t j = 0;   // journal block
    kind k = kind::data;
    std::uint32_t hot = 0; // bytes [0, hot) carry meaning (tags, records, header, checksums)
};

// Walks the undamaged log from s_start and lists its blocks.
std::vector<log_block> read_log(const fs::path& img, const image_info& info) {
    std::vector<log_block> out;
    std::vector<unsigned char> sbb;
    REQUIRE(read_journal_sb(img, info, sbb));
    const journal_sb_info js = parse_journal_sb(sbb.data());
    const jbd2::format f = js.format();
    const std::uint32_t bs = info.block_size;
    std::uint32_t blk = js.start, tid = js.sequence;
    auto next = [&](std::uint32_t b) { return b + 1 >= js.maxlen ? js.first : b + 1; };
    for (std::uint32_t guard = 0; guard < js.maxlen; ++guard) {
        auto b = read_image_blocks(img, bs, info.journal_physical(blk));
        REQUIRE(b.size() == bs);
        if (load_be<std::uint32_t>(b.data()) != jbd2::magic || load_be<std::uint32_t>(b.data() + 8) != tid) break;
        const std::uint32_t type = load_be<std::uint32_t>(b.data() + 4);
        if (type == 1) {
            const std::uint32_t end = bs - f.tail_bytes(), tb = f.tag_bytes();
            std::uint32_t off = 12, n = 0;
            while (off + tb <= end) {
                const std::uint16_t flags = load_be<std::uint16_t>(b.data() + off + 6);
                ++n;
                off += tb + ((flags & jbd2::tag_same_uuid) ? 0 : 16);
                if (flags & jbd2::tag_last) break;
            }
            out.push_back({blk, kind::descriptor, off});
            for (std::uint32_t i = 0; i < n; ++i) {
                blk = next(blk);
                out.push_back({blk, kind::data, bs});
            }
        } else if (type == 2) {
            out.push_back({blk, kind::commit, 0x3C});
            ++tid;
        } else if (type == 5) {
            out.push_back({blk, kind::revoke, load_be<std::uint32_t>(b.data() + 12)});
        } else {
            break;
        }
        blk = next(blk);
    }
    return out;
}

// v1 checksums (COMPAT_CHECKSUM) put on a journal written without any: the
// crc32_be of each transaction's descriptors and data blocks, in its commit
// block (type 1, size 4).
void make_v1(const fs::path& img, const image_info& info, const std::vector<log_block>& log) {
    const std::uint32_t bs = info.block_size;
    std::uint32_t crc = ~0u;
    for (const log_block& lb : log) {
        auto b = read_image_blocks(img, bs, info.journal_physical(lb.j));
        if (lb.k == kind::descriptor || lb.k == kind::data) {
            crc = jbd2::crc32_be(crc, b.data(), bs);
        } else if (lb.k == kind::commit) {
            b[jbd2::commit_chksum_type_offset] = 1;
            b[jbd2::commit_chksum_size_offset] = 4;
            store_be<std::uint32_t>(b.data() + jbd2::commit_chksum_offset, crc);
            REQUIRE(pwrite_file(img, info.journal_physical(lb.j) * bs, bs, b.data()));
            crc = ~0u;
        }
    }
}

// Sets journal features in a journal that holds transactions.
void set_journal_features(const fs::path& img, const image_info& info, std::uint32_t compat, std::uint32_t incompat) {
    std::vector<unsigned char> blk;
    REQUIRE(read_journal_sb(img, info, blk));
    auto* s = reinterpret_cast<jbd2::superblock*>(blk.data());
    s->s_feature_compat.set(s->s_feature_compat.get() | compat);
    s->s_feature_incompat.set(s->s_feature_incompat.get() | incompat);
    REQUIRE(write_journal_sb(img, info, blk));
}

struct base_journal {
    std::string name;
    fs::path img;
    image_info info;
    std::vector<log_block> log;
    std::vector<unsigned char> bytes; // the whole image
};

enum class flavour { v3, v3_async, v2_32bit, none, v1, v1_async, v3_4k, v3_aborted };

const char* describe(flavour f) {
    switch (f) {
    case flavour::v3: return "csum v3, 64bit";
    case flavour::v3_async: return "csum v3, 64bit, async commit";
    case flavour::v2_32bit: return "csum v2, 32-bit tags";
    case flavour::none: return "no checksum";
    case flavour::v1: return "v1 (compat checksum)";
    case flavour::v1_async: return "v1 (compat checksum), async commit";
    case flavour::v3_4k: return "csum v3, 64bit, 4 KiB blocks";
    case flavour::v3_aborted: return "csum v3, 64bit, aborted (s_errno set)";
    }
    return "?";
}

bool make_base(const fs::path& dir, flavour fl, std::uint64_t seed, base_journal& out) {
    const bool v3 = fl == flavour::v3 || fl == flavour::v3_async || fl == flavour::v3_4k || fl == flavour::v3_aborted;
    const bool csum = v3 || fl == flavour::v2_32bit;
    const config cfg{fl == flavour::v3_4k ? 4096u : 1024u, csum};
    // A fixed uuid (it seeds every journal checksum) and hash seed: the same
    // images on every run.
    // 4 MiB of 1 KiB blocks, 8 MiB of 4 KiB blocks: a 1024-block journal each (mke2fs's default for these sizes).
    test_image made(cfg, cfg.block_size == 1024 ? 4u << 20 : 8u << 20, "-U 6a9e1c2d-5b3f-4e70-9d81-2c4b6a8f0e13 -E hash_seed=0c9b7e1a-3d5f-4a26-8e04-71b2c3d4e5f6");
    if (!made.ok()) {
        MESSAGE("SKIP: " << made.error());
        return false;
    }
    out.name = describe(fl);
    out.img = dir / ("base-" + std::to_string(static_cast<int>(fl)) + ".img");
    fs::copy_file(made.path(), out.img, fs::copy_options::overwrite_existing);
    std::string err;
    REQUIRE_MESSAGE(read_image_info(out.img, out.info, err), err);
    std::uint32_t incompat = 0;
    if (v3)
        incompat = jbd2::incompat_64bit | jbd2::incompat_csum_v3;
    else if (fl == flavour::v2_32bit)
        incompat = jbd2::incompat_csum_v2;
    if (incompat) REQUIRE_MESSAGE(add_journal_features(out.img, out.info, incompat, err), err);
    REQUIRE_MESSAGE(write_transactions(out.img, out.info, seed, err), err);
    REQUIRE_MESSAGE(read_image_info(out.img, out.info, err), err);
    out.log = read_log(out.img, out.info);
    if (fl == flavour::v1 || fl == flavour::v1_async) {
        make_v1(out.img, out.info, out.log);
        set_journal_features(out.img, out.info, jbd2::compat_checksum, 0);
    }
    if (fl == flavour::v1_async || fl == flavour::v3_async)
        set_journal_features(out.img, out.info, 0, jbd2::incompat_async_commit);
    if (fl == flavour::v3_aborted) { // as the kernel leaves a journal it aborted: s_errno = -EIO
        std::vector<unsigned char> blk;
        REQUIRE(read_journal_sb(out.img, out.info, blk));
        reinterpret_cast<jbd2::superblock*>(blk.data())->s_errno.set(static_cast<std::uint32_t>(-5));
        REQUIRE(write_journal_sb(out.img, out.info, blk));
    }
    REQUIRE_MESSAGE(read_image_info(out.img, out.info, err), err);
    REQUIRE(slurp(out.img, out.bytes));
    return true;
}

// A journal of ../shared/corpus/jbd2 (e2fsprogs' own test images, some
// damaged already) as a base. False if its journal superblock is unusable.
bool corpus_base(const fs::path& dir, const fs::path& gz, base_journal& out) {
    out.name = gz.filename().string();
    out.img = dir / (out.name + ".img");
    if (run_command("gzip -dc " + shell_quote(gz.string()) + " > " + shell_quote(out.img.string())).exit_code != 0)
        return false;
    std::string err;
    if (!read_image_info(out.img, out.info, err) || out.info.journal_magic != jbd2::magic) return false;
    out.log = read_log(out.img, out.info);
    return !out.log.empty() && slurp(out.img, out.bytes);
}

// ---------------------------------------------------------------- one variant

// The ext4 superblock fields e2fsck and libext2fs stamp from their own run:
// s_wtime, s_wtime_hi, s_kbytes_written, and s_checksum over them.
void mask_stamps(std::vector<unsigned char>& img) {
    auto zero = [&](std::size_t off, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) img[ext4_sb_offset + off + i] = 0;
    };
    zero(0x30, 4);  // s_wtime
    zero(0x274, 1); // s_wtime_hi
    zero(0x178, 8); // s_kbytes_written
    zero(0x3FC, 4); // s_checksum
}

struct flip {
    std::uint32_t j = 0; // journal block
    kind k = kind::data;
    std::uint32_t off = 0;
    unsigned char mask = 0;
};

std::string describe(const std::vector<flip>& flips) {
    std::ostringstream s;
    for (const flip& f : flips)
        s << (s.tellp() ? ", " : "") << describe(f.k) << " block " << f.j << " byte " << f.off << " ^0x" << std::hex
          << int(f.mask) << std::dec;
    return s.str();
}

enum class outcome { match, refused, mismatch };

struct tally {
    int variants = 0, match = 0, refused = 0, mismatch = 0;
    // What e2fsck made of the damage (from its messages).
    int clean = 0;       // replayed without a word about damage
    int bad_commit = 0;  // "transaction N was corrupt": a commit block failed
    int bad_crc = 0;     // "Journal checksum error": a descriptor/revoke (nothing replayed) or data block (skipped)
    int other = 0;       // another error (corrupt journal, bad revoke count, ...)

    void add(const tally& t) {
        variants += t.variants, match += t.match, refused += t.refused, mismatch += t.mismatch;
        clean += t.clean, bad_commit += t.bad_commit, bad_crc += t.bad_crc, other += t.other;
    }
    void classify(const std::string& e2fsck_output) {
        if (e2fsck_output.find("Journal checksum error") != std::string::npos) ++bad_crc;
        else if (e2fsck_output.find("was corrupt") != std::string::npos) ++bad_commit;
        else if (e2fsck_output.find("while recovering journal") != std::string::npos ||
                 e2fsck_output.find("Journal corrupted") != std::string::npos)
            ++other;
        else ++clean;
    }
    std::string e2fsck_said() const {
        return std::to_string(clean) + " replayed without complaint, " + std::to_string(bad_commit) +
               " with a corrupt commit, " + std::to_string(bad_crc) + " with a checksum error, " +
               std::to_string(other) + " with another error";
    }
};

outcome run_variant(const fs::path& dir, const base_journal& base, const std::vector<flip>& flips, std::string& why,
                    tally* tally_ = nullptr) {
    std::vector<unsigned char> damaged = base.bytes;
    const std::uint32_t bs = base.info.block_size;
    for (const flip& f : flips) damaged[base.info.journal_physical(f.j) * bs + f.off] ^= f.mask;
    const fs::path theirs = dir / "e2fsck.img", ours = dir / "jbtree.img";
    REQUIRE(write_file(theirs, damaged));
    REQUIRE(write_file(ours, damaged));
    const command_result e = run_command("e2fsck -E journal_only -y " + shell_quote(theirs.string()));
    const command_result t = run_command(shell_quote(tool) + " replay " + shell_quote(ours.string()));
    if (tally_) tally_->classify(e.output);
    // Sizes first: e2fsck writes a logged block whose home lies past the
    // end of the filesystem into the image file, growing it (sparsely, up
    // to terabytes): never read such a file whole.
    const std::uintmax_t size_x = fs::file_size(theirs), size_y = fs::file_size(ours);
    std::vector<unsigned char> x, y;
    if (size_y == damaged.size()) REQUIRE(slurp(ours, y));
    if (y == damaged && t.exit_code != 0) {
        why = t.output;
        return outcome::refused;
    }
    if (size_x == size_y && size_x == damaged.size()) {
        REQUIRE(slurp(theirs, x));
        mask_stamps(x);
        mask_stamps(y);
        if (x == y) return outcome::match;
    }
    std::ostringstream s;
    s << "e2fsck exit " << e.exit_code << ": " << e.output << "\njbtree-e2fs exit " << t.exit_code << ": " << t.output
      << "\nsizes " << size_x << " / " << size_y << "; blocks that differ:";
    int shown = 0;
    for (std::size_t b = 0; b * bs < std::min(x.size(), y.size()) && shown < 12; ++b)
        if (!std::equal(x.begin() + b * bs, x.begin() + (b + 1) * bs, y.begin() + b * bs)) {
            s << ' ' << b;
            ++shown;
        }
    why = s.str();
    return outcome::mismatch;
}

// The damage every rule of docs/journal.md ("Damaged journals") needs, as
// byte flips of chosen blocks of a log of several transactions: each commit
// block's checksum (v1: its crc32), each commit time made older, each
// descriptor's and revoke block's checksum tail, a descriptor checksum with
// the same transaction's commit time made older (stale) or not, two commit
// blocks (async commit: the later failure wins), a data block and a later
// commit block, a revoke block's count.
std::vector<std::vector<flip>> systematic_flips(const base_journal& base) {
    struct txn {
        std::vector<const log_block*> descriptors, data, revokes;
        const log_block* commit = nullptr;
    };
    std::vector<txn> txs(1);
    for (const log_block& lb : base.log) {
        txn& t = txs.back();
        if (lb.k == kind::descriptor) t.descriptors.push_back(&lb);
        else if (lb.k == kind::data) t.data.push_back(&lb);
        else if (lb.k == kind::revoke) t.revokes.push_back(&lb);
        else {
            t.commit = &lb;
            txs.emplace_back();
        }
    }
    txs.pop_back(); // the blocks after the last commit (none: every transaction was committed)
    const std::uint32_t bs = base.info.block_size;
    auto at = [](const log_block* lb, std::uint32_t off, unsigned char mask) { return flip{lb->j, lb->k, off, mask}; };
    // Commit seconds are be64 at 0x30; 0x34 is the high byte of their low 32 bits (0x65 for 2023): ^0x40 makes
    // the commit older than every other one, ^0x10 newer.
    const std::uint32_t time_byte = static_cast<std::uint32_t>(jbd2::commit_sec_offset) + 4;
    std::vector<std::vector<flip>> out;
    for (const txn& t : txs) {
        out.push_back({at(t.commit, jbd2::commit_chksum_offset + 3, 0x01)});
        out.push_back({at(t.commit, time_byte, 0x40)});
        for (const log_block* d : t.descriptors) {
            out.push_back({at(d, bs - 1, 0x20)});
            out.push_back({at(d, bs - 1, 0x20), at(t.commit, time_byte, 0x40)});
            out.push_back({at(d, bs - 1, 0x20), at(t.commit, time_byte, 0x10)});
        }
        for (const log_block* r : t.revokes) {
            out.push_back({at(r, bs - 1, 0x20)});
            out.push_back({at(r, bs - 1, 0x20), at(t.commit, time_byte, 0x40)});
            out.push_back({at(r, 14, 0x10)}); // r_count: far past the block (v2/v3: also its checksum)
            out.push_back({at(r, 15, 0x08)}); // r_count: one record more or less
        }
    }
    for (std::size_t a = 0; a < txs.size(); ++a)
        for (std::size_t b = a + 1; b < txs.size(); b += 2) {
            out.push_back({at(txs[a].commit, jbd2::commit_chksum_offset + 3, 0x01),
                           at(txs[b].commit, jbd2::commit_chksum_offset + 3, 0x01)});
            if (!txs[a].data.empty())
                out.push_back({at(txs[a].data[txs[a].data.size() / 2], bs / 2, 0x04),
                               at(txs[b].commit, jbd2::commit_chksum_offset + 3, 0x01)});
        }
    return out;
}

// Flips `variants` damaged copies of `base` at random, after the
// systematic ones (if asked), and replays each both ways.
tally campaign(const fs::path& dir, const base_journal& base, int variants, bool systematic, std::mt19937_64& rng) {
    CAPTURE(base.name);
    tally t;
    std::vector<std::vector<const log_block*>> by_kind(4);
    for (const log_block& lb : base.log) by_kind[static_cast<int>(lb.k)].push_back(&lb);
    const std::vector<std::vector<flip>> chosen = systematic ? systematic_flips(base) : std::vector<std::vector<flip>>{};
    std::string why;
    for (int v = 0; v < static_cast<int>(chosen.size()) + variants; ++v) {
        std::vector<flip> flips;
        if (v < static_cast<int>(chosen.size())) {
            flips = chosen[static_cast<std::size_t>(v)];
        } else {
            // One flip, or (one variant in five) two or three anywhere in the log.
            flips.resize(rng() % 5 == 0 ? 2 + rng() % 2 : 1);
            for (flip& f : flips) {
                int k;
                do k = static_cast<int>(rng() % 4);
                while (by_kind[k].empty());
                const log_block& lb = *by_kind[k][rng() % by_kind[k].size()];
                const bool hot = lb.hot && rng() % 2 == 0;
                f.j = lb.j;
                f.k = lb.k;
                f.off = static_cast<std::uint32_t>(rng() % (hot ? std::min(lb.hot, base.info.block_size) : base.info.block_size));
                f.mask = static_cast<unsigned char>(1 + rng() % 255);
            }
        }
        const outcome o = run_variant(dir, base, flips, why, &t);
        ++t.variants;
        if (o == outcome::match) ++t.match;
        else if (o == outcome::refused) ++t.refused;
        else ++t.mismatch;
        CHECK_MESSAGE(o != outcome::mismatch, base.name << ", variant " << v << " (" << describe(flips) << "):\n" << why);
    }
    MESSAGE(base.name << ": " << base.log.size() << " log blocks; " << t.variants << " variants: " << t.match
                      << " identical to e2fsck, " << t.refused << " refused untouched, " << t.mismatch
                      << " mismatches; e2fsck: " << t.e2fsck_said());
    return t;
}

int env_int(const char* name, int dflt) {
    const char* v = std::getenv(name);
    return v && *v ? std::atoi(v) : dflt;
}

} // namespace

TEST_CASE("damaged journals: jbtree-e2fs replay equals e2fsck -E journal_only or refuses untouched (fixed-seed campaign)") {
    if (run_command("e2fsck -V && mkfs.ext4 -V").exit_code != 0) {
        MESSAGE("SKIP: e2fsck or mkfs.ext4 not installed");
        return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    // Two replays of a small image per variant, each ending in an fsync:
    // in memory (/dev/shm) unless $TMPDIR says where.
    if (!std::getenv("TMPDIR") && ::access("/dev/shm", W_OK) == 0) ::setenv("TMPDIR", "/dev/shm", 1);
    temp_dir tmp("jbtree-jbd2-damage");
    REQUIRE(tmp.ok());
    const int per_flavour = env_int("JBTREE_DAMAGE_VARIANTS", 30);
    const int per_corpus = env_int("JBTREE_DAMAGE_CORPUS_VARIANTS", 12);
    std::mt19937_64 rng(0x17'0004); // issue 17, item 4: the fixed seed
    tally all;
    const flavour flavours[] = {flavour::v3, flavour::v3_async, flavour::v2_32bit, flavour::none,
                                flavour::v1, flavour::v1_async, flavour::v3_4k, flavour::v3_aborted};
    // $JBTREE_DAMAGE_ONLY=name: only the bases whose name contains it.
    const std::string only = std::getenv("JBTREE_DAMAGE_ONLY") ? std::getenv("JBTREE_DAMAGE_ONLY") : "";
    for (const flavour fl : flavours) {
        if (!only.empty() && std::string(describe(fl)).find(only) == std::string::npos) continue;
        base_journal base;
        if (!make_base(tmp.path(), fl, rng(), base)) return;
        // The undamaged journal: both replay it, identically.
        std::string why;
        REQUIRE_MESSAGE(run_variant(tmp.path(), base, {}, why) == outcome::match, base.name << ": " << why);
        // The aborted journal is there for the ext4 side (s_errno): a few random variants suffice.
        const bool aborted = fl == flavour::v3_aborted;
        all.add(campaign(tmp.path(), base, aborted ? per_flavour / 3 : per_flavour, !aborted, rng));
        fs::remove(base.img);
    }
    const fs::path corpus = fs::path(JBTREE_SOURCE_ROOT) / ".." / "shared" / "corpus" / "jbd2";
    if (fs::exists(corpus)) {
        std::vector<fs::path> images;
        for (const auto& e : fs::directory_iterator(corpus))
            if (e.path().string().ends_with(".img.gz")) images.push_back(e.path());
        std::sort(images.begin(), images.end()); // a fixed order: the same variants on every run
        for (const fs::path& gz : images) {
            base_journal base;
            if (!only.empty() && gz.filename().string().find(only) == std::string::npos) continue;
            if (!corpus_base(tmp.path(), gz, base)) continue; // e.g. a bad journal superblock magic: no log to damage
            all.add(campaign(tmp.path(), base, per_corpus, false, rng));
            fs::remove(base.img);
        }
    } else {
        MESSAGE("SKIP (corpus part): corpus not found at " << corpus);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("campaign: " << all.variants << " damaged journals, " << all.match << " identical to e2fsck, " << all.refused
                         << " refused untouched, " << all.mismatch << " mismatches (" << secs << " s); e2fsck: "
                         << all.e2fsck_said());
    CHECK(all.mismatch == 0);
    CHECK(all.match > all.variants / 2);
}
