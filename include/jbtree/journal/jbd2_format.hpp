// SPDX-License-Identifier: MIT
// jbtree: the jbd2 journal's on-disk format (as the Linux kernel and
// e2fsprogs write it), reimplemented from the format description.
//
// Every jbd2 field is big-endian. The journal block size is the filesystem
// block size. docs/journal.md describes each structure; this header holds the
// constants, the field offsets and the checksum formulas.
#pragma once

#include <cstddef>
#include <cstdint>

#include "jbtree/base/crc32c.hpp"
#include "jbtree/base/endian.hpp"

namespace jbtree::jbd2 {

inline constexpr std::uint32_t magic = 0xC03B3998u;

// journal_header_t::h_blocktype
enum class block_type : std::uint32_t {
    descriptor = 1,
    commit = 2,
    superblock_v1 = 3,
    superblock_v2 = 4,
    revoke = 5,
    fast_commit = 6,
};

// Common 12-byte header of every metadata block of the log.
struct header {
    be32 h_magic;     // 0x0 magic
    be32 h_blocktype; // 0x4 block_type
    be32 h_sequence;  // 0x8 transaction id (tid)
};
static_assert(sizeof(header) == 12);

// Feature bits.
inline constexpr std::uint32_t compat_checksum = 0x1; // v1 checksums (crc32_be); read, never written
inline constexpr std::uint32_t incompat_revoke = 0x1;
inline constexpr std::uint32_t incompat_64bit = 0x2;
inline constexpr std::uint32_t incompat_async_commit = 0x4;
inline constexpr std::uint32_t incompat_csum_v2 = 0x8;
inline constexpr std::uint32_t incompat_csum_v3 = 0x10;
inline constexpr std::uint32_t incompat_fast_commit = 0x20;
inline constexpr std::uint32_t incompat_known = 0x3F;

// Journal superblock: block 0 of the journal, first 1024 bytes.
struct superblock {
    header s_header;              // 0x000 h_blocktype = superblock_v1 or _v2
    be32 s_blocksize;             // 0x00C journal block size
    be32 s_maxlen;                // 0x010 blocks in the journal, including fast-commit blocks
    be32 s_first;                 // 0x014 first block of the log
    be32 s_sequence;              // 0x018 first tid expected in the log
    be32 s_start;                 // 0x01C block where the log starts; 0 = nothing to replay
    be32 s_errno;                 // 0x020 error recorded by a journal abort
    be32 s_feature_compat;        // 0x024
    be32 s_feature_incompat;      // 0x028
    be32 s_feature_ro_compat;     // 0x02C
    unsigned char s_uuid[16];     // 0x030 seeds every journal checksum
    be32 s_nr_users;              // 0x040 filesystems sharing the journal (1 for internal)
    be32 s_dynsuper;              // 0x044 unused
    be32 s_max_transaction;       // 0x048 unused
    be32 s_max_trans_data;        // 0x04C unused
    unsigned char s_checksum_type;// 0x050 4 = crc32c (required with csum v2/v3)
    unsigned char s_padding2[3];  // 0x051
    be32 s_num_fc_blks;           // 0x054 fast-commit blocks (0 = 256 when the feature is on)
    be32 s_head;                  // 0x058 kernel: head of the log while clean
    unsigned char s_padding[160]; // 0x05C
    be32 s_checksum;              // 0x0FC crc32c_raw(~0, superblock with this field 0)
    unsigned char s_users[768];   // 0x100 16-byte uuids of the users
};
static_assert(sizeof(superblock) == 1024);
static_assert(offsetof(superblock, s_checksum) == 0xFC);
static_assert(offsetof(superblock, s_head) == 0x58);

inline constexpr unsigned char checksum_type_crc32c = 4;
inline constexpr std::uint32_t default_fast_commit_blocks = 256;

// Descriptor tag flags (read as the be16 at byte 6 of every tag format).
inline constexpr std::uint16_t tag_escape = 0x1;    // logged copy had its magic zeroed
inline constexpr std::uint16_t tag_same_uuid = 0x2; // no 16-byte uuid follows the tag
inline constexpr std::uint16_t tag_deleted = 0x4;   // unused
inline constexpr std::uint16_t tag_last = 0x8;      // last tag of the descriptor

// Revoke block: header + be32 r_count (bytes used, header included), then
// be32 or be64 block numbers from offset 16.
inline constexpr std::uint32_t revoke_header_size = 16;

// Commit block.
inline constexpr std::size_t commit_chksum_type_offset = 0x0C; // u8 (v1: 1 = crc32)
inline constexpr std::size_t commit_chksum_size_offset = 0x0D; // u8 (v1: 4)
inline constexpr std::size_t commit_chksum_offset = 0x10;      // be32[8]; v2/v3: [0] block checksum
inline constexpr std::size_t commit_sec_offset = 0x30;         // be64 seconds
inline constexpr std::size_t commit_nsec_offset = 0x38;        // be32 nanoseconds

// Transaction ids compare with wraparound (signed difference), as jbd2 does.
[[nodiscard]] constexpr bool tid_gt(std::uint32_t x, std::uint32_t y) noexcept {
    return static_cast<std::int32_t>(x - y) > 0;
}
[[nodiscard]] constexpr bool tid_geq(std::uint32_t x, std::uint32_t y) noexcept {
    return static_cast<std::int32_t>(x - y) >= 0;
}

// What the features of a journal imply for its block formats.
struct format {
    std::uint32_t block_size = 0;
    std::uint32_t compat = 0;
    std::uint32_t incompat = 0;
    std::uint32_t csum_seed = 0; // crc32c_raw(~0, s_uuid, 16) when csum v2/v3

    [[nodiscard]] bool has_64bit() const noexcept { return incompat & incompat_64bit; }
    [[nodiscard]] bool csum_v2() const noexcept { return incompat & incompat_csum_v2; }
    [[nodiscard]] bool csum_v3() const noexcept { return incompat & incompat_csum_v3; }
    [[nodiscard]] bool csum_v2or3() const noexcept { return csum_v2() || csum_v3(); }
    [[nodiscard]] bool csum_v1() const noexcept { return compat & compat_checksum; }
    // Bytes per descriptor tag (without the optional 16-byte uuid).
    [[nodiscard]] std::uint32_t tag_bytes() const noexcept {
        if (csum_v3()) return 16;
        std::uint32_t n = 8;
        if (csum_v2()) n += 2;
        if (has_64bit()) n += 4;
        return n;
    }
    // Descriptor and revoke blocks end with a 4-byte checksum tail under v2/v3.
    [[nodiscard]] std::uint32_t tail_bytes() const noexcept { return csum_v2or3() ? 4 : 0; }
    [[nodiscard]] std::uint32_t revoke_record_bytes() const noexcept { return has_64bit() ? 8 : 4; }
};

// crc32c_raw(~0) of the superblock with s_checksum taken as zero (not seeded).
[[nodiscard]] inline std::uint32_t superblock_checksum(const unsigned char* sb) noexcept {
    static constexpr unsigned char zero[4] = {0, 0, 0, 0};
    std::uint32_t c = crc32c_raw(~0u, sb, 0xFC);
    c = crc32c_raw(c, zero, 4);
    return crc32c_raw(c, sb + 0x100, sizeof(superblock) - 0x100);
}

// Descriptor/revoke tail: crc32c_raw(seed, whole block with the tail zeroed).
[[nodiscard]] inline std::uint32_t tail_checksum(const format& f, const unsigned char* block) noexcept {
    static constexpr unsigned char zero[4] = {0, 0, 0, 0};
    const std::uint32_t c = crc32c_raw(f.csum_seed, block, f.block_size - 4);
    return crc32c_raw(c, zero, 4);
}

// Commit block: crc32c_raw(seed, whole block with h_chksum[0] zeroed). A
// writer sets h_chksum_type and h_chksum_size to 0 before computing it.
[[nodiscard]] inline std::uint32_t commit_checksum(const format& f, const unsigned char* block) noexcept {
    static constexpr unsigned char zero[4] = {0, 0, 0, 0};
    std::uint32_t c = crc32c_raw(f.csum_seed, block, commit_chksum_offset);
    c = crc32c_raw(c, zero, 4); // h_chksum[0]
    return crc32c_raw(c, block + commit_chksum_offset + 4, f.block_size - commit_chksum_offset - 4);
}

// Tag checksum of a logged (escaped) block: crc32c_raw(seed, be32 tid, block).
[[nodiscard]] inline std::uint32_t tag_checksum(const format& f, std::uint32_t tid,
                                                const unsigned char* logged) noexcept {
    unsigned char seq[4];
    store_be<std::uint32_t>(seq, tid);
    return crc32c_raw(crc32c_raw(f.csum_seed, seq, 4), logged, f.block_size);
}

// The v1 (COMPAT_CHECKSUM) transaction checksum: crc32 big-endian
// (polynomial 0x04C11DB7, MSB first, no final xor), chained over blocks.
[[nodiscard]] inline std::uint32_t crc32_be(std::uint32_t crc, const unsigned char* p, std::size_t n) noexcept {
    while (n--) {
        crc ^= static_cast<std::uint32_t>(*p++) << 24;
        for (int i = 0; i < 8; ++i) crc = (crc << 1) ^ (crc & 0x80000000u ? 0x04C11DB7u : 0u);
    }
    return crc;
}

} // namespace jbtree::jbd2
