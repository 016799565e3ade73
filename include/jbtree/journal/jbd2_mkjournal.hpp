// SPDX-License-Identifier: MIT
// jbtree: writing a new, empty jbd2 journal (what mke2fs does for ext4).
#pragma once

#include <cstdint>

#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"
#include "jbtree/journal/jbd2_format.hpp"
#include "jbtree/journal/jbd2_log_area.hpp"

namespace jbtree::jbd2 {

// Features of a new journal. The default is what ext4 uses with
// metadata_csum on a 64-bit filesystem: revoke, 64-bit tags, checksum v3.
struct journal_features {
    bool block64 = true;
    bool csum_v3 = true;
    bool csum_v2 = false; // instead of v3 (older kernels); ignored when csum_v3
    std::uint32_t first_tid = 1;
};

// Write a v2 journal superblock describing an empty log over the whole
// area (s_first = 1, s_start = 0), and zero the log's first block so no
// stale block can look like the start of a transaction. `scratch` is one
// block of memory.
template <class Dev>
[[nodiscard]] errc make_journal(log_area<Dev>& log, const journal_features& f, const unsigned char (&uuid)[16],
                                unsigned char* scratch) noexcept {
    const std::uint32_t bs = log.block_size(), n = log.journal_blocks();
    if (!log.valid() || n < 64 || bs < sizeof(superblock)) return errc::invalid;
    fill_bytes(scratch, 0, bs);
    JBTREE_TRY(log.write_log(1, scratch));
    superblock* sb = reinterpret_cast<superblock*>(scratch);
    sb->s_header.h_magic.set(magic);
    sb->s_header.h_blocktype.set(static_cast<std::uint32_t>(block_type::superblock_v2));
    sb->s_blocksize.set(bs);
    sb->s_maxlen.set(n);
    sb->s_first.set(1);
    sb->s_sequence.set(f.first_tid);
    std::uint32_t incompat = incompat_revoke;
    if (f.block64) incompat |= incompat_64bit;
    if (f.csum_v3) incompat |= incompat_csum_v3;
    else if (f.csum_v2) incompat |= incompat_csum_v2;
    sb->s_feature_incompat.set(incompat);
    copy_bytes(sb->s_uuid, uuid, 16);
    sb->s_nr_users.set(1);
    copy_bytes(sb->s_users, uuid, 16);
    if (incompat & (incompat_csum_v2 | incompat_csum_v3)) {
        sb->s_checksum_type = checksum_type_crc32c;
        sb->s_checksum.set(superblock_checksum(scratch));
    }
    return log.write_log(0, scratch);
}

} // namespace jbtree::jbd2
