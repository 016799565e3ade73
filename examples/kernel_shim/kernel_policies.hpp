// SPDX-License-Identifier: MIT
// jbtree's BlockStorage and Journal policies as thin adapters onto kglue.h,
// the opaque C interface to the kernel (docs/kernel.md maps each call to
// its Linux primitive):
//
//   kernel_storage::read      kglue_read           (sb_bread; NULL -> errc::io)
//   kernel_storage::allocate  kglue_new_block      (the filesystem's allocator,
//                                                   zeroed under lock_buffer, uptodate)
//   kernel_storage::free      kglue_free_block
//   kernel_storage::write     nothing: under jbd2 the journal owns dirty buffers
//   buffer destructor         kglue_release        (brelse)
//   kernel_journal::start     kglue_start          (credits and as many revoke credits)
//   get_write_access          kglue_get_write_access
//   get_create_access         kglue_get_create_access (remembered: see forget)
//   dirty_metadata            kglue_dirty_metadata
//   forget                    kglue_forget if the block was created in the
//                             running transaction, else kglue_revoke (or
//                             nothing: revoke_freed false, see the constructor)
//   stop                      kglue_stop
//
// Freestanding: no exceptions, no RTTI, no allocation, only <cstdint> /
// <cstddef> and jbtree's core; no kernel type is visible here.
#pragma once

#include <cstddef>
#include <cstdint>

#include <jbtree/base/errc.hpp>
#include <jbtree/node/header.hpp>
#include <jbtree/policy/block_storage.hpp>
#include <jbtree/policy/journal.hpp>

#include "kglue.h"

namespace kshim {

using jbtree::from_errno; // a kernel errno as errc

class kernel_storage {
public:
    // A pinned block: the reference is dropped (brelse) when it goes.
    // CheckedBlockBuffer (kglue_checked: BH_Verified under Linux) and
    // SealDeferringBuffer (kglue_defer_seal: jbd2's frozen trigger), each
    // only where the glue supports it and, for sealing, once
    // defer_seals() registered the sealer.
    class buffer {
    public:
        buffer() noexcept = default;
        explicit buffer(kglue_buf* b, kglue_fs* fs = nullptr) noexcept : b_(b), fs_(fs) {}
        buffer(buffer&& o) noexcept : b_(o.b_), fs_(o.fs_) { o.b_ = nullptr; }
        buffer& operator=(buffer&& o) noexcept {
            if (this != &o) {
                if (b_) kglue_release(b_);
                b_ = o.b_;
                fs_ = o.fs_;
                o.b_ = nullptr;
            }
            return *this;
        }
        [[nodiscard]] bool checked() const noexcept { return kglue_checked(b_) != 0; }
        void set_checked() noexcept { kglue_set_checked(b_); }
        [[nodiscard]] bool defer_seal() noexcept { return fs_ && kglue_defer_seal(fs_, b_) != 0; }
        [[nodiscard]] bool sealed() const noexcept { return kglue_seal_pending(b_) == 0; }
        ~buffer() {
            if (b_) kglue_release(b_);
        }
        [[nodiscard]] unsigned char* data() noexcept { return kglue_data(b_); }
        [[nodiscard]] std::uint64_t blkno() const noexcept { return kglue_blocknr(b_); }
        [[nodiscard]] kglue_buf* get() noexcept { return b_; }

    private:
        kglue_buf* b_ = nullptr;
        kglue_fs* fs_ = nullptr;
    };

    kernel_storage(kglue_fs* fs, std::uint32_t checksum_seed) noexcept : fs_(fs), seed_(checksum_seed) {}
    kernel_storage(const kernel_storage&) = delete;
    kernel_storage& operator=(const kernel_storage&) = delete;

    // Nodes changed in a handle are sealed by the glue's commit-time
    // trigger (once per commit) instead of after every change. The storage
    // must then stay where it is, and outlive every commit of a
    // transaction that holds a node it changed (kglue.h).
    void defer_seals() noexcept { kglue_set_sealer(fs_, &seal_trampoline, this); }

    [[nodiscard]] std::uint32_t block_size() const noexcept { return kglue_block_size(fs_); }
    [[nodiscard]] bool checksums() const noexcept { return true; }
    [[nodiscard]] std::uint32_t checksum_seed() const noexcept { return seed_; }
    [[nodiscard]] jbtree::result<buffer> read(std::uint64_t blkno) noexcept {
        int err = 0;
        kglue_buf* b = kglue_read(fs_, blkno, &err);
        if (!b) return from_errno(err);
        return buffer(b, fs_);
    }
    [[nodiscard]] jbtree::result<buffer> allocate() noexcept {
        int err = 0;
        kglue_buf* b = kglue_new_block(fs_, &err);
        if (!b) return from_errno(err);
        return buffer(b, fs_);
    }
    [[nodiscard]] jbtree::errc free(std::uint64_t blkno) noexcept {
        kglue_free_block(fs_, blkno);
        return jbtree::errc::ok;
    }
    [[nodiscard]] jbtree::errc write(buffer&) noexcept { return jbtree::errc::ok; } // the journal writes
    [[nodiscard]] jbtree::errc flush() noexcept { return jbtree::errc::ok; }          // the journal's commit

private:
    static void seal_trampoline(void* ctx, unsigned char* data, std::size_t size) noexcept {
        jbtree::seal_node(data, static_cast<std::uint32_t>(size), static_cast<kernel_storage*>(ctx)->seed_);
    }
    kglue_fs* fs_;
    std::uint32_t seed_;
};
static_assert(jbtree::BlockStorage<kernel_storage>);
static_assert(jbtree::CheckedBlockBuffer<kernel_storage::buffer>);
static_assert(jbtree::SealDeferringBuffer<kernel_storage::buffer>);

class kernel_journal {
public:
    // A running handle: ours (started by start()) or the caller's (ext4's,
    // wrapped by adopt()); dirtied counts the blocks this wrapper dirtied,
    // so a failed change can tell whether it left anything behind.
    class handle {
    public:
        handle() noexcept = default;
        handle(handle&& o) noexcept : dirtied(o.dirtied), held(o.held), h_(o.h_) { o.h_ = nullptr; }
        handle& operator=(handle&& o) noexcept {
            dirtied = o.dirtied;
            held = o.held;
            h_ = o.h_;
            o.h_ = nullptr;
            return *this;
        }
        [[nodiscard]] kglue_handle* get() const noexcept { return h_; }
        std::uint32_t dirtied = 0;
        std::uint32_t held = 0; // credits kept back from the trees (for the anchor block)

    private:
        friend class kernel_journal;
        explicit handle(kglue_handle* h) noexcept : h_(h) {}
        kglue_handle* h_ = nullptr;
    };

    // revoke_freed: a freed block that was logged before is revoked (it
    // may come back as data, which replay must not overwrite). false: the
    // blocks only ever serve as journaled metadata of the same owner (the
    // maps' nodes inside ext4's map file, e4maps.cpp), so replaying an old
    // copy of a freed one is harmless (it is free, or logged again later
    // when reused): nothing is revoked, and the handle needs no revoke
    // credits (credits_left counts buffer credits only).
    explicit kernel_journal(kglue_fs* fs, bool revoke_freed = true) noexcept : fs_(fs), revoke_(revoke_freed) {}

    // A handle of `credits` buffer credits and as many revoke credits: a
    // node can only be freed after the operation counted it among the
    // blocks it may touch, so this bounds the revokes too.
    [[nodiscard]] jbtree::result<handle> start(std::uint32_t credits) noexcept {
        if (credits == 0 || credits == jbtree::unlimited_credits || credits > 0x7FFFFFFFu) return jbtree::errc::range;
        int err = 0;
        kglue_handle* h = kglue_start(fs_, static_cast<int>(credits), static_cast<int>(credits), &err);
        if (!h) return from_errno(err);
        return handle(h);
    }
    // The caller's running handle (e.g. ext4's), not stopped by stop().
    [[nodiscard]] static handle adopt(kglue_handle* h) noexcept { return handle(h); }

    [[nodiscard]] std::uint32_t credits_left(const handle& h) const noexcept {
        const int c = kglue_credits_left(h.get());
        const int r = revoke_ ? kglue_revokes_left(h.get()) : c;
        // An operation may free every block it touches: it needs both.
        const int both = c < r ? c : r;
        const int held = static_cast<int>(h.held);
        return both > held ? static_cast<std::uint32_t>(both - held) : 0u;
    }
    [[nodiscard]] std::uint64_t transaction_id(const handle& h) const noexcept { return kglue_tid(h.get()); }
    [[nodiscard]] jbtree::errc get_write_access(handle& h, kernel_storage::buffer& b) noexcept {
        return from_errno(kglue_get_write_access(h.get(), b.get()));
    }
    [[nodiscard]] jbtree::errc get_create_access(handle& h, kernel_storage::buffer& b) noexcept {
        const jbtree::errc e = from_errno(kglue_get_create_access(h.get(), b.get()));
        if (e == jbtree::errc::ok) remember_created(kglue_tid(h.get()), b.blkno());
        return e;
    }
    [[nodiscard]] jbtree::errc dirty_metadata(handle& h, kernel_storage::buffer& b) noexcept {
        const jbtree::errc e = from_errno(kglue_dirty_metadata(h.get(), b.get()));
        if (e == jbtree::errc::ok) ++h.dirtied;
        return e;
    }
    // Created in the running transaction: forget (never logged, nothing to
    // revoke). Otherwise revoke, which forgets a cached copy as well.
    [[nodiscard]] jbtree::errc forget(handle& h, std::uint64_t blkno) noexcept {
        ++h.dirtied; // the free is a change too
        const std::uint64_t tid = kglue_tid(h.get());
        for (auto& c : created_)
            if (c.tid == tid && c.blkno == blkno) {
                c = created_block{};
                return from_errno(kglue_forget(h.get(), blkno));
            }
        if (!revoke_) return jbtree::errc::ok;
        return from_errno(kglue_revoke(h.get(), blkno));
    }
    [[nodiscard]] jbtree::errc stop(handle& h) noexcept {
        if (!h.h_) return jbtree::errc::invalid;
        const int e = kglue_stop(h.h_);
        h.h_ = nullptr;
        return from_errno(e);
    }

private:
    // Blocks created in recent transactions (a small ring: a block that
    // fell out of it is revoked, which is always safe, only costlier).
    struct created_block {
        std::uint64_t tid = 0;
        std::uint64_t blkno = 0;
    };
    void remember_created(std::uint64_t tid, std::uint64_t blkno) noexcept {
        created_[next_] = created_block{tid, blkno};
        next_ = (next_ + 1) % ring_size;
    }
    static constexpr unsigned ring_size = 64;

    kglue_fs* fs_;
    bool revoke_;
    created_block created_[ring_size]{};
    unsigned next_ = 0;
};
static_assert(jbtree::Journal<kernel_journal, kernel_storage>);

} // namespace kshim
