// SPDX-License-Identifier: MIT
// jbtree: the revoke table used by jbd2 recovery.
//
// Maps a block number to the newest transaction that revoked it. A logged
// copy of a block from transaction T is not replayed if the block was revoked
// by a transaction R with R >= T (revokes cancel earlier and same-transaction
// copies). Open addressing over memory the caller supplies: recovery does not
// allocate; a full table is errc::no_memory.
#pragma once

#include <cstddef>
#include <cstdint>

#include "jbtree/base/errc.hpp"
#include "jbtree/journal/jbd2_format.hpp"

namespace jbtree::jbd2 {

struct revoke_entry {
    std::uint64_t blkno; // revoked block
    std::uint32_t tid;   // newest revoking transaction
    bool used;
};

class revoke_table {
public:
    revoke_table(revoke_entry* slots, std::size_t capacity) noexcept : slots_(slots), cap_(capacity) { clear(); }

    void clear() noexcept {
        for (std::size_t i = 0; i < cap_; ++i) slots_[i].used = false;
        size_ = 0;
    }
    // Record that transaction tid revokes blkno (keeps the newest tid).
    [[nodiscard]] errc set(std::uint64_t blkno, std::uint32_t tid) noexcept {
        revoke_entry* e = find_slot(blkno);
        if (!e) return errc::no_memory;
        if (e->used) {
            if (tid_gt(tid, e->tid)) e->tid = tid;
            return errc::ok;
        }
        if ((size_ + 1) * 8 > cap_ * 7) return errc::no_memory; // keep probes short
        *e = revoke_entry{blkno, tid, true};
        ++size_;
        return errc::ok;
    }
    // Is the copy of blkno logged by transaction tid cancelled?
    [[nodiscard]] bool revoked(std::uint64_t blkno, std::uint32_t tid) const noexcept {
        const revoke_entry* e = const_cast<revoke_table*>(this)->find_slot(blkno);
        return e && e->used && !tid_gt(tid, e->tid);
    }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }

private:
    // The slot holding blkno, or the empty slot where it would go.
    revoke_entry* find_slot(std::uint64_t blkno) noexcept {
        if (cap_ == 0) return nullptr;
        std::size_t i = static_cast<std::size_t>((blkno * 0x9E3779B97F4A7C15ull) >> 17) % cap_;
        for (std::size_t probes = 0; probes < cap_; ++probes, i = (i + 1) % cap_)
            if (!slots_[i].used || slots_[i].blkno == blkno) return &slots_[i];
        return nullptr;
    }

    revoke_entry* slots_;
    std::size_t cap_;
    std::size_t size_ = 0;
};

} // namespace jbtree::jbd2
