// SPDX-License-Identifier: MIT
// jbtree: jbd2 journal recovery (scan, revoke, replay), making the same
// decisions as e2fsck (e2fsprogs 1.47) on damaged journals, so that a replay
// gives e2fsck -E journal_only's image byte for byte, or is refused before
// anything is written.
//
//   jbd2::load(dev, block)            read and check the journal superblock
//   jbd2::recover(dev, mem, info)     replay every committed transaction
//
// The caller supplies the journal device (LogDevice below) and the memory:
// two block buffers and the revoke table's slots. Nothing is allocated.
//
// What counts as committed (docs/journal.md, "Damaged journals", states every
// rule with its checksum version):
//  - the log is read from s_start, wrapping from the end of the log area to
//    s_first; transaction ids must follow each other from s_sequence;
//  - a transaction is its descriptor, data and revoke blocks, ended by a
//    commit block with its tid; the log ends at the first block that is not
//    a journal block of the expected tid, or of an unknown type;
//  - a commit block whose checksum fails (v1: the crc32 of the transaction;
//    v2/v3: the block's crc32c) ends the replay before its transaction and,
//    if the replay succeeds, is recorded in s_errno, unless it is older than
//    the last good commit (stale: a clean end); with async commit the scan
//    goes on past it;
//  - a descriptor or revoke block whose checksum fails (v2/v3) is stale data
//    if the next commit block is older than the last good one (a clean end),
//    and corruption otherwise: nothing is replayed at all;
//  - a data block whose tag checksum fails (v2/v3) is not replayed, the others
//    are, and recovery reports errc::bad_checksum.
//
// Fast commits (INCOMPAT_FAST_COMMIT; jbd2_fast_commit.hpp has the format
// and the validity rules): the area after the log is scanned at the end of
// the scan pass and its valid tags are handed, after the block replay, to a
// FastCommitReplayer (the filesystem's side: ext2fs/fast_commit_replay.hpp);
// recover() without one refuses a journal with valid fast commits.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"
#include "jbtree/journal/jbd2_fast_commit.hpp"
#include "jbtree/journal/jbd2_format.hpp"
#include "jbtree/journal/jbd2_revoke_table.hpp"

namespace jbtree::jbd2 {

// Where the journal lives. Journal block numbers are relative to the journal
// (block 0 holds the superblock); home block numbers are filesystem blocks.
template <class D>
concept LogDevice = requires(D& d, const D& cd, std::uint32_t jblk, std::uint64_t blk, unsigned char* out,
                             const unsigned char* in) {
    { cd.block_size() } noexcept -> std::same_as<std::uint32_t>;
    { cd.journal_blocks() } noexcept -> std::same_as<std::uint32_t>; // blocks in the journal area
    { d.read_log(jblk, out) } noexcept -> std::same_as<errc>;
    { d.write_log(jblk, in) } noexcept -> std::same_as<errc>;
    { d.write_home(blk, in) } noexcept -> std::same_as<errc>;
    { d.flush() } noexcept -> std::same_as<errc>;
};

// A journal superblock that passed load().
struct journal_info {
    format fmt;
    std::uint32_t first = 0;    // s_first
    std::uint32_t last = 0;     // end of the log area (exclusive)
    std::uint32_t sequence = 0; // s_sequence
    std::uint32_t start = 0;    // s_start (0: nothing to replay)
    fc::area fc{};              // fast-commit area (fmt.incompat & incompat_fast_commit only)
};

// Why a journal superblock was refused.
enum class sb_problem : std::uint8_t {
    none,
    bad_magic,        // not a jbd2 superblock
    bad_type,         // a log block where the superblock should be (corrupt)
    unknown_version,  // unknown superblock type
    unknown_features, // incompatible or ro-compatible features we do not know
    fast_commit,      // fast commits: valid ones and no replayer (or it refused one); or load() not asked to accept them
    shared_journal,   // s_nr_users > 1
    bad_checksum,     // superblock checksum or checksum type wrong, or v2+v3 together
    bad_geometry,     // block size, length, first or start out of range
    // Found in the log by recover(), still before anything is written: cases
    // where e2fsck's result cannot be reproduced.
    log_runs_round,    // a pass would read round the whole log area (e2fsck could loop forever)
    revoke_table_full, // more revoked blocks than the caller's revoke table holds
    home_refused,      // a block to replay has a home the device refuses (check_home)
    fc_unreproducible, // a fast-commit tag runs past its block, or the valid ones fill the area
};

[[nodiscard]] constexpr const char* describe(sb_problem p) noexcept {
    switch (p) {
    case sb_problem::none: return "ok";
    case sb_problem::bad_magic: return "journal superblock has a bad magic number";
    case sb_problem::bad_type: return "journal superblock is a log block (corrupt)";
    case sb_problem::unknown_version: return "unknown journal superblock version";
    case sb_problem::unknown_features: return "journal has features this replayer does not know";
    case sb_problem::fast_commit:
        return "journal has fast commits, which are replayed only through the filesystem (jbtree-e2fs replay) and never written";
    case sb_problem::shared_journal: return "journal is shared by several filesystems";
    case sb_problem::bad_checksum: return "journal superblock checksum is wrong";
    case sb_problem::bad_geometry: return "journal superblock geometry is out of range";
    case sb_problem::log_runs_round: return "the log runs round the whole journal (damaged descriptors)";
    case sb_problem::revoke_table_full: return "more revoked blocks than the revoke table holds";
    case sb_problem::home_refused:
        return "a logged block would be written outside the filesystem or over the journal itself";
    case sb_problem::fc_unreproducible:
        return "a fast-commit tag runs past the end of its block (e2fsck would read outside it)";
    }
    return "unknown problem";
}

// Read block 0 of the journal into `block` and check it as e2fsck does.
// A journal with fast commits is refused (sb_problem::fast_commit) unless
// `fast_commits` is set: recover() sets it; the writer (jbd2_journal.hpp)
// does not, so it never writes its log into the fast-commit area.
template <LogDevice D>
[[nodiscard]] errc load(D& dev, unsigned char* block, journal_info& out, sb_problem& why,
                        bool fast_commits = false) noexcept {
    why = sb_problem::none;
    JBTREE_TRY(dev.read_log(0, block));
    const superblock* sb = reinterpret_cast<const superblock*>(block);
    auto refuse = [&](sb_problem p, errc e) noexcept {
        why = p;
        return e;
    };
    if (sb->s_header.h_magic.get() != magic) return refuse(sb_problem::bad_magic, errc::corrupted);
    std::uint32_t compat = 0, incompat = 0;
    switch (sb->s_header.h_blocktype.get()) {
    case static_cast<std::uint32_t>(block_type::superblock_v1): break; // v1: no features
    case static_cast<std::uint32_t>(block_type::superblock_v2):
        if (sb->s_nr_users.get() > 1) return refuse(sb_problem::shared_journal, errc::not_supported);
        compat = sb->s_feature_compat.get();
        incompat = sb->s_feature_incompat.get();
        if ((incompat & ~incompat_known) || sb->s_feature_ro_compat.get())
            return refuse(sb_problem::unknown_features, errc::not_supported);
        break;
    case static_cast<std::uint32_t>(block_type::descriptor):
    case static_cast<std::uint32_t>(block_type::commit):
    case static_cast<std::uint32_t>(block_type::revoke): return refuse(sb_problem::bad_type, errc::corrupted);
    default: return refuse(sb_problem::unknown_version, errc::not_supported);
    }
    format f{dev.block_size(), compat, incompat, 0};
    if ((f.csum_v2() && f.csum_v3()) || (f.csum_v2or3() && f.csum_v1()))
        return refuse(sb_problem::bad_checksum, errc::corrupted);
    if (f.csum_v2or3()) {
        if (sb->s_checksum_type != checksum_type_crc32c || sb->s_checksum.get() != superblock_checksum(block))
            return refuse(sb_problem::bad_checksum, errc::bad_checksum);
        f.csum_seed = crc32c_raw(~0u, sb->s_uuid, sizeof sb->s_uuid);
    }
    const std::uint32_t maxlen = sb->s_maxlen.get(), first = sb->s_first.get(), start = sb->s_start.get();
    if (sb->s_blocksize.get() != dev.block_size() || maxlen > dev.journal_blocks() || first == 0 ||
        first >= maxlen || (start != 0 && (start < first || start >= maxlen)))
        return refuse(sb_problem::bad_geometry, errc::corrupted);
    // With fast commits the log still wraps at maxlen, as e2fsck wraps it.
    fc::area area{};
    if (incompat & incompat_fast_commit) {
        if (!fast_commits) return refuse(sb_problem::fast_commit, errc::not_supported);
        if (fc::area_of(maxlen, sb->s_num_fc_blks.get(), area) != errc::ok)
            return refuse(sb_problem::bad_geometry, errc::corrupted);
    }
    out = journal_info{f, first, maxlen, sb->s_sequence.get(), start, area};
    return errc::ok;
}

// The superblock e2fsck writes over a journal superblock it finds corrupt
// (a wrong checksum or checksum type, v2 and v3 together: its "journal
// superblock is corrupt, fix?"): the 12-byte header is kept if it is a
// valid v1 superblock's, else becomes a v2 header; everything after it is
// zero but the block size, the length `maxlen` (the journal's blocks),
// s_first = 1 and s_sequence = `sequence`. e2fsck draws the sequence at
// random so that no old transaction still in the log can look valid. No
// features (so no checksum) and s_start = 0: the log is dropped, nothing
// is replayed. The caller clears the filesystem's needs_recovery flag
// and, if it was set, marks the filesystem not clean (a full check must
// follow), as e2fsck does.
inline void reset_superblock(unsigned char* block, std::uint32_t block_size, std::uint32_t maxlen,
                             std::uint32_t sequence) noexcept {
    auto* sb = reinterpret_cast<superblock*>(block);
    if (sb->s_header.h_magic.get() != magic ||
        sb->s_header.h_blocktype.get() != static_cast<std::uint32_t>(block_type::superblock_v1)) {
        sb->s_header.h_magic.set(magic);
        sb->s_header.h_blocktype.set(static_cast<std::uint32_t>(block_type::superblock_v2));
    }
    for (std::uint32_t i = sizeof(header); i < block_size; ++i) block[i] = 0;
    sb->s_blocksize.set(block_size);
    sb->s_maxlen.set(maxlen);
    sb->s_first.set(1);
    sb->s_sequence.set(sequence);
}

// Memory recovery works in.
struct recovery_memory {
    unsigned char* block_a; // block_size bytes each
    unsigned char* block_b;
    revoke_entry* revokes; // slots of the revoke table
    std::size_t revoke_capacity;
};

// What recovery did.
struct recovery_info {
    std::uint32_t start_tid = 0;     // s_sequence found
    std::uint32_t end_tid = 0;       // first transaction not replayed (e2fsck's end of the log)
    std::uint32_t failed_commit = 0; // tid recorded in s_errno as corrupt (0: none; only when the
                                     // replay succeeded, as e2fsck records it)
    std::uint64_t transactions = 0;  // transactions replayed (commit blocks the replay pass went past)
    std::uint64_t replayed = 0;      // blocks written home
    std::uint64_t revoke_records = 0;
    std::uint64_t revoke_hits = 0;   // logged blocks skipped because revoked
    std::uint64_t bad_blocks = 0;    // logged blocks skipped because their tag checksum failed
    std::uint32_t new_sequence = 0;  // s_sequence written back
    bool nothing_to_do = false;      // s_start was 0
    std::uint32_t fc_blocks = 0;     // fast-commit blocks the scan read
    std::uint32_t fc_valid = 0;      // fast-commit tags found valid (to replay)
    std::uint32_t fc_applied = 0;    // fast-commit tags applied by the replayer
    errc fc_result = errc::ok;       // what the fast-commit scan or replay reported
    sb_problem refused = sb_problem::none;
    std::uint64_t refused_block = 0; // home_refused: the home block refused
};

// A LogDevice may also vet the home of every logged block before recover()
// writes anything: check_home(blk) is asked about the home block of every
// tag of every descriptor the replay will go through (revoked blocks and
// blocks whose tag checksum fails included: a sound superset of what it
// writes); anything but errc::ok refuses the whole journal
// (sb_problem::home_refused) with nothing written.
template <class D>
concept HomeChecker = requires(D& d, std::uint64_t blk) {
    { d.check_home(blk) } noexcept -> std::same_as<errc>;
};

// A LogDevice that shows where its journal lives (a log_area: the home
// device as device(), journal blocks mapped to device runs by map()) gets
// this check without asking: recover() refuses a home block past the end of
// the device (e2fsck would write past the end of the filesystem, growing an
// image file) and a home block inside the journal itself (e2fsck would read
// it back, changed, later in the same replay, or write its superblock over
// it).
template <class D>
concept MappedLog = requires(D& d, std::uint32_t j, std::uint32_t& run) {
    { d.device().block_count() } noexcept -> std::convertible_to<std::uint64_t>;
    { d.map(j, run) } noexcept -> std::same_as<std::uint64_t>;
};

namespace detail {

template <class D>
inline constexpr bool checks_homes = HomeChecker<D> || MappedLog<D>;

template <class D>
errc check_home(D& dev, std::uint64_t blk) noexcept {
    if constexpr (HomeChecker<D>) {
        return dev.check_home(blk);
    } else if constexpr (MappedLog<D>) {
        if (blk >= dev.device().block_count()) return errc::range;
        const std::uint32_t n = dev.journal_blocks();
        for (std::uint32_t j = 0, run = 0; j < n; j += run) {
            const std::uint64_t p = dev.map(j, run);
            if (run == 0) break;
            if (blk >= p && blk - p < run) return errc::invalid;
        }
        return errc::ok;
    } else {
        (void)dev, (void)blk;
        return errc::ok;
    }
}

// scan: find the end of the log; revoke: collect revoke records and vet
// the homes (check_home); replay: write the blocks home.
enum class pass : std::uint8_t { scan, revoke, replay };

// What the passes share, kept as e2fsck keeps it: 0 in end_transaction and
// failed_commit means "not set" (so a transaction id 0 there is not seen, as
// in e2fsck).
struct pass_state {
    const journal_info& j;
    recovery_info& info;
    revoke_table& revokes;
    std::uint32_t end_transaction = 0;
    std::uint32_t failed_commit = 0;
    bool reached_end = false; // the last pass ended at the end of the log (not on an error that aborts it)
};

inline std::uint32_t wrap(const journal_info& j, std::uint32_t b) noexcept {
    return b >= j.last ? b - (j.last - j.first) : b;
}

inline bool tail_ok(const format& f, const unsigned char* block) noexcept {
    return !f.csum_v2or3() || load_be<std::uint32_t>(block + f.block_size - 4) == tail_checksum(f, block);
}

// The tags of a descriptor, in order: up to the first with LAST_TAG, or as
// many as fit before the tail (a tag without SAME_UUID is followed by 16
// uuid bytes). fn(tag, flags) returns false to stop.
template <class Fn>
void for_each_tag(const format& f, const unsigned char* d, Fn&& fn) noexcept {
    const std::uint32_t end = f.block_size - f.tail_bytes(), tb = f.tag_bytes();
    for (std::uint32_t off = sizeof(header); off + tb <= end;) {
        const std::uint16_t flags = load_be<std::uint16_t>(d + off + 6);
        if (!fn(d + off, flags)) return;
        off += tb;
        if (!(flags & tag_same_uuid)) off += 16;
        if (flags & tag_last) return;
    }
}

// Number of data blocks a descriptor describes.
inline std::uint32_t count_tags(const format& f, const unsigned char* d) noexcept {
    std::uint32_t n = 0;
    for_each_tag(f, d, [&](const unsigned char*, std::uint16_t) noexcept { return ++n, true; });
    return n;
}

inline std::uint64_t tag_home(const format& f, const unsigned char* tag) noexcept {
    std::uint64_t home = load_be<std::uint32_t>(tag);
    if (f.has_64bit()) home |= std::uint64_t{load_be<std::uint32_t>(tag + 8)} << 32;
    return home;
}

inline bool tag_checksum_ok(const format& f, const unsigned char* tag, std::uint32_t tid,
                            const unsigned char* logged) noexcept {
    if (!f.csum_v2or3()) return true;
    const std::uint32_t c = tag_checksum(f, tid, logged);
    return f.csum_v3() ? load_be<std::uint32_t>(tag + 12) == c : load_be<std::uint16_t>(tag + 4) == (c & 0xFFFF);
}

// v1 (COMPAT_CHECKSUM): does the commit block carry the transaction's crc32,
// or no checksum at all (type, size and value all zero)?
inline bool commit_v1_ok(const unsigned char* b, std::uint32_t crc) noexcept {
    const std::uint32_t found = load_be<std::uint32_t>(b + commit_chksum_offset);
    const unsigned char type = b[commit_chksum_type_offset], size = b[commit_chksum_size_offset];
    return (found == crc && type == 1 && size == 4) || (type == 0 && size == 0 && found == 0);
}

// One pass over the log. Returns what the pass reports (errc::ok, or the
// error e2fsck's pass would return); a refusal sets info.refused and
// returns errc::not_supported.
template <LogDevice D>
errc one_pass(D& dev, pass_state& st, pass which, const recovery_memory& mem) noexcept {
    const journal_info& j = st.j;
    const format& f = j.fmt;
    const bool scan = which == pass::scan, writing = which == pass::replay;
    std::uint32_t tid = j.sequence, blk = j.start;
    std::uint64_t last_commit_time = 0;
    bool need_check_commit_time = false;
    std::uint32_t crc_v1 = ~0u;
    errc result = errc::ok; // errors that let the pass go on (replay: a bad block, a read error)
    unsigned char* b = mem.block_a;
    // A log that is read round more than the whole log area has gone round
    // in circles (a damaged descriptor count): e2fsck could loop for ever.
    const std::uint32_t area = j.last - j.first;
    std::uint64_t seen = 0;
    auto advance = [&](std::uint32_t n) noexcept {
        blk = wrap(j, blk + n);
        seen += n;
    };
    auto refuse = [&](sb_problem why) noexcept {
        st.info.refused = why;
        return errc::not_supported;
    };
    for (;;) {
        if (!scan && tid_geq(tid, st.end_transaction)) break;
        if (seen > area) return refuse(sb_problem::log_runs_round);
        if (blk >= j.last) return errc::corrupted; // a descriptor counted past the journal
        JBTREE_TRY(dev.read_log(blk, b));
        advance(1);
        const header* hd = reinterpret_cast<const header*>(b);
        if (hd->h_magic.get() != magic || hd->h_sequence.get() != tid) break; // end of the log
        const std::uint32_t type = hd->h_blocktype.get();
        if (type == static_cast<std::uint32_t>(block_type::descriptor)) {
            if (!tail_ok(f, b)) {
                if (!scan) return errc::bad_checksum;
                need_check_commit_time = true; // judged at the next commit block
            }
            if (which == pass::revoke) {
                if constexpr (checks_homes<D>) {
                    std::uint64_t bad = 0;
                    bool refused = false;
                    for_each_tag(f, b, [&](const unsigned char* tag, std::uint16_t) noexcept {
                        bad = tag_home(f, tag);
                        refused = check_home(dev, bad) != errc::ok;
                        return !refused;
                    });
                    if (refused) {
                        st.info.refused_block = bad;
                        return refuse(sb_problem::home_refused);
                    }
                }
                advance(count_tags(f, b));
                continue;
            }
            if (scan) {
                if (f.csum_v1() && !need_check_commit_time && st.end_transaction == 0) {
                    // v1: the transaction's crc32 runs over its descriptors
                    // and data blocks. A data block that cannot be read ends
                    // the descriptor; the scan goes on after it.
                    crc_v1 = crc32_be(crc_v1, b, f.block_size);
                    const std::uint32_t n = count_tags(f, b);
                    for (std::uint32_t i = 0; i < n; ++i) {
                        const std::uint32_t at = blk;
                        advance(1);
                        if (at >= j.last || dev.read_log(at, mem.block_b) != errc::ok) break;
                        crc_v1 = crc32_be(crc_v1, mem.block_b, f.block_size);
                    }
                    continue;
                }
                advance(count_tags(f, b));
                continue;
            }
            // Replay: the data blocks of this descriptor, in tag order.
            for_each_tag(f, b, [&](const unsigned char* tag, std::uint16_t flags) noexcept {
                const std::uint32_t at = blk;
                advance(1);
                if (at >= j.last) {
                    result = errc::corrupted; // recover what we can, report at the end
                } else if (const errc e = dev.read_log(at, mem.block_b); e != errc::ok) {
                    result = e;
                } else if (const std::uint64_t home = tag_home(f, tag); st.revokes.revoked(home, tid)) {
                    ++st.info.revoke_hits;
                } else if (!tag_checksum_ok(f, tag, tid, mem.block_b)) {
                    ++st.info.bad_blocks;
                    result = errc::bad_checksum; // skip this block, replay the others
                } else {
                    if (flags & tag_escape) store_be<std::uint32_t>(mem.block_b, magic);
                    if (const errc we = dev.write_home(home, mem.block_b); we != errc::ok) result = we;
                    else ++st.info.replayed;
                }
                return true;
            });
            continue;
        }
        if (type == static_cast<std::uint32_t>(block_type::commit)) {
            const std::uint64_t commit_time = load_be<std::uint64_t>(b + commit_sec_offset);
            if (need_check_commit_time) {
                // A descriptor or revoke block of this transaction failed its
                // checksum: corruption if this commit is not older than the
                // last good one, stale blocks of an older log otherwise.
                if (commit_time >= last_commit_time) return errc::bad_checksum;
                break;
            }
            if (scan) {
                bool good = true;
                if (f.csum_v1()) {
                    if (st.end_transaction != 0) {
                        // async commit: the commit after a failed one records
                        // the failure; the scan goes on expecting the same tid
                        // (as e2fsck does; the next block normally ends it)
                        st.failed_commit = st.end_transaction;
                        continue;
                    }
                    good = commit_v1_ok(b, crc_v1);
                    if (good) crc_v1 = ~0u;
                } else if (f.csum_v2or3()) {
                    good = load_be<std::uint32_t>(b + commit_chksum_offset) == commit_checksum(f, b);
                }
                if (!good) {
                    if (commit_time < last_commit_time) break; // stale commit block: a clean end
                    st.end_transaction = tid;
                    if (!(f.incompat & incompat_async_commit)) {
                        st.failed_commit = tid;
                        continue; // the same tid expected next, as e2fsck (normally the end)
                    }
                }
                last_commit_time = commit_time;
            }
            if (writing) ++st.info.transactions;
            ++tid;
            continue;
        }
        if (type == static_cast<std::uint32_t>(block_type::revoke)) {
            if (scan && !tail_ok(f, b)) need_check_commit_time = true;
            if (which != pass::revoke) continue;
            const std::uint32_t count = load_be<std::uint32_t>(b + 12);
            if (count > f.block_size - f.tail_bytes()) return errc::invalid;
            const std::uint32_t rl = f.revoke_record_bytes();
            for (std::uint32_t off = revoke_header_size; off + rl <= count; off += rl) {
                const std::uint64_t r = rl == 8 ? load_be<std::uint64_t>(b + off) : load_be<std::uint32_t>(b + off);
                if (st.revokes.set(r, tid) != errc::ok) return refuse(sb_problem::revoke_table_full);
                ++st.info.revoke_records;
            }
            continue;
        }
        break; // any other block type ends the log
    }
    st.reached_end = true;
    if (scan) {
        if (st.end_transaction == 0) st.end_transaction = tid;
    } else if (st.end_transaction != tid && result == errc::ok) {
        result = errc::io; // the passes disagree on where the log ends
    }
    return result;
}

// e2fsck's scan of the fast-commit area, block by block from its start,
// with the end of the log as the fast commits' tid. Sets info.fc_valid;
// returns the scan's error (e2fsck's recovery fails: nothing replayed), or
// refuses (info.refused) what e2fsck's result cannot be reproduced for.
template <LogDevice D>
errc fc_scan(D& dev, const journal_info& j, std::uint32_t end_tid, unsigned char* buf, recovery_info& info) noexcept {
    fc::scanner sc;
    for (std::uint32_t blk = j.fc.first, off = 0; blk <= j.fc.last; ++blk, ++off) {
        if (blk >= j.last) { // every block valid so far: e2fsck reads one past the journal
            info.refused = sb_problem::fc_unreproducible;
            return errc::not_supported;
        }
        JBTREE_TRY(dev.read_log(blk, buf));
        ++info.fc_blocks;
        const fc::step s = sc.block(buf, j.fmt.block_size, off, end_tid);
        info.fc_valid = sc.valid();
        if (s == fc::step::next) continue;
        if (s == fc::step::stop) return errc::ok;
        if (s == fc::step::error) return sc.error();
        info.refused = sb_problem::fc_unreproducible;
        return errc::not_supported;
    }
    return errc::ok;
}

// The first `count` tags of the area, in order: fn(tag) returns errc::ok to
// go on. Only tags the scan found valid are walked, so each lies whole in
// its block.
template <LogDevice D, class Fn>
errc fc_walk(D& dev, const journal_info& j, std::uint32_t count, unsigned char* buf, Fn&& fn) noexcept {
    for (std::uint32_t blk = j.fc.first; count > 0 && blk < j.last; ++blk) {
        JBTREE_TRY(dev.read_log(blk, buf));
        errc r = errc::ok;
        (void)fc::for_each_tag(buf, j.fmt.block_size, [&](const fc::tag_view& v, std::uint32_t) noexcept {
            if (count == 0) return false;
            --count;
            r = fn(v);
            return r == errc::ok;
        });
        if (r != errc::ok) return r;
    }
    return errc::ok;
}

} // namespace detail

// The filesystem's side of a fast-commit replay (ext2fs/fast_commit_replay.hpp
// is e2fsck's, over libext2fs). recover() calls, in order: enabled() (false:
// the area is ignored, as e2fsck ignores it on a filesystem without the
// fast_commit feature); vet() on every valid tag, before anything is written
// (anything but errc::ok refuses the journal: sb_problem::fast_commit); after
// the block replay, begin(), apply() on each valid tag in order (an error
// ends the replay there, as in e2fsck, and recovery reports it), and
// finish() after the last.
template <class R>
concept FastCommitReplayer = requires(R& r, const fc::tag_view& t) {
    { r.enabled() } noexcept -> std::same_as<bool>;
    { r.vet(t) } noexcept -> std::same_as<errc>;
    { r.begin() } noexcept -> std::same_as<errc>;
    { r.apply(t) } noexcept -> std::same_as<errc>;
    { r.finish() } noexcept -> std::same_as<errc>;
};

// No filesystem to replay fast commits on: a journal whose fast-commit area
// holds valid fast commits, or one e2fsck's scan rejects (whether e2fsck
// fails depends on the filesystem's feature, unknown here), is refused; a
// fast-commit journal with nothing valid in its area replays as any other.
struct no_fast_commit_replay {
    [[nodiscard]] bool enabled() noexcept { return true; }
    [[nodiscard]] errc vet(const fc::tag_view&) noexcept { return errc::not_supported; }
    [[nodiscard]] errc begin() noexcept { return errc::not_supported; }
    [[nodiscard]] errc apply(const fc::tag_view&) noexcept { return errc::not_supported; }
    [[nodiscard]] errc finish() noexcept { return errc::not_supported; }
};

// Replay the journal's committed transactions to their home blocks, then
// mark the journal empty (s_start = 0), as e2fsck does:
//  - the scan pass finds the end of the log; an error there (a descriptor or
//    revoke block that fails its checksum in a transaction whose commit is
//    not stale, a descriptor counting past the journal) replays nothing;
//  - the revoke pass collects revoke records; an error there (a revoke block
//    whose r_count runs into its tail) replays nothing;
//  - the replay pass writes each block that no revoke cancels and whose tag
//    checksum holds; a bad tag checksum or an unreadable log block skips
//    that block, the others are written, and recovery reports the error.
// On success s_sequence becomes one past the end of the log (so no block
// left in it can chain onto new transactions) and a failed commit block is
// recorded in s_errno; after any error s_sequence stays as it was and
// s_errno is not touched: the caller marks the filesystem for a full check.
//
// Refused, with nothing written at all (info.refused says why): a
// superblock load() refuses, and the cases where e2fsck's result cannot be
// reproduced, which are all found before the first write: a log that runs
// round the whole journal, more revoked blocks than the table holds, a home
// block the device refuses (HomeChecker, MappedLog).
//
// The journal superblock is read again after the replay: on a device that
// does not refuse homes inside the journal, a transaction that writes over
// the journal superblock is not replayed as e2fsck replays it.
//
// Fast commits: the area's valid tags (fc::scanner) are applied by `fcr`
// after the block replay, as e2fsck applies them at the end of its replay
// pass; an error of its scan fails the recovery like a scan error of the
// log (nothing replayed). Refused before any write: valid tags and no
// replayer (or a tag the replayer vets out), a tag that runs past its block.
template <LogDevice D, FastCommitReplayer R>
[[nodiscard]] errc recover(D& dev, const recovery_memory& mem, recovery_info& info, R& fcr) noexcept {
    info = recovery_info{};
    journal_info j;
    if (const errc e = load(dev, mem.block_a, j, info.refused, true); e != errc::ok) return e;
    info.start_tid = j.sequence;
    if (j.start == 0) {
        info.nothing_to_do = true;
        info.end_tid = j.sequence;
        info.new_sequence = j.sequence;
        return errc::ok;
    }
    revoke_table revokes(mem.revokes, mem.revoke_capacity);
    detail::pass_state st{j, info, revokes};
    auto refused = [&]() noexcept { return info.refused != sb_problem::none; };
    constexpr bool can_replay = !std::is_same_v<R, no_fast_commit_replay>;
    const bool fast = (j.fmt.incompat & incompat_fast_commit) && fcr.enabled();
    errc err = detail::one_pass(dev, st, detail::pass::scan, mem);
    if (err == errc::ok && fast && st.reached_end) {
        err = detail::fc_scan(dev, j, st.end_transaction, mem.block_b, info);
        info.fc_result = err;
        if (err != errc::ok) info.fc_valid = 0; // e2fsck's recovery fails: nothing is replayed
        if (err != errc::ok && !refused() && !can_replay) info.refused = sb_problem::fast_commit;
    }
    if (err == errc::ok) err = detail::one_pass(dev, st, detail::pass::revoke, mem);
    if (err == errc::ok && info.fc_valid != 0) {
        const errc v = detail::fc_walk(dev, j, info.fc_valid, mem.block_b,
                                       [&](const fc::tag_view& t) noexcept { return fcr.vet(t); });
        if (v != errc::ok) {
            if (v == errc::io) err = v; // e2fsck would fail to read it too, before writing anything
            else info.refused = sb_problem::fast_commit;
        }
    }
    if (err == errc::ok && !refused()) {
        st.reached_end = false;
        err = detail::one_pass(dev, st, detail::pass::replay, mem);
        if (st.reached_end && info.fc_valid != 0) {
            errc f = fcr.begin();
            if (f == errc::ok)
                f = detail::fc_walk(dev, j, info.fc_valid, mem.block_b, [&](const fc::tag_view& t) noexcept {
                    const errc a = fcr.apply(t);
                    if (a == errc::ok) ++info.fc_applied;
                    return a;
                });
            if (f == errc::ok) f = fcr.finish();
            info.fc_result = f;
            if (f != errc::ok) err = f;
        }
    }
    info.end_tid = st.end_transaction;
    if (refused()) return errc::not_supported; // nothing was written
    if (const errc e = dev.flush(); e != errc::ok && err == errc::ok) err = e; // replayed blocks durable first

    // Mark the journal empty. Only a successful replay moves s_sequence past
    // the log and records a failed commit, as e2fsck.
    JBTREE_TRY(dev.read_log(0, mem.block_a));
    superblock* sb = reinterpret_cast<superblock*>(mem.block_a);
    info.new_sequence = err == errc::ok ? st.end_transaction + 1 : j.sequence;
    if (err == errc::ok) info.failed_commit = st.failed_commit;
    sb->s_sequence.set(info.new_sequence);
    sb->s_start.set(0);
    if (info.failed_commit) sb->s_errno.set(static_cast<std::uint32_t>(static_cast<int>(errc::invalid)));
    if (j.fmt.csum_v2or3()) sb->s_checksum.set(superblock_checksum(mem.block_a));
    JBTREE_TRY(dev.write_log(0, mem.block_a));
    JBTREE_TRY(dev.flush());
    return err;
}

// Without a fast-commit replayer (no_fast_commit_replay).
template <LogDevice D>
[[nodiscard]] errc recover(D& dev, const recovery_memory& mem, recovery_info& info) noexcept {
    no_fast_commit_replay none;
    return recover(dev, mem, info, none);
}

} // namespace jbtree::jbd2
