// SPDX-License-Identifier: MIT
// jbtree's BlockStorage and Journal policies as thin adapters onto the
// kernel-style C calls of kshim.h (docs/kernel.md maps each to its kernel
// primitive):
//
//   kernel_storage::read      sb_bread             (NULL -> errc::io)
//   kernel_storage::allocate  kshim_new_block + sb_getblk + zero
//                             (a kernel: ext4_new_meta_blocks + sb_getblk)
//   kernel_storage::free      kshim_free_block     (ext4_free_blocks)
//   kernel_storage::write     mark_buffer_dirty
//   buffer destructor         brelse
//   kernel_journal::start     jbd2_journal_start   (ERR_PTR -> errc)
//   get_write_access          jbd2_journal_get_write_access
//   get_create_access         jbd2_journal_get_create_access
//   dirty_metadata            jbd2_journal_dirty_metadata
//   forget                    jbd2_journal_revoke
//   stop                      jbd2_journal_stop
//
// Freestanding: no exceptions, no RTTI, no allocation (handles and buffers
// are the shim's), only <cstdint>/<cstddef> and jbtree's core.
#pragma once

#include <cstddef>
#include <cstdint>

#include <jbtree/base/errc.hpp>
#include <jbtree/policy/block_storage.hpp>
#include <jbtree/policy/journal.hpp>

#include "kshim.h"

namespace kshim {

// A kernel errno (negative) as jbtree's errc.
inline jbtree::errc to_errc(long e) noexcept {
    switch (-e) {
    case 0: return jbtree::errc::ok;
    case KSHIM_ENOMEM: return jbtree::errc::no_memory;
    case KSHIM_ENOSPC: return jbtree::errc::no_space;
    case KSHIM_EINVAL: return jbtree::errc::invalid;
    default: return jbtree::errc::io;
    }
}

class kernel_storage {
public:
    // A pinned buffer_head: the reference is dropped (brelse) when it goes.
    class buffer {
    public:
        buffer() noexcept = default;
        explicit buffer(buffer_head* bh) noexcept : bh_(bh) {}
        buffer(buffer&& o) noexcept : bh_(o.bh_) { o.bh_ = nullptr; }
        buffer& operator=(buffer&& o) noexcept {
            if (this != &o) {
                if (bh_) brelse(bh_);
                bh_ = o.bh_;
                o.bh_ = nullptr;
            }
            return *this;
        }
        ~buffer() {
            if (bh_) brelse(bh_);
        }
        [[nodiscard]] unsigned char* data() noexcept { return bh_->b_data; }
        [[nodiscard]] std::uint64_t blkno() const noexcept { return bh_->b_blocknr; }
        [[nodiscard]] buffer_head* bh() noexcept { return bh_; }

    private:
        buffer_head* bh_ = nullptr;
    };

    kernel_storage(super_block* sb, std::uint32_t checksum_seed) noexcept : sb_(sb), seed_(checksum_seed) {}

    [[nodiscard]] std::uint32_t block_size() const noexcept { return kshim_blocksize(sb_); }
    [[nodiscard]] bool checksums() const noexcept { return true; }
    [[nodiscard]] std::uint32_t checksum_seed() const noexcept { return seed_; }
    [[nodiscard]] jbtree::result<buffer> read(std::uint64_t blkno) noexcept {
        buffer_head* bh = sb_bread(sb_, blkno);
        if (!bh) return jbtree::errc::io;
        return buffer(bh);
    }
    [[nodiscard]] jbtree::result<buffer> allocate() noexcept {
        std::uint64_t b = 0;
        if (const int e = kshim_new_block(sb_, &b)) return to_errc(e);
        buffer_head* bh = sb_getblk(sb_, b);
        if (!bh) {
            kshim_free_block(sb_, b);
            return jbtree::errc::no_memory;
        }
        for (std::uint32_t i = 0; i < bh->b_size; ++i) bh->b_data[i] = 0;
        return buffer(bh);
    }
    [[nodiscard]] jbtree::errc free(std::uint64_t blkno) noexcept {
        kshim_free_block(sb_, blkno);
        return jbtree::errc::ok;
    }
    [[nodiscard]] jbtree::errc write(buffer& b) noexcept {
        mark_buffer_dirty(b.bh());
        return jbtree::errc::ok;
    }
    [[nodiscard]] jbtree::errc flush() noexcept { return jbtree::errc::ok; } // the journal's commit

private:
    super_block* sb_;
    std::uint32_t seed_;
};
static_assert(jbtree::BlockStorage<kernel_storage>);

class kernel_journal {
public:
    class handle {
    public:
        handle() noexcept = default;
        explicit handle(handle_t* h) noexcept : h_(h) {}
        handle(handle&& o) noexcept : h_(o.h_) { o.h_ = nullptr; }
        handle& operator=(handle&& o) noexcept {
            h_ = o.h_;
            o.h_ = nullptr;
            return *this;
        }
        [[nodiscard]] handle_t* get() const noexcept { return h_; }

    private:
        friend class kernel_journal;
        handle_t* h_ = nullptr;
    };

    explicit kernel_journal(journal_t* j) noexcept : j_(j) {}

    [[nodiscard]] jbtree::result<handle> start(std::uint32_t credits) noexcept {
        if (credits == jbtree::unlimited_credits || credits > 0x7FFFFFFFu) return jbtree::errc::range;
        handle_t* h = jbd2_journal_start(j_, static_cast<int>(credits));
        if (IS_ERR(h)) return to_errc(PTR_ERR(h));
        return handle(h);
    }
    [[nodiscard]] std::uint32_t credits_left(const handle& h) const noexcept {
        return static_cast<std::uint32_t>(kshim_handle_credits(h.get()));
    }
    [[nodiscard]] std::uint64_t transaction_id(const handle& h) const noexcept { return kshim_handle_tid(h.get()); }
    [[nodiscard]] jbtree::errc get_write_access(handle& h, kernel_storage::buffer& b) noexcept {
        return to_errc(jbd2_journal_get_write_access(h.get(), b.bh()));
    }
    [[nodiscard]] jbtree::errc get_create_access(handle& h, kernel_storage::buffer& b) noexcept {
        return to_errc(jbd2_journal_get_create_access(h.get(), b.bh()));
    }
    [[nodiscard]] jbtree::errc dirty_metadata(handle& h, kernel_storage::buffer& b) noexcept {
        return to_errc(jbd2_journal_dirty_metadata(h.get(), b.bh()));
    }
    [[nodiscard]] jbtree::errc forget(handle& h, std::uint64_t blkno) noexcept {
        return to_errc(jbd2_journal_revoke(h.get(), blkno, nullptr));
    }
    [[nodiscard]] jbtree::errc stop(handle& h) noexcept {
        if (!h.h_) return jbtree::errc::invalid;
        const int e = jbd2_journal_stop(h.h_);
        h.h_ = nullptr;
        return to_errc(e);
    }

private:
    journal_t* j_;
};
static_assert(jbtree::Journal<kernel_journal, kernel_storage>);

} // namespace kshim
