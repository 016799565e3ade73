// SPDX-License-Identifier: MIT
// jbtree: the jbd2 journal writer, with the buffer cache it journals.
//
// One running transaction at a time, as in jbd2: handles join it, and
// commit() writes it to the log in the jbd2 on-disk format, so jbtree's own
// recover(), e2fsck and the Linux kernel can all replay it.
//
//   buffers      read(blk) / read_new(blk) pin a block in the cache; the
//                engine changes cached bytes in place after get_*_access.
//   no steal     a block changed by the running transaction is never written
//                home before that transaction is committed: the cache must be
//                big enough for a transaction (open() checks).
//   commit       revoke blocks, descriptor blocks with their data blocks
//                (escaped when they begin with the jbd2 magic), flush, commit
//                block, flush. The commit block is the durability point.
//   checkpoint   a committed block is written home once, from the newest
//                transaction that logged it: logging a block again moves it
//                to the newer transaction, so a block changed by a thousand
//                transactions is written home once per checkpoint. The log
//                tail in the journal superblock only moves after the home
//                writes are flushed.
//   space        each transaction reserves the log space of its largest
//                possible size when it begins; checkpointing happens only
//                then (and in close()), when no block is half-changed.
//
// Memory is the caller's (journal_memory); nothing is allocated. The journal
// does no locking: one thread at a time, like the rest of jbtree.
//
// Errors: an I/O error while committing or checkpointing aborts the journal
// (every later call gives errc::io): the running transaction is lost, the
// log on disk is intact, and recover() after reopening replays every
// transaction whose commit block made it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "jbtree/base/crc32c.hpp"
#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"
#include "jbtree/journal/jbd2_format.hpp"
#include "jbtree/journal/jbd2_log_area.hpp"
#include "jbtree/journal/jbd2_recovery.hpp"
#include "jbtree/policy/block_device.hpp"
#include "jbtree/policy/journal.hpp"

namespace jbtree::jbd2 {

// One cached block (the bytes live in journal_memory::cache).
struct cache_slot {
    std::uint64_t blkno;
    std::uint32_t pins;       // buffers holding it
    std::uint32_t hash_next;  // bucket chain, or the free list
    std::uint32_t lru_prev;   // eviction order among unpinned, not running slots
    std::uint32_t lru_next;
    std::uint32_t cp_tid;     // with cp_dirty: newest committed transaction holding it
    std::uint32_t revoked_in; // with revoked: the running tid that revoked it
    std::uint16_t flags;
};

// A committed transaction whose blocks are not all home yet.
struct committed_tx {
    std::uint32_t tid;
    std::uint32_t log_start; // journal block of its first log block
    std::uint32_t log_end;   // journal block after its commit block
    std::uint32_t pending;   // cached blocks whose newest committed copy is here
};

// Memory the journal works in. journal_memory_sizes() gives the counts.
struct journal_memory {
    unsigned char* cache = nullptr; // cache_blocks * block_size bytes
    cache_slot* slots = nullptr;    // cache_blocks
    std::uint32_t cache_blocks = 0;
    std::uint32_t* buckets = nullptr; // bucket_count, a power of two
    std::uint32_t bucket_count = 0;
    std::uint32_t* running = nullptr;    // max_transaction_blocks
    std::uint64_t* revokes = nullptr;    // max_transaction_blocks
    std::uint32_t max_transaction_blocks = 0;
    committed_tx* committed = nullptr;   // committed_capacity
    std::uint32_t committed_capacity = 0;
    unsigned char* staging = nullptr;    // staging_blocks * block_size bytes, at least 3
    std::uint32_t staging_blocks = 0;
};

struct journal_options {
    // Commit time source (nanoseconds since the epoch). Commit times only
    // ever increase; without a clock they count up from the last one.
    std::uint64_t (*clock_ns)(void* ctx) noexcept = nullptr;
    void* clock_ctx = nullptr;
    // Called with true before the first log block of a session is written
    // (durably, before the journal superblock says the log is live), and
    // with false after close() emptied the log: an ext4 image sets and
    // clears its needs_recovery flag here, as the kernel does.
    errc (*log_state)(void* ctx, bool live) noexcept = nullptr;
    void* log_state_ctx = nullptr;
    // jbd2's frozen trigger: called on a cached block's bytes just before
    // commit copies them into the log, for blocks whose buffer asked for it
    // (buffer::defer_seal()): a client that checksums its blocks computes
    // the checksum here, once per commit, instead of after every change.
    // Without it, defer_seal() says no and clients seal blocks themselves.
    void (*frozen)(void* ctx, unsigned char* block) noexcept = nullptr;
    void* frozen_ctx = nullptr;
};

struct journal_stats {
    std::uint64_t commits = 0;
    std::uint64_t log_blocks = 0;       // every block written to the log, superblock included
    std::uint64_t logged_blocks = 0;    // of which copies of metadata blocks
    std::uint64_t escaped = 0;          // copies that began with the jbd2 magic
    std::uint64_t revoke_records = 0;
    std::uint64_t home_writes = 0;      // blocks written to their home location
    std::uint64_t checkpoints = 0;
    std::uint64_t flushes = 0;
    std::uint64_t cache_hits = 0;
    std::uint64_t cache_misses = 0;
    std::uint64_t evictions = 0;
};

template <BlockDevice Dev>
class journal {
    static constexpr std::uint32_t none = 0xFFFFFFFFu;
    enum : std::uint16_t {
        f_valid = 1,      // holds a block
        f_running = 2,    // changed by the running transaction (logged at commit)
        f_listed = 4,     // in the running list (possibly forgotten since)
        f_cp_dirty = 8,   // committed, not yet home
        f_forgotten = 16, // freed: contents never go home
        f_revoked = 32,   // revoked by transaction revoked_in
        f_checked = 64,   // the client verified the contents since they were read
        f_unsealed = 128, // changed since the frozen trigger last ran on it (defer_seal)
    };

public:
    // A pinned cache block. Movable; unpins when destroyed.
    class buffer {
    public:
        buffer() noexcept = default;
        buffer(buffer&& o) noexcept : j_(o.j_), slot_(o.slot_) { o.j_ = nullptr; }
        buffer& operator=(buffer&& o) noexcept {
            if (this != &o) {
                reset();
                j_ = o.j_;
                slot_ = o.slot_;
                o.j_ = nullptr;
            }
            return *this;
        }
        buffer(const buffer&) = delete;
        buffer& operator=(const buffer&) = delete;
        ~buffer() { reset(); }

        [[nodiscard]] unsigned char* data() noexcept { return j_ ? j_->slot_data(slot_) : nullptr; }
        [[nodiscard]] const unsigned char* data() const noexcept { return j_ ? j_->slot_data(slot_) : nullptr; }
        [[nodiscard]] std::uint64_t blkno() const noexcept { return j_ ? j_->mem_.slots[slot_].blkno : 0; }
        // CheckedBlockBuffer: cleared whenever the slot is filled from the
        // device or created; set by the engine after validating a node.
        [[nodiscard]] bool checked() const noexcept { return j_ && (j_->mem_.slots[slot_].flags & f_checked); }
        void set_checked() noexcept {
            if (j_) j_->mem_.slots[slot_].flags = static_cast<std::uint16_t>(j_->mem_.slots[slot_].flags | f_checked);
        }
        // SealDeferringBuffer (node/header.hpp): with a frozen trigger set,
        // the block's checksum is left to it (run at commit, before the block
        // is logged); the client's own change counts as checked.
        [[nodiscard]] bool defer_seal() noexcept {
            if (!j_ || !j_->opt_.frozen) return false;
            j_->mem_.slots[slot_].flags =
                static_cast<std::uint16_t>(j_->mem_.slots[slot_].flags | f_unsealed | f_checked);
            return true;
        }
        [[nodiscard]] bool sealed() const noexcept { return !j_ || !(j_->mem_.slots[slot_].flags & f_unsealed); }
        void reset() noexcept {
            if (j_) j_->unpin(slot_);
            j_ = nullptr;
        }

    private:
        friend class journal;
        buffer(journal* j, std::uint32_t s) noexcept : j_(j), slot_(s) {}
        journal* j_ = nullptr;
        std::uint32_t slot_ = 0;
    };

    struct handle {
        std::uint32_t credits = 0; // left: blocks this handle may still add to the transaction
        std::uint32_t tid = 0;
        bool open = false;
    };

    // The log is `extents` of `dev` (journal block 0 = the jbd2 superblock).
    journal(Dev& dev, const log_extent* extents, std::uint32_t n_extents, const journal_memory& mem) noexcept
        : log_(dev, extents, n_extents), mem_(mem) {}
    journal(const journal&) = delete;
    journal& operator=(const journal&) = delete;

    // Point the journal at another log (before open(); the extents are the
    // caller's and must outlive the journal).
    [[nodiscard]] errc set_log(Dev& dev, const log_extent* extents, std::uint32_t n_extents) noexcept {
        if (opened_) return errc::busy;
        log_ = log_area<Dev>(dev, extents, n_extents);
        return log_.valid() ? errc::ok : errc::invalid;
    }

    // Load and check the journal superblock. The log must be empty (run
    // recover() first); errc::busy if it still holds transactions. `why`
    // says why a superblock was refused.
    [[nodiscard]] errc open(const journal_options& opt, sb_problem* why = nullptr) noexcept {
        if (opened_) return errc::invalid;
        if (!log_.valid() || !mem_.cache || !mem_.slots || !mem_.buckets || !mem_.running || !mem_.revokes ||
            !mem_.committed || !mem_.staging || mem_.staging_blocks < 3 || mem_.committed_capacity < 1 ||
            mem_.bucket_count == 0 || (mem_.bucket_count & (mem_.bucket_count - 1)) ||
            mem_.max_transaction_blocks < 8 || mem_.cache_blocks < mem_.max_transaction_blocks + min_free_slots)
            return errc::invalid;
        opt_ = opt;
        journal_info info;
        sb_problem p = sb_problem::none;
        const errc e = load(log_, sb_block(), info, p);
        if (why) *why = p;
        JBTREE_TRY(e);
        if (info.start != 0) return errc::busy; // unrecovered transactions: recover() first
        superblock* sb = reinterpret_cast<superblock*>(sb_block());
        // Written journals are v2 superblocks; v1 checksums (COMPAT_CHECKSUM)
        // are read by recover() but not written.
        if (sb->s_header.h_blocktype.get() != static_cast<std::uint32_t>(block_type::superblock_v2) ||
            info.fmt.csum_v1())
            return errc::not_supported;
        fmt_ = info.fmt;
        // Freed blocks are always revoked, so the feature is set (as the
        // kernel sets it when ext4 mounts); it reaches the disk with the
        // first superblock write.
        fmt_.incompat |= incompat_revoke;
        sb->s_feature_incompat.set(sb->s_feature_incompat.get() | incompat_revoke);
        first_ = info.first;
        last_ = info.last;
        head_ = tail_ = first_;
        tid_ = info.sequence;
        max_tx_ = mem_.max_transaction_blocks;
        // A quarter of the log per transaction at most, as jbd2.
        while (max_tx_ > 8 && log_blocks_for(max_tx_, max_tx_) + 1 > (last_ - first_) / 4) max_tx_ /= 2;
        if (log_blocks_for(max_tx_, max_tx_) + 1 > last_ - first_) return errc::no_space;
        // Empty cache: every slot on the free list.
        for (std::uint32_t i = 0; i < mem_.bucket_count; ++i) mem_.buckets[i] = none;
        for (std::uint32_t i = 0; i < mem_.cache_blocks; ++i) {
            mem_.slots[i] = cache_slot{0, 0, i + 1 < mem_.cache_blocks ? i + 1 : none, none, none, 0, 0, 0};
        }
        free_head_ = 0;
        lru_head_ = lru_tail_ = none;
        opened_ = true;
        return errc::ok;
    }

    // ---- the cache: what a BlockStorage over this journal calls ----------

    [[nodiscard]] std::uint32_t block_size() const noexcept { return log_.block_size(); }
    [[nodiscard]] std::uint64_t block_count() const noexcept { return log_.device().block_count(); }

    // The block as stored (or as changed in the cache), pinned.
    [[nodiscard]] result<buffer> read(std::uint64_t blkno) noexcept {
        JBTREE_TRY(usable(blkno));
        std::uint32_t s = lookup(blkno);
        if (s != none) {
            ++stats_.cache_hits;
            pin(s);
            return buffer(this, s);
        }
        ++stats_.cache_misses;
        auto g = grab_slot();
        if (!g) return g.error();
        s = *g;
        if (const errc e = log_.device().read_blocks(blkno, 1, slot_data(s)); e != errc::ok) {
            release_slot(s);
            return e;
        }
        install(s, blkno);
        return buffer(this, s);
    }

    // A block about to be formatted from scratch (just allocated): zeroed,
    // pinned, not read from the device.
    [[nodiscard]] result<buffer> read_new(std::uint64_t blkno) noexcept {
        JBTREE_TRY(usable(blkno));
        std::uint32_t s = lookup(blkno);
        if (s != none) {
            pin(s);
        } else {
            auto g = grab_slot();
            if (!g) return g.error();
            s = *g;
            install(s, blkno);
        }
        fill_bytes(slot_data(s), 0, block_size());
        mem_.slots[s].flags &= static_cast<std::uint16_t>(~(f_forgotten | f_unsealed));
        return buffer(this, s);
    }

    // ---- the Journal policy ---------------------------------------------

    // Join the running transaction (beginning one if none) with `credits`
    // blocks. A transaction holds at most max_transaction_blocks(): when
    // this handle would not fit, the running transaction is committed first,
    // or errc::busy is returned if other handles are still open.
    [[nodiscard]] result<handle> start(std::uint32_t credits) noexcept {
        JBTREE_TRY(alive());
        if (credits == 0 || credits == unlimited_credits) return errc::invalid;
        if (credits > max_tx_) return errc::range;
        if (reserved_ + credits > max_tx_) {
            if (open_handles_) return errc::busy;
            JBTREE_TRY(commit());
        }
        if (!running_) JBTREE_TRY(begin_transaction());
        reserved_ += credits;
        ++open_handles_;
        return handle{credits, tid_, true};
    }

    [[nodiscard]] std::uint32_t credits_left(const handle& h) const noexcept { return h.credits; }
    [[nodiscard]] std::uint64_t transaction_id(const handle& h) const noexcept { return h.tid; }

    [[nodiscard]] errc get_write_access(handle& h, buffer& b) noexcept { return join(h, b); }
    [[nodiscard]] errc get_create_access(handle& h, buffer& b) noexcept { return join(h, b); }

    // The block's new contents are final for this operation.
    [[nodiscard]] errc dirty_metadata(handle& h, buffer& b) noexcept {
        JBTREE_TRY(check(h));
        if (b.j_ != this || !(mem_.slots[b.slot_].flags & f_running)) return errc::invalid; // no access taken
        return errc::ok;
    }

    // The block was freed: it leaves the transaction, its contents never go
    // home, and a revoke record keeps replay from writing older copies of it.
    // How many more blocks this transaction can forget (its revoke records
    // are bounded by max_transaction_blocks()).
    [[nodiscard]] std::uint64_t forgets_left(const handle&) const noexcept {
        return mem_.max_transaction_blocks - nrevokes_;
    }
    [[nodiscard]] errc forget(handle& h, std::uint64_t blkno) noexcept {
        JBTREE_TRY(check(h));
        if (nrevokes_ == mem_.max_transaction_blocks) return errc::no_credits;
        const std::uint32_t s = lookup(blkno);
        if (s != none) {
            cache_slot& c = mem_.slots[s];
            if ((c.flags & f_revoked) && c.revoked_in == tid_) return errc::ok; // already revoked
            c.flags = static_cast<std::uint16_t>((c.flags & ~f_running) | f_forgotten | f_revoked);
            c.revoked_in = tid_;
            // Its committed copy need not go home either: the revoke commits
            // before any checkpoint can move the tail past that copy
            // (checkpoints only run between transactions).
            drop_cp(c);
            if (c.pins == 0) lru_push_front(s);
        }
        mem_.revokes[nrevokes_++] = blkno;
        return errc::ok;
    }

    // End the handle; its unused credits go back to the transaction.
    [[nodiscard]] errc stop(handle& h) noexcept {
        if (!h.open) return errc::invalid;
        h.open = false;
        --open_handles_;
        reserved_ -= h.credits;
        h.credits = 0;
        return aborted_ ? errc::io : errc::ok;
    }

    // ---- commit, checkpoint, close --------------------------------------

    // Write the running transaction to the log and make it durable. Nothing
    // to do without one. errc::busy while handles are open.
    [[nodiscard]] errc commit() noexcept {
        JBTREE_TRY(alive());
        if (open_handles_) return errc::busy;
        if (!running_) return errc::ok;
        std::uint32_t n = 0;
        for (std::uint32_t i = 0; i < nrunning_; ++i)
            if (mem_.slots[mem_.running[i]].flags & f_running) ++n;
        if (n == 0 && nrevokes_ == 0) { // nothing changed: no tid spent
            end_transaction();
            return errc::ok;
        }
        const errc e = write_transaction(n);
        if (e != errc::ok) return abort(e);
        return errc::ok;
    }

    // Write every committed block home and empty the log (it stays live).
    [[nodiscard]] errc checkpoint() noexcept {
        JBTREE_TRY(alive());
        if (open_handles_ || running_) return errc::busy;
        const errc e = retire(ncommitted_);
        return e == errc::ok ? e : abort(e);
    }

    // Commit, checkpoint everything and mark the journal empty (s_start = 0),
    // as a clean unmount does. The journal can be opened again afterwards.
    [[nodiscard]] errc close() noexcept {
        JBTREE_TRY(commit());
        JBTREE_TRY(checkpoint());
        if (live_) {
            superblock* sb = reinterpret_cast<superblock*>(sb_block());
            sb->s_start.set(0);
            sb->s_sequence.set(tid_);
            errc e = write_sb();
            if (e == errc::ok) e = flush();
            if (e == errc::ok && opt_.log_state) e = opt_.log_state(opt_.log_state_ctx, false);
            if (e != errc::ok) return abort(e);
            live_ = false;
        }
        opened_ = false;
        return errc::ok;
    }

    [[nodiscard]] const journal_stats& stats() const noexcept { return stats_; }
    [[nodiscard]] const format& log_format() const noexcept { return fmt_; }
    [[nodiscard]] std::uint32_t max_transaction_blocks() const noexcept { return max_tx_; }
    [[nodiscard]] std::uint32_t next_tid() const noexcept { return tid_; }
    [[nodiscard]] bool aborted() const noexcept { return aborted_; }
    [[nodiscard]] std::uint32_t open_handles() const noexcept { return open_handles_; }
    // Credits granted to the running transaction's handles (unused ones are
    // returned when a handle stops).
    [[nodiscard]] std::uint32_t reserved_credits() const noexcept { return reserved_; }
    // Blocks of the log in use by committed, not yet checkpointed transactions.
    [[nodiscard]] std::uint32_t log_used() const noexcept { return used(); }
    [[nodiscard]] log_area<Dev>& area() noexcept { return log_; }

private:
    // Slots kept evictable beyond the largest transaction (a tree path and
    // the pins of one operation).
    static constexpr std::uint32_t min_free_slots = 64;

    unsigned char* slot_data(std::uint32_t s) const noexcept {
        return mem_.cache + std::size_t{s} * log_.block_size();
    }
    unsigned char* sb_block() const noexcept { return mem_.staging; }
    unsigned char* meta_block() const noexcept { return mem_.staging + log_.block_size(); }
    unsigned char* data_stage(std::uint32_t i) const noexcept {
        return mem_.staging + std::size_t{2 + i} * log_.block_size();
    }
    std::uint32_t data_stage_blocks() const noexcept { return mem_.staging_blocks - 2; }

    errc alive() const noexcept {
        if (!opened_) return errc::invalid;
        return aborted_ ? errc::io : errc::ok;
    }
    errc check(const handle& h) const noexcept {
        if (!h.open || h.tid != tid_) return errc::invalid;
        return aborted_ ? errc::io : errc::ok;
    }
    errc usable(std::uint64_t blkno) const noexcept {
        JBTREE_TRY(alive());
        if (blkno >= log_.device().block_count()) return errc::range;
        if (!fmt_.has_64bit() && blkno > 0xFFFFFFFFu) return errc::range; // a 32-bit journal cannot name it
        return errc::ok;
    }
    errc abort(errc e) noexcept {
        aborted_ = true;
        return e;
    }
    errc flush() noexcept {
        ++stats_.flushes;
        return log_.flush();
    }

    // ---- cache internals ----------------------------------------------------

    std::uint32_t bucket(std::uint64_t blkno) const noexcept {
        return static_cast<std::uint32_t>((blkno * 0x9E3779B97F4A7C15ull) >> 32) & (mem_.bucket_count - 1);
    }
    std::uint32_t lookup(std::uint64_t blkno) const noexcept {
        for (std::uint32_t s = mem_.buckets[bucket(blkno)]; s != none; s = mem_.slots[s].hash_next)
            if (mem_.slots[s].blkno == blkno) return s;
        return none;
    }
    void install(std::uint32_t s, std::uint64_t blkno) noexcept {
        cache_slot& c = mem_.slots[s];
        c = cache_slot{blkno, 1, none, none, none, 0, 0, f_valid};
        const std::uint32_t b = bucket(blkno);
        c.hash_next = mem_.buckets[b];
        mem_.buckets[b] = s;
    }
    void unhash(std::uint32_t s) noexcept {
        std::uint32_t* p = &mem_.buckets[bucket(mem_.slots[s].blkno)];
        while (*p != s) p = &mem_.slots[*p].hash_next;
        *p = mem_.slots[s].hash_next;
    }
    void release_slot(std::uint32_t s) noexcept { // a slot never installed goes back
        mem_.slots[s].flags = 0;
        mem_.slots[s].hash_next = free_head_;
        free_head_ = s;
    }
    bool in_lru(std::uint32_t s) const noexcept {
        return mem_.slots[s].lru_prev != none || lru_head_ == s;
    }
    void lru_remove(std::uint32_t s) noexcept {
        if (!in_lru(s)) return;
        cache_slot& c = mem_.slots[s];
        (c.lru_prev != none ? mem_.slots[c.lru_prev].lru_next : lru_head_) = c.lru_next;
        (c.lru_next != none ? mem_.slots[c.lru_next].lru_prev : lru_tail_) = c.lru_prev;
        c.lru_prev = c.lru_next = none;
    }
    void lru_push_back(std::uint32_t s) noexcept { // most recently used
        lru_remove(s);
        cache_slot& c = mem_.slots[s];
        c.lru_prev = lru_tail_;
        c.lru_next = none;
        (lru_tail_ != none ? mem_.slots[lru_tail_].lru_next : lru_head_) = s;
        lru_tail_ = s;
    }
    void lru_push_front(std::uint32_t s) noexcept { // evicted first
        lru_remove(s);
        cache_slot& c = mem_.slots[s];
        c.lru_next = lru_head_;
        c.lru_prev = none;
        (lru_head_ != none ? mem_.slots[lru_head_].lru_prev : lru_tail_) = s;
        lru_head_ = s;
    }
    void pin(std::uint32_t s) noexcept {
        if (mem_.slots[s].pins++ == 0) lru_remove(s);
    }
    void unpin(std::uint32_t s) noexcept {
        cache_slot& c = mem_.slots[s];
        if (--c.pins == 0 && !(c.flags & f_running)) {
            if (c.flags & f_forgotten) lru_push_front(s);
            else lru_push_back(s);
        }
    }
    // The committed copy of c no longer needs to go home.
    void drop_cp(cache_slot& c) noexcept {
        if (!(c.flags & f_cp_dirty)) return;
        c.flags &= static_cast<std::uint16_t>(~f_cp_dirty);
        committed_tx* t = find_committed(c.cp_tid);
        if (t) --t->pending;
    }
    // A free slot: an unused one, or the least recently used evictable one
    // (written home first if it holds a committed block not home yet).
    result<std::uint32_t> grab_slot() noexcept {
        if (free_head_ != none) {
            const std::uint32_t s = free_head_;
            free_head_ = mem_.slots[s].hash_next;
            return s;
        }
        const std::uint32_t s = lru_head_;
        if (s == none) return errc::no_memory; // every block pinned or in the running transaction
        cache_slot& c = mem_.slots[s];
        if ((c.flags & f_cp_dirty) && !(c.flags & f_forgotten)) {
            const errc e = log_.device().write_blocks(c.blkno, 1, slot_data(s));
            if (e != errc::ok) return abort(e);
            ++stats_.home_writes;
            drop_cp(c); // durable at the next flush, which comes before any tail move
        }
        lru_remove(s);
        unhash(s);
        c.flags = 0;
        ++stats_.evictions;
        return s;
    }

    // ---- transactions -------------------------------------------------------

    errc join(handle& h, buffer& b) noexcept {
        JBTREE_TRY(check(h));
        if (b.j_ != this) return errc::invalid;
        const std::uint32_t s = b.slot_;
        cache_slot& c = mem_.slots[s];
        if (c.flags & f_running) return errc::ok; // charged once per block per transaction
        if (h.credits == 0) return errc::no_credits;
        if (!(c.flags & f_listed)) {
            if (nrunning_ == mem_.max_transaction_blocks) return errc::no_credits;
            mem_.running[nrunning_++] = s;
        }
        --h.credits;
        c.flags = static_cast<std::uint16_t>((c.flags | f_running | f_listed) & ~f_forgotten);
        lru_remove(s);
        if ((c.flags & f_revoked) && c.revoked_in == tid_) cancel_revoke(c);
        else if (nrevokes_) cancel_revoke_uncached(c.blkno);
        return errc::ok;
    }
    // A block revoked earlier in this transaction is journaled again: its
    // revoke record must go, or replay would skip the new copy.
    void cancel_revoke(cache_slot& c) noexcept {
        c.flags &= static_cast<std::uint16_t>(~f_revoked);
        cancel_revoke_uncached(c.blkno);
    }
    void cancel_revoke_uncached(std::uint64_t blkno) noexcept {
        for (std::uint32_t i = 0; i < nrevokes_; ++i) {
            if (mem_.revokes[i] == blkno) {
                mem_.revokes[i] = mem_.revokes[--nrevokes_];
                return;
            }
        }
    }

    // Log blocks a transaction of n blocks and r revokes takes at most.
    std::uint32_t log_blocks_for(std::uint32_t n, std::uint32_t r) const noexcept {
        const std::uint32_t bs = log_.block_size();
        const std::uint32_t tags = (bs - static_cast<std::uint32_t>(sizeof(header)) - fmt_.tail_bytes() - 16) / fmt_.tag_bytes();
        const std::uint32_t per_revoke = (bs - revoke_header_size - fmt_.tail_bytes()) / fmt_.revoke_record_bytes();
        return n + (n + tags - 1) / tags + (r + per_revoke - 1) / per_revoke + 1;
    }
    std::uint32_t used() const noexcept {
        return head_ >= tail_ ? head_ - tail_ : (last_ - first_) - (tail_ - head_);
    }
    std::uint32_t log_free() const noexcept { return (last_ - first_) - used(); }
    std::uint32_t next_log(std::uint32_t b) const noexcept { return b + 1 == last_ ? first_ : b + 1; }

    committed_tx& committed_at(std::uint32_t i) const noexcept {
        return mem_.committed[(committed_first_ + i) % mem_.committed_capacity];
    }
    committed_tx* find_committed(std::uint32_t tid) const noexcept {
        if (!ncommitted_) return nullptr;
        const std::uint32_t off = tid - committed_at(0).tid; // tids of the ring are consecutive
        return off < ncommitted_ ? &committed_at(off) : nullptr;
    }

    errc begin_transaction() noexcept {
        // Room for the largest transaction (+1 so head never catches the tail),
        // and a ring slot to remember it by.
        const std::uint32_t need = log_blocks_for(max_tx_, max_tx_) + 1;
        std::uint32_t k = 0;
        while (k < ncommitted_ && (log_free_after(k) < need || ncommitted_ - k >= mem_.committed_capacity)) ++k;
        if (k) {
            const errc e = retire(k);
            if (e != errc::ok) return abort(e);
        }
        running_ = true;
        return errc::ok;
    }
    // Free log blocks once the k oldest committed transactions are retired.
    std::uint32_t log_free_after(std::uint32_t k) const noexcept {
        if (k == 0) return log_free();
        const std::uint32_t t = k < ncommitted_ ? committed_at(k).log_start : head_;
        const std::uint32_t u = head_ >= t ? head_ - t : (last_ - first_) - (t - head_);
        return (last_ - first_) - u;
    }

    void end_transaction() noexcept {
        for (std::uint32_t i = 0; i < nrunning_; ++i) {
            cache_slot& c = mem_.slots[mem_.running[i]];
            c.flags &= static_cast<std::uint16_t>(~(f_running | f_listed));
            if (c.pins == 0) {
                if (c.flags & f_forgotten) lru_push_front(mem_.running[i]);
                else lru_push_back(mem_.running[i]);
            }
        }
        nrunning_ = 0;
        nrevokes_ = 0;
        reserved_ = 0;
        running_ = false;
    }

    // Retire the k oldest committed transactions: write home every block
    // whose newest committed copy is in one of them, flush, then move the
    // log tail in the superblock past them and flush again.
    errc retire(std::uint32_t k) noexcept {
        if (k == 0) return errc::ok;
        ++stats_.checkpoints;
        const std::uint32_t last_tid = committed_at(k - 1).tid;
        for (std::uint32_t s = 0; s < mem_.cache_blocks; ++s) {
            cache_slot& c = mem_.slots[s];
            if (!(c.flags & f_cp_dirty) || tid_gt(c.cp_tid, last_tid)) continue;
            if (!(c.flags & f_forgotten)) {
                JBTREE_TRY(log_.device().write_blocks(c.blkno, 1, slot_data(s)));
                ++stats_.home_writes;
            }
            drop_cp(c);
        }
        JBTREE_TRY(flush()); // these and any earlier eviction writes are durable before the tail moves
        committed_first_ = (committed_first_ + k) % mem_.committed_capacity;
        ncommitted_ -= k;
        tail_ = ncommitted_ ? committed_at(0).log_start : head_;
        return update_tail();
    }
    // Record the tail in the journal superblock (durably).
    errc update_tail() noexcept {
        if (!live_) return errc::ok;
        superblock* sb = reinterpret_cast<superblock*>(sb_block());
        sb->s_start.set(tail_);
        sb->s_sequence.set(ncommitted_ ? committed_at(0).tid : tid_);
        JBTREE_TRY(write_sb());
        return flush();
    }
    errc write_sb() noexcept {
        if (fmt_.csum_v2or3()) {
            superblock* sb = reinterpret_cast<superblock*>(sb_block());
            sb->s_checksum.set(superblock_checksum(sb_block()));
        }
        ++stats_.log_blocks;
        return log_.write_log(0, sb_block());
    }

    // ---- writing a transaction ----------------------------------------------

    // Log blocks assembled in staging, written in runs contiguous on the
    // device; `pos` is the journal block of staged block 0.
    struct stager {
        journal* j;
        std::uint32_t pos = 0;       // journal block of staged block 0
        std::uint32_t n = 0;         // blocks staged
        std::uint64_t dev_next = 0;  // device block that would continue the run
        errc drain() noexcept {
            if (!n) return errc::ok;
            JBTREE_TRY(j->log_.write_log_run(pos, n, j->data_stage(0)));
            j->stats_.log_blocks += n;
            n = 0;
            return errc::ok;
        }
        // The staging buffer for the log block at j->head_, which is taken.
        // Staged blocks are written out first when this one would not
        // continue their run (staging full, log wrapped, extent boundary,
        // or a block reserved in between).
        result<unsigned char*> next() noexcept {
            const std::uint32_t at = j->head_;
            std::uint32_t run = 0;
            const std::uint64_t dev = j->log_.map(at, run);
            if (!run) return errc::range;
            if (n && (n == j->data_stage_blocks() || at != pos + n || dev != dev_next)) JBTREE_TRY(drain());
            if (n == 0) pos = at;
            dev_next = dev + 1;
            j->head_ = j->next_log(at);
            return j->data_stage(n++);
        }
    };

    errc write_transaction(std::uint32_t nblocks) noexcept {
        const std::uint32_t bs = log_.block_size();
        const std::uint32_t tid = tid_;
        if (!live_) { // first log write of the session: say so, then make the log live
            if (opt_.log_state) JBTREE_TRY(opt_.log_state(opt_.log_state_ctx, true));
            superblock* sb = reinterpret_cast<superblock*>(sb_block());
            sb->s_start.set(head_);
            sb->s_sequence.set(tid);
            live_ = true;
            tail_ = head_;
            JBTREE_TRY(write_sb());
            JBTREE_TRY(flush());
        }
        const std::uint32_t start = head_;
        stager st{this};

        // Revoke blocks first, as the kernel writes them.
        const std::uint32_t rl = fmt_.revoke_record_bytes();
        for (std::uint32_t i = 0; i < nrevokes_;) {
            auto p = st.next();
            if (!p) return p.error();
            unsigned char* b = *p;
            fill_bytes(b, 0, bs);
            put_header(b, block_type::revoke, tid);
            std::uint32_t off = revoke_header_size;
            for (; i < nrevokes_ && off + rl <= bs - fmt_.tail_bytes(); ++i, off += rl) {
                if (rl == 8) store_be<std::uint64_t>(b + off, mem_.revokes[i]);
                else store_be<std::uint32_t>(b + off, static_cast<std::uint32_t>(mem_.revokes[i]));
                ++stats_.revoke_records;
            }
            store_be<std::uint32_t>(b + 12, off);
            if (fmt_.csum_v2or3()) store_be<std::uint32_t>(b + bs - 4, tail_checksum(fmt_, b));
        }

        // Descriptor blocks, each followed by the blocks it describes. The
        // descriptor is built in meta_block() and written to the position it
        // reserved once it is full.
        const std::uint32_t tb = fmt_.tag_bytes();
        std::uint32_t i = 0; // index into the running list
        std::uint32_t left = nblocks;
        while (left) {
            unsigned char* d = meta_block();
            fill_bytes(d, 0, bs);
            put_header(d, block_type::descriptor, tid);
            const std::uint32_t dpos = head_;
            head_ = next_log(head_);
            JBTREE_TRY(st.drain()); // staged blocks end before the descriptor's slot
            std::uint32_t off = sizeof(header);
            unsigned char* last_tag = nullptr;
            bool first_tag = true;
            while (left && off + tb + (first_tag ? 16u : 0u) <= bs - fmt_.tail_bytes()) {
                while (!(mem_.slots[mem_.running[i]].flags & f_running)) ++i;
                const std::uint32_t s = mem_.running[i++];
                if (mem_.slots[s].flags & f_unsealed) { // the frozen trigger, once per commit
                    opt_.frozen(opt_.frozen_ctx, slot_data(s));
                    mem_.slots[s].flags &= static_cast<std::uint16_t>(~f_unsealed);
                }
                const unsigned char* src = slot_data(s);
                auto p = st.next();
                if (!p) return p.error();
                copy_bytes(*p, src, bs);
                std::uint16_t flags = first_tag ? 0 : tag_same_uuid;
                if (load_be<std::uint32_t>(src) == magic) { // would look like a journal block
                    store_be<std::uint32_t>(*p, 0);
                    flags |= tag_escape;
                    ++stats_.escaped;
                }
                const std::uint64_t home = mem_.slots[s].blkno;
                unsigned char* t = d + off;
                store_be<std::uint32_t>(t, static_cast<std::uint32_t>(home));
                if (fmt_.csum_v3()) {
                    store_be<std::uint32_t>(t + 4, flags);
                    store_be<std::uint32_t>(t + 8, static_cast<std::uint32_t>(home >> 32));
                    store_be<std::uint32_t>(t + 12, tag_checksum(fmt_, tid, *p));
                } else {
                    if (fmt_.csum_v2())
                        store_be<std::uint16_t>(t + 4, static_cast<std::uint16_t>(tag_checksum(fmt_, tid, *p)));
                    store_be<std::uint16_t>(t + 6, flags);
                    if (fmt_.has_64bit()) store_be<std::uint32_t>(t + 8, static_cast<std::uint32_t>(home >> 32));
                }
                last_tag = t;
                off += tb;
                if (first_tag) {
                    copy_bytes(d + off, uuid(), 16);
                    off += 16;
                    first_tag = false;
                }
                ++stats_.logged_blocks;
                --left;
            }
            // Flags are the be16 at byte 6 of every tag format.
            store_be<std::uint16_t>(last_tag + 6, static_cast<std::uint16_t>(load_be<std::uint16_t>(last_tag + 6) | tag_last));
            if (fmt_.csum_v2or3()) store_be<std::uint32_t>(d + bs - 4, tail_checksum(fmt_, d));
            JBTREE_TRY(log_.write_log(dpos, d));
            ++stats_.log_blocks;
            JBTREE_TRY(st.drain());
        }
        JBTREE_TRY(st.drain());
        JBTREE_TRY(flush()); // every log block durable before the commit block

        unsigned char* c = meta_block();
        fill_bytes(c, 0, bs);
        put_header(c, block_type::commit, tid);
        const std::uint64_t now = commit_time();
        store_be<std::uint64_t>(c + commit_sec_offset, now / 1000000000u);
        store_be<std::uint32_t>(c + commit_nsec_offset, static_cast<std::uint32_t>(now % 1000000000u));
        if (fmt_.csum_v2or3()) store_be<std::uint32_t>(c + commit_chksum_offset, commit_checksum(fmt_, c));
        const std::uint32_t cpos = head_;
        head_ = next_log(head_);
        JBTREE_TRY(log_.write_log(cpos, c));
        ++stats_.log_blocks;
        JBTREE_TRY(flush());
        ++stats_.commits;

        // Committed: its blocks now wait for checkpoint in this transaction.
        committed_tx& t = mem_.committed[(committed_first_ + ncommitted_) % mem_.committed_capacity];
        t = committed_tx{tid, start, head_, 0};
        ++ncommitted_;
        for (std::uint32_t k = 0; k < nrunning_; ++k) {
            cache_slot& s = mem_.slots[mem_.running[k]];
            if (!(s.flags & f_running)) continue;
            drop_cp(s);
            s.flags |= f_cp_dirty;
            s.cp_tid = tid;
            ++t.pending;
        }
        ++tid_;
        end_transaction();
        return errc::ok;
    }

    void put_header(unsigned char* b, block_type type, std::uint32_t tid) const noexcept {
        store_be<std::uint32_t>(b, magic);
        store_be<std::uint32_t>(b + 4, static_cast<std::uint32_t>(type));
        store_be<std::uint32_t>(b + 8, tid);
    }
    const unsigned char* uuid() const noexcept { return reinterpret_cast<const superblock*>(sb_block())->s_uuid; }
    std::uint64_t commit_time() noexcept {
        std::uint64_t t = opt_.clock_ns ? opt_.clock_ns(opt_.clock_ctx) : 0;
        if (t <= last_commit_ns_) t = last_commit_ns_ + 1;
        last_commit_ns_ = t;
        return t;
    }

    log_area<Dev> log_;
    journal_memory mem_;
    journal_options opt_{};
    journal_stats stats_{};
    format fmt_{};
    std::uint32_t first_ = 0, last_ = 0; // the log: journal blocks [first_, last_)
    std::uint32_t head_ = 0;             // next journal block to write
    std::uint32_t tail_ = 0;             // start of the oldest live transaction (== head_ if none)
    std::uint32_t tid_ = 0;              // the running (or next) transaction's id
    std::uint32_t max_tx_ = 0;
    std::uint32_t reserved_ = 0;         // credits granted to the running transaction's handles
    std::uint32_t open_handles_ = 0;
    std::uint32_t nrunning_ = 0;
    std::uint32_t nrevokes_ = 0;
    std::uint32_t committed_first_ = 0, ncommitted_ = 0;
    std::uint32_t free_head_ = none, lru_head_ = none, lru_tail_ = none;
    std::uint64_t last_commit_ns_ = 0;
    bool opened_ = false;
    bool running_ = false;
    bool live_ = false; // the superblock's s_start is set (log in use this session)
    bool aborted_ = false;
};

} // namespace jbtree::jbd2
