// SPDX-License-Identifier: MIT
// jbtree: a BlockStorage that builds trees straight onto a device, holding
// only the nodes the engine has pinned and a bounded write-behind batch:
// the storage of a bulk load whose trees are larger than the memory it may
// use (jbtree-e2fs build writes the maps into the map file's run this way).
//
// Blocks are handed out in order from a run [first, first + count) of the
// device; a block is written when the journal dirties it (null_journal
// writes through at once, which is when the bulk loader seals a finished
// node). Written blocks wait in a batch of `batch_blocks`, written out in
// block order, contiguous ones together, when the batch is full and at
// flush(). read() finds a block in the cache, then in the batch, then on
// the device. free() gives nothing back: the run's blocks before
// end_block() stay the build's (a bulk load frees only when it fails).
//
// Invariants: a pinned slot is never reused; a slot whose block was
// allocated and not yet written ("unwritten") is never evicted (its only
// copy); the batch holds the newest copy of every block written since the
// last batch flush.
//
// Hosted code: allocates its cache and batch once, in the constructor
// (std::vector); not part of the freestanding core.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "jbtree/base/errc.hpp"
#include "jbtree/policy/block_device.hpp"
#include "jbtree/policy/block_storage.hpp"

namespace jbtree::hosted {

struct streaming_storage_options {
    bool checksums = true;
    std::uint32_t checksum_seed = 0;
    std::uint64_t first = 0;            // the run's first block
    std::uint64_t count = 0;            // its length
    std::uint32_t cache_blocks = 64;    // pinned and recently used nodes
    std::uint32_t batch_blocks = 256;   // written nodes waiting to go out together
};

template <BlockDevice Dev>
class streaming_storage {
    struct slot {
        std::uint64_t blkno = 0; // 0: empty
        std::uint32_t pins = 0;
        bool unwritten = false; // allocated, its contents only here
        std::uint64_t used = 0; // for eviction: last use
    };

public:
    class buffer {
    public:
        buffer() noexcept = default;
        buffer(buffer&& o) noexcept : s_(std::exchange(o.s_, nullptr)), i_(o.i_) {}
        buffer& operator=(buffer&& o) noexcept {
            if (this != &o) {
                release();
                s_ = std::exchange(o.s_, nullptr);
                i_ = o.i_;
            }
            return *this;
        }
        ~buffer() { release(); }
        [[nodiscard]] unsigned char* data() noexcept { return s_ ? s_->block(i_) : nullptr; }
        [[nodiscard]] const unsigned char* data() const noexcept { return s_ ? s_->block(i_) : nullptr; }
        [[nodiscard]] std::uint64_t blkno() const noexcept { return s_ ? s_->slots_[i_].blkno : 0; }

    private:
        friend class streaming_storage;
        buffer(streaming_storage* s, std::uint32_t i) noexcept : s_(s), i_(i) { ++s_->slots_[i_].pins; }
        void release() noexcept {
            if (s_) --s_->slots_[i_].pins;
            s_ = nullptr;
        }
        streaming_storage* s_ = nullptr;
        std::uint32_t i_ = 0;
    };

    streaming_storage(Dev& dev, const streaming_storage_options& o)
        : dev_(&dev), opt_(o), bs_(dev.block_size()), next_(o.first),
          cache_(std::size_t{o.cache_blocks} * dev.block_size()), slots_(o.cache_blocks),
          batch_(std::size_t{o.batch_blocks} * dev.block_size()), batch_blk_(o.batch_blocks), order_(o.batch_blocks),
          run_(std::size_t{o.batch_blocks} * dev.block_size()) {}
    streaming_storage(const streaming_storage&) = delete;
    streaming_storage& operator=(const streaming_storage&) = delete;

    [[nodiscard]] std::uint32_t block_size() const noexcept { return bs_; }
    [[nodiscard]] bool checksums() const noexcept { return opt_.checksums; }
    [[nodiscard]] std::uint32_t checksum_seed() const noexcept { return opt_.checksum_seed; }
    // Blocks handed out so far: [first, end_block()).
    [[nodiscard]] std::uint64_t end_block() const noexcept { return next_; }
    // Blocks written to the device so far (batch flushes).
    [[nodiscard]] std::uint64_t blocks_written() const noexcept { return written_; }

    [[nodiscard]] result<buffer> read(std::uint64_t blkno) noexcept {
        if (blkno < opt_.first || blkno >= next_) return errc::range; // never handed out
        for (std::uint32_t i = 0; i < slots_.size(); ++i)
            if (slots_[i].blkno == blkno) {
                slots_[i].used = ++clock_;
                return buffer(this, i);
            }
        auto s = free_slot();
        if (!s) return s.error();
        const std::uint32_t i = *s;
        if (const std::uint32_t b = in_batch(blkno); b != no_batch)
            std::memcpy(block(i), batch_.data() + std::size_t{b} * bs_, bs_);
        else if (const errc e = dev_->read_blocks(blkno, 1, block(i)); e != errc::ok)
            return e;
        slots_[i] = slot{blkno, 0, false, ++clock_};
        return buffer(this, i);
    }

    [[nodiscard]] result<buffer> allocate() noexcept {
        if (next_ >= opt_.first + opt_.count) return errc::no_space;
        auto s = free_slot();
        if (!s) return s.error();
        const std::uint32_t i = *s;
        std::memset(block(i), 0, bs_);
        slots_[i] = slot{next_++, 0, true, ++clock_};
        return buffer(this, i);
    }

    [[nodiscard]] errc free(std::uint64_t blkno) noexcept {
        return blkno >= opt_.first && blkno < next_ ? errc::ok : errc::invalid;
    }

    // The journal dirtied the block: its contents go into the batch.
    [[nodiscard]] errc write(buffer& b) noexcept {
        if (b.s_ != this) return errc::invalid;
        slot& s = slots_[b.i_];
        std::uint32_t k = in_batch(s.blkno);
        if (k == no_batch) {
            if (batched_ == batch_blk_.size()) JBTREE_TRY(flush_batch());
            k = batched_++;
            batch_blk_[k] = s.blkno;
        }
        std::memcpy(batch_.data() + std::size_t{k} * bs_, block(b.i_), bs_);
        s.unwritten = false;
        return errc::ok;
    }

    [[nodiscard]] errc flush() noexcept {
        JBTREE_TRY(flush_batch());
        return dev_->flush();
    }

private:
    static constexpr std::uint32_t no_batch = ~0u;

    [[nodiscard]] unsigned char* block(std::uint32_t i) noexcept { return cache_.data() + std::size_t{i} * bs_; }

    [[nodiscard]] std::uint32_t in_batch(std::uint64_t blkno) const noexcept {
        for (std::uint32_t k = 0; k < batched_; ++k)
            if (batch_blk_[k] == blkno) return k;
        return no_batch;
    }

    // An empty slot, or the least recently used one that is neither pinned
    // nor unwritten; errc::no_memory when every slot is.
    [[nodiscard]] result<std::uint32_t> free_slot() noexcept {
        const slot* best = nullptr;
        for (const slot& s : slots_) {
            if (s.blkno == 0) return static_cast<std::uint32_t>(&s - slots_.data());
            if (s.pins || s.unwritten) continue;
            if (!best || s.used < best->used) best = &s;
        }
        if (!best) return errc::no_memory;
        return static_cast<std::uint32_t>(best - slots_.data());
    }

    // Write the batch in block order, each contiguous run in one call.
    [[nodiscard]] errc flush_batch() noexcept {
        if (batched_ == 0) return errc::ok;
        std::uint32_t* order = order_.data();
        for (std::uint32_t k = 0; k < batched_; ++k) order[k] = k;
        std::sort(order, order + batched_, [&](std::uint32_t a, std::uint32_t b) { return batch_blk_[a] < batch_blk_[b]; });
        for (std::uint32_t a = 0; a < batched_;) {
            std::uint32_t z = a + 1;
            while (z < batched_ && batch_blk_[order[z]] == batch_blk_[order[z - 1]] + 1) ++z;
            for (std::uint32_t k = a; k < z; ++k)
                std::memcpy(run_.data() + std::size_t{k - a} * bs_, batch_.data() + std::size_t{order[k]} * bs_, bs_);
            JBTREE_TRY(dev_->write_blocks(batch_blk_[order[a]], z - a, run_.data()));
            written_ += z - a;
            a = z;
        }
        batched_ = 0;
        return errc::ok;
    }

    Dev* dev_;
    streaming_storage_options opt_;
    std::uint32_t bs_;
    std::uint64_t next_;
    std::uint64_t clock_ = 0, written_ = 0;
    std::vector<unsigned char> cache_;
    std::vector<slot> slots_;
    std::vector<unsigned char> batch_;
    std::vector<std::uint64_t> batch_blk_;
    std::uint32_t batched_ = 0;
    std::vector<std::uint32_t> order_;
    std::vector<unsigned char> run_;
};

} // namespace jbtree::hosted
