// SPDX-License-Identifier: MIT
// jbtree: jbd2 journal recovery (scan, revoke, replay), making the same
// decisions as the kernel and e2fsck on damaged journals.
//
//   jbd2::load(dev, block)            read and check the journal superblock
//   jbd2::recover(dev, mem, info)     replay every committed transaction
//
// The caller supplies the journal device (LogDevice below) and the memory:
// two block buffers and the revoke table's slots. Nothing is allocated.
//
// What counts as committed (docs/journal.md has the whole story):
//  - the log is read from s_start, wrapping from the end of the log area to
//    s_first; transaction ids must follow each other from s_sequence;
//  - a transaction is its descriptor, data and revoke blocks, ended by a
//    commit block with its tid; the log ends at the first block that is not
//    a journal block of the expected tid;
//  - with checksums v2/v3, a commit block whose checksum fails ends the log
//    there (that transaction is not replayed); a descriptor or revoke block
//    whose checksum fails is taken as stale data if the next commit block is
//    older than the last good one, and as corruption otherwise;
//  - a data block whose tag checksum fails is not replayed, the others are,
//    and recovery reports errc::bad_checksum.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"
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
};

// Why a journal superblock was refused.
enum class sb_problem : std::uint8_t {
    none,
    bad_magic,        // not a jbd2 superblock
    bad_type,         // a log block where the superblock should be (corrupt)
    unknown_version,  // unknown superblock type
    unknown_features, // incompatible or ro-compatible features we do not know
    fast_commit,      // fast-commit replay is not implemented: refuse rather than guess
    shared_journal,   // s_nr_users > 1
    bad_checksum,     // superblock checksum or checksum type wrong, or v2+v3 together
    bad_geometry,     // block size, length, first or start out of range
};

[[nodiscard]] constexpr const char* describe(sb_problem p) noexcept {
    switch (p) {
    case sb_problem::none: return "ok";
    case sb_problem::bad_magic: return "journal superblock has a bad magic number";
    case sb_problem::bad_type: return "journal superblock is a log block (corrupt)";
    case sb_problem::unknown_version: return "unknown journal superblock version";
    case sb_problem::unknown_features: return "journal has features this replayer does not know";
    case sb_problem::fast_commit: return "journal uses fast commits, whose replay is not supported";
    case sb_problem::shared_journal: return "journal is shared by several filesystems";
    case sb_problem::bad_checksum: return "journal superblock checksum is wrong";
    case sb_problem::bad_geometry: return "journal superblock geometry is out of range";
    }
    return "unknown problem";
}

// Read block 0 of the journal into `block` and check it as e2fsck does.
template <LogDevice D>
[[nodiscard]] errc load(D& dev, unsigned char* block, journal_info& out, sb_problem& why) noexcept {
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
    if (incompat & incompat_fast_commit) return refuse(sb_problem::fast_commit, errc::not_supported);
    const std::uint32_t maxlen = sb->s_maxlen.get(), first = sb->s_first.get(), start = sb->s_start.get();
    if (sb->s_blocksize.get() != dev.block_size() || maxlen > dev.journal_blocks() || first == 0 ||
        first >= maxlen || (start != 0 && (start < first || start >= maxlen)))
        return refuse(sb_problem::bad_geometry, errc::corrupted);
    out = journal_info{f, first, maxlen, sb->s_sequence.get(), start};
    return errc::ok;
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
    std::uint32_t end_tid = 0;       // first transaction not replayed
    std::uint32_t failed_commit = 0; // tid whose commit block failed its checksum (0: none)
    std::uint64_t transactions = 0;  // transactions replayed
    std::uint64_t replayed = 0;      // blocks written home
    std::uint64_t revoke_records = 0;
    std::uint64_t revoke_hits = 0;   // logged blocks skipped because revoked
    std::uint64_t bad_blocks = 0;    // logged blocks skipped because their tag checksum failed
    std::uint32_t new_sequence = 0;  // s_sequence written back
    bool nothing_to_do = false;      // s_start was 0
    sb_problem refused = sb_problem::none;
};

namespace detail {

enum class pass : std::uint8_t { scan, revoke, replay };

struct pass_state {
    const journal_info& j;
    recovery_info& info;
    revoke_table& revokes;
    bool end_known = false; // info.end_tid is final (scan found it)
};

inline std::uint32_t wrap(const journal_info& j, std::uint32_t b) noexcept {
    return b >= j.last ? b - (j.last - j.first) : b;
}

inline bool tail_ok(const format& f, const unsigned char* block) noexcept {
    return !f.csum_v2or3() || load_be<std::uint32_t>(block + f.block_size - 4) == tail_checksum(f, block);
}

// Number of data blocks a descriptor describes.
inline std::uint32_t count_tags(const format& f, const unsigned char* d) noexcept {
    const std::uint32_t end = f.block_size - f.tail_bytes(), tb = f.tag_bytes();
    std::uint32_t off = sizeof(header), n = 0;
    while (off + tb <= end) {
        const std::uint16_t flags = load_be<std::uint16_t>(d + off + 6);
        ++n;
        off += tb;
        if (!(flags & tag_same_uuid)) off += 16;
        if (flags & tag_last) break;
    }
    return n;
}

template <LogDevice D>
errc one_pass(D& dev, pass_state& st, pass which, const recovery_memory& mem, errc& soft) noexcept {
    const journal_info& j = st.j;
    const format& f = j.fmt;
    std::uint32_t tid = j.sequence, blk = j.start;
    std::uint64_t last_commit_time = 0;
    bool need_check_commit_time = false;
    std::uint32_t crc_v1 = ~0u;
    unsigned char* b = mem.block_a;
    // The valid log never holds more blocks than the log area: reading more
    // means a damaged log that goes round in circles, and ends it.
    const std::uint32_t area = j.last - j.first;
    std::uint32_t seen = 0;
    auto advance = [&](std::uint32_t n) noexcept {
        blk = wrap(j, blk + n);
        seen += n;
    };
    for (;;) {
        if (which != pass::scan && tid_geq(tid, st.info.end_tid)) break;
        if (seen >= area) break;
        if (blk >= j.last) return errc::corrupted; // a descriptor counted past the log area
        JBTREE_TRY(dev.read_log(blk, b));
        advance(1);
        const header* hd = reinterpret_cast<const header*>(b);
        if (hd->h_magic.get() != magic || hd->h_sequence.get() != tid) break; // end of the log
        const std::uint32_t type = hd->h_blocktype.get();
        if (type == static_cast<std::uint32_t>(block_type::descriptor)) {
            if (!tail_ok(f, b)) {
                if (which != pass::scan) return errc::bad_checksum;
                need_check_commit_time = true;
            }
            const std::uint32_t n = count_tags(f, b);
            if (which == pass::scan && f.csum_v1() && !need_check_commit_time && !st.end_known) {
                crc_v1 = crc32_be(crc_v1, b, f.block_size);
                bool read_failed = false;
                for (std::uint32_t i = 0; i < n; ++i) {
                    if (blk >= j.last || dev.read_log(blk, mem.block_b) != errc::ok) {
                        read_failed = true;
                        break;
                    }
                    crc_v1 = crc32_be(crc_v1, mem.block_b, f.block_size);
                    advance(1);
                }
                if (read_failed) break;
                continue;
            }
            if (which != pass::replay) {
                advance(n);
                continue;
            }
            // Replay the data blocks of this descriptor.
            const std::uint32_t end = f.block_size - f.tail_bytes(), tb = f.tag_bytes();
            for (std::uint32_t off = sizeof(header); off + tb <= end;) {
                const unsigned char* tag = b + off;
                const std::uint16_t flags = load_be<std::uint16_t>(tag + 6);
                const std::uint32_t log_blk = blk;
                advance(1);
                if (log_blk >= j.last) {
                    soft = errc::corrupted;
                } else if (const errc e = dev.read_log(log_blk, mem.block_b); e != errc::ok) {
                    soft = e; // recover what we can, report at the end
                } else {
                    std::uint64_t home = load_be<std::uint32_t>(tag);
                    if (f.has_64bit()) home |= std::uint64_t{load_be<std::uint32_t>(tag + 8)} << 32;
                    bool good = true;
                    if (st.revokes.revoked(home, tid)) {
                        ++st.info.revoke_hits;
                        good = false;
                    } else if (f.csum_v2or3()) {
                        const std::uint32_t c = tag_checksum(f, tid, mem.block_b);
                        const bool match = f.csum_v3() ? load_be<std::uint32_t>(tag + 12) == c
                                                       : load_be<std::uint16_t>(tag + 4) == (c & 0xFFFF);
                        if (!match) {
                            ++st.info.bad_blocks;
                            soft = errc::bad_checksum;
                            good = false;
                        }
                    }
                    if (good) {
                        if (flags & tag_escape) store_be<std::uint32_t>(mem.block_b, magic);
                        if (const errc e = dev.write_home(home, mem.block_b); e != errc::ok) soft = e;
                        else ++st.info.replayed;
                    }
                }
                off += tb;
                if (!(flags & tag_same_uuid)) off += 16;
                if (flags & tag_last) break;
            }
            continue;
        }
        if (type == static_cast<std::uint32_t>(block_type::commit)) {
            if (which == pass::scan) {
                const std::uint64_t commit_time = load_be<std::uint64_t>(b + commit_sec_offset);
                if (need_check_commit_time) {
                    // A bad descriptor/revoke checksum earlier in this
                    // transaction: stale data if this commit is older than the
                    // last good one, corruption otherwise.
                    if (commit_time >= last_commit_time) return errc::bad_checksum;
                    break;
                }
                bool commit_ok = true;
                if (f.csum_v1()) {
                    if (st.end_known) {
                        st.info.failed_commit = st.info.end_tid;
                        break;
                    }
                    const std::uint32_t found = load_be<std::uint32_t>(b + commit_chksum_offset);
                    const unsigned char type_v1 = b[commit_chksum_type_offset], size_v1 = b[commit_chksum_size_offset];
                    commit_ok = (found == crc_v1 && type_v1 == 1 && size_v1 == 4) ||
                                (type_v1 == 0 && size_v1 == 0 && found == 0);
                    crc_v1 = ~0u;
                } else if (f.csum_v2or3()) {
                    commit_ok = load_be<std::uint32_t>(b + commit_chksum_offset) == commit_checksum(f, b);
                }
                if (!commit_ok) {
                    if (commit_time < last_commit_time) break; // stale block from an older log: clean end
                    st.info.end_tid = tid;
                    st.end_known = true;
                    if (!(f.incompat & incompat_async_commit)) {
                        st.info.failed_commit = tid;
                        break;
                    }
                }
                last_commit_time = commit_time;
            }
            ++tid;
            continue;
        }
        if (type == static_cast<std::uint32_t>(block_type::revoke)) {
            if (which == pass::scan && !tail_ok(f, b)) need_check_commit_time = true;
            if (which != pass::revoke) continue;
            const std::uint32_t count = load_be<std::uint32_t>(b + 12);
            if (count > f.block_size - f.tail_bytes()) return errc::invalid;
            const std::uint32_t rl = f.revoke_record_bytes();
            for (std::uint32_t off = revoke_header_size; off + rl <= count; off += rl) {
                const std::uint64_t r = rl == 8 ? load_be<std::uint64_t>(b + off) : load_be<std::uint32_t>(b + off);
                JBTREE_TRY(st.revokes.set(r, tid));
                ++st.info.revoke_records;
            }
            continue;
        }
        break; // any other block type ends the log
    }
    if (which == pass::scan) {
        if (!st.end_known) {
            st.info.end_tid = tid;
            st.end_known = true;
        }
    } else if (st.info.end_tid != tid && soft == errc::ok) {
        soft = errc::io; // the passes disagree on where the log ends
    }
    return errc::ok;
}

} // namespace detail

// Replay the journal's committed transactions to their home blocks, then
// mark the journal empty (s_start = 0) with s_sequence past every tid in the
// log, as the kernel and e2fsck do. A superblock that fails load() is
// refused with nothing written (info.refused says why).
//
// Returns errc::ok, or an error. Errors found after replay began (a data
// block whose checksum fails, an unreadable log block) are reported after
// everything else was replayed; the journal is then still marked empty, as
// e2fsck does, and the caller should treat the filesystem as needing a full
// check.
template <LogDevice D>
[[nodiscard]] errc recover(D& dev, const recovery_memory& mem, recovery_info& info) noexcept {
    info = recovery_info{};
    journal_info j;
    if (const errc e = load(dev, mem.block_a, j, info.refused); e != errc::ok) return e;
    info.start_tid = j.sequence;
    if (j.start == 0) {
        info.nothing_to_do = true;
        info.end_tid = j.sequence;
        info.new_sequence = j.sequence;
        return errc::ok;
    }
    revoke_table revokes(mem.revokes, mem.revoke_capacity);
    detail::pass_state st{j, info, revokes};
    errc soft = errc::ok;
    errc hard = detail::one_pass(dev, st, detail::pass::scan, mem, soft);
    if (hard == errc::ok) hard = detail::one_pass(dev, st, detail::pass::revoke, mem, soft);
    if (hard == errc::ok) hard = detail::one_pass(dev, st, detail::pass::replay, mem, soft);
    info.transactions = st.end_known && hard == errc::ok ? info.end_tid - j.sequence : 0;
    JBTREE_TRY(dev.flush()); // replayed blocks are durable before the log is dropped

    // Mark the journal empty. On success the next tid skips one past the end
    // of the log, so no block left in it can ever chain onto new transactions.
    // On any error s_sequence stays as it was, exactly as e2fsck leaves it
    // (the filesystem is then marked for a full check).
    JBTREE_TRY(dev.read_log(0, mem.block_a));
    superblock* sb = reinterpret_cast<superblock*>(mem.block_a);
    info.new_sequence = hard == errc::ok && soft == errc::ok ? info.end_tid + 1 : j.sequence;
    sb->s_sequence.set(info.new_sequence);
    sb->s_start.set(0);
    if (info.failed_commit) sb->s_errno.set(static_cast<std::uint32_t>(static_cast<int>(errc::invalid)));
    if (j.fmt.csum_v2or3()) sb->s_checksum.set(superblock_checksum(mem.block_a));
    JBTREE_TRY(dev.write_log(0, mem.block_a));
    JBTREE_TRY(dev.flush());
    return hard != errc::ok ? hard : soft;
}

} // namespace jbtree::jbd2
