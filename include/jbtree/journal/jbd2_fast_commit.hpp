// SPDX-License-Identifier: MIT
// jbtree: ext4 fast commits in a jbd2 journal: the on-disk format of the
// fast-commit area and the scan by which e2fsck (1.47) decides which of its
// tags are valid, reimplemented from the format description.
//
//   fc::area a;              fc::area_of(maxlen, s_num_fc_blks, a)
//   fc::scanner s;           s.block(bytes, block_size, off, end_tid) per block
//   fc::for_each_tag(...)    the tags of one block, as the scan walks them
//
// The area. A journal with INCOMPAT_FAST_COMMIT keeps its last
// s_num_fc_blks blocks (0 means 256) for fast commits; the log proper ends
// before them. e2fsck reads the area from journal block
// maxlen - nfc + 1 up to block maxlen included (the block at maxlen - nfc is
// never used; block maxlen lies past the journal, and the kernel never
// writes it). It also wraps the log at maxlen, not at the area's start.
//
// A fast commit is a run of tags (tag-length-value, all little-endian),
// written in whole blocks: an optional HEAD (only in the first fast commit
// after a full commit: it starts the area's first block), then ADD_RANGE,
// DEL_RANGE, CREAT, LINK, UNLINK, INODE and PAD tags, ended by a TAIL whose
// crc32c covers every byte of the fast commit before its own crc field.
// A fast commit belongs to the running transaction: its tid is the first
// transaction the log does not hold (the scan's end of the log).
//
// Validity, as e2fsck's scan (fc::scanner) decides it, block by block from
// the area's start:
//  - the area's first block must start with a HEAD tag, or there is nothing
//    to replay;
//  - a HEAD with unknown features, or whose tid is not the end of the log,
//    is an error: e2fsck's whole recovery fails (nothing replayed);
//  - tags are counted from the start; each TAIL whose tid is the end of the
//    log and whose crc matches makes every tag counted so far valid; a bad
//    TAIL, or an unknown tag, ends the scan, and is an error (recovery
//    fails) if no TAIL was good before it;
//  - the crc (crc32c_raw, starting at 0 after each TAIL) runs over each
//    whole tag (header and value) up to the TAIL, and over the TAIL's header
//    and tid; it carries on from block to block.
// The replay applies the first valid-count tags, in the same order.
//
// e2fsck reads tags without bounds checks: a tag whose header or value runs
// past the end of its block makes it read memory that is not the block.
// The scanner reports such blocks as unreproducible (the caller refuses the
// journal) instead of guessing.
#pragma once

#include <cstddef>
#include <cstdint>

#include "jbtree/base/crc32c.hpp"
#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"

namespace jbtree::jbd2::fc {

// Tags (ext4_fc_tl.fc_tag).
enum class tag : std::uint16_t {
    add_range = 1, // value: le32 ino, then a 12-byte ext4 extent (le32 lblk, le16 len, le16 pblk_hi, le32 pblk_lo)
    del_range = 2, // value: le32 ino, le32 lblk, le32 len
    creat = 3,     // value: le32 parent ino, le32 ino, then the name (length - 8 bytes)
    link = 4,      // value: as creat
    unlink = 5,    // value: as creat
    inode = 6,     // value: le32 ino, then the raw on-disk inode (128 + i_extra_isize bytes)
    pad = 7,       // value: ignored (fills the end of a block)
    tail = 8,      // value: le32 tid, le32 crc (then padding up to the block's end)
    head = 9,      // value: le32 features (none defined), le32 tid
};

inline constexpr std::uint32_t tag_header_bytes = 4; // le16 tag, le16 length of the value
inline constexpr std::uint32_t head_bytes = 8;       // value bytes e2fsck reads of a HEAD
inline constexpr std::uint32_t tail_bytes = 8;       // ... of a TAIL
inline constexpr std::uint32_t add_range_bytes = 16; // ... of an ADD_RANGE
inline constexpr std::uint32_t del_range_bytes = 12; // ... of a DEL_RANGE
inline constexpr std::uint32_t dentry_bytes = 8;     // fixed part of CREAT/LINK/UNLINK before the name
inline constexpr std::uint32_t supported_features = 0; // HEAD features e2fsck knows
inline constexpr std::uint32_t min_log_blocks = 1024;  // JBD2_MIN_JOURNAL_BLOCKS: the log left before the area

// ext4 superblock s_state bit set while a fast-commit replay is under way.
inline constexpr std::uint16_t ext4_state_fc_replay = 0x0020;
// ext4 COMPAT feature: without it e2fsck ignores the area altogether.
inline constexpr std::uint32_t ext4_compat_fast_commit = 0x0400;

// The fast-commit area in journal blocks, as e2fsck lays it out.
struct area {
    std::uint32_t first = 0;    // first block e2fsck reads: maxlen - nfc + 1
    std::uint32_t last = 0;     // last block it may read (included): maxlen, one past the journal
    std::uint32_t log_last = 0; // end of the log proper (exclusive): maxlen - nfc
};

// Where the area lies; errc::corrupted when fewer than min_log_blocks would
// be left for the log (e2fsck: "incorrect fast commit blocks"; a count
// larger than the journal is refused the same way).
[[nodiscard]] inline errc area_of(std::uint32_t maxlen, std::uint32_t num_fc_blks, area& out) noexcept {
    const std::uint32_t n = num_fc_blks ? num_fc_blks : 256;
    if (n >= maxlen || maxlen - n < min_log_blocks) return errc::corrupted;
    out = area{maxlen - n + 1, maxlen, maxlen - n};
    return errc::ok;
}

// One tag as found in a block.
struct tag_view {
    std::uint16_t type = 0;        // fc::tag value (or an unknown number)
    std::uint16_t length = 0;      // value bytes (fc_len)
    const unsigned char* value = nullptr;
    std::uint32_t room = 0;        // bytes from `value` to the end of the block
};

// The tags of one block, in e2fsck's walk: from offset 0 while the offset is
// below block_size - 1, each next tag 4 + length bytes on. fn(view, offset)
// returns false to stop. Returns false if a tag's header would run past the
// block (e2fsck would read past it), true otherwise.
template <class Fn>
[[nodiscard]] bool for_each_tag(const unsigned char* b, std::uint32_t block_size, Fn&& fn) noexcept {
    for (std::uint32_t cur = 0; cur + 1 < block_size;) {
        if (cur + tag_header_bytes > block_size) return false;
        tag_view v;
        v.type = load_le<std::uint16_t>(b + cur);
        v.length = load_le<std::uint16_t>(b + cur + 2);
        v.value = b + cur + tag_header_bytes;
        v.room = block_size - cur - tag_header_bytes;
        if (!fn(v, cur)) return true;
        cur += tag_header_bytes + v.length;
    }
    return true;
}

// What the scan of one block decided.
enum class step : std::uint8_t {
    next,           // go on with the next block
    stop,           // the scan is over (valid() tags are to be replayed)
    error,          // e2fsck's recovery fails: error() says how; nothing is replayed
    unreproducible, // e2fsck would read outside the block: refuse the journal
};

// e2fsck's scan of the area (state carried from block to block).
class scanner {
public:
    // Scan the block at offset `off` (0 for the area's first block, then
    // 1, 2, ... in order); `end_tid` is the end of the log.
    [[nodiscard]] step block(const unsigned char* b, std::uint32_t block_size, std::uint32_t off,
                             std::uint32_t end_tid) noexcept {
        if (expected_off_ == 0) {
            *this = scanner{};
            if (block_size < 2 || load_le<std::uint16_t>(b) != static_cast<std::uint16_t>(tag::head)) return step::stop;
        }
        if (off != expected_off_) return fail(errc::corrupted);
        ++expected_off_;
        step result = step::next;
        const bool whole = for_each_tag(b, block_size, [&](const tag_view& v, std::uint32_t) noexcept {
            const std::uint32_t full = tag_header_bytes + v.length;
            auto needs = [&](std::uint32_t value_bytes) noexcept {
                if (value_bytes > v.room) result = step::unreproducible;
                return result != step::unreproducible;
            };
            switch (static_cast<tag>(v.type)) {
            case tag::add_range:
                if (!needs(add_range_bytes)) return false;
                [[fallthrough]]; // the extent always decodes (its size is fixed)
            case tag::del_range:
            case tag::creat:
            case tag::link:
            case tag::unlink:
            case tag::inode:
            case tag::pad:
                if (!needs(v.length)) return false;
                ++cur_tag_;
                crc_ = crc32c_raw(crc_, v.value - tag_header_bytes, full);
                return true;
            case tag::tail: {
                if (!needs(tail_bytes)) return false;
                ++cur_tag_;
                crc_ = crc32c_raw(crc_, v.value - tag_header_bytes, tag_header_bytes + 4);
                if (load_le<std::uint32_t>(v.value) == end_tid && load_le<std::uint32_t>(v.value + 4) == crc_) {
                    valid_ = cur_tag_;
                } else {
                    result = valid_ ? step::stop : fail(errc::bad_checksum);
                }
                crc_ = 0;
                return result == step::next;
            }
            case tag::head:
                if (!needs(head_bytes)) return false;
                if (load_le<std::uint32_t>(v.value) & ~supported_features) {
                    result = fail(errc::not_supported);
                    return false;
                }
                if (load_le<std::uint32_t>(v.value + 4) != end_tid) {
                    result = fail(errc::invalid);
                    return false;
                }
                if (!needs(v.length)) return false;
                ++cur_tag_;
                crc_ = crc32c_raw(crc_, v.value - tag_header_bytes, full);
                return true;
            }
            result = valid_ ? step::stop : fail(errc::corrupted); // unknown tag
            return false;
        });
        if (!whole) return step::unreproducible;
        return result;
    }

    // Tags valid so far (the count at the last good TAIL): the replay
    // applies this many, from the area's first tag.
    [[nodiscard]] std::uint32_t valid() const noexcept { return valid_; }
    // The error of a step::error.
    [[nodiscard]] errc error() const noexcept { return error_; }

private:
    step fail(errc e) noexcept {
        error_ = e;
        return step::error;
    }

    std::uint32_t expected_off_ = 0; // next block offset expected
    std::uint32_t cur_tag_ = 0;      // tags counted so far
    std::uint32_t valid_ = 0;        // tags counted at the last good TAIL
    std::uint32_t crc_ = 0;          // crc32c_raw since the last TAIL
    errc error_ = errc::ok;
};

} // namespace jbtree::jbd2::fc
