// SPDX-License-Identifier: MIT
// jbtree: blocks in RAM, in the on-disk format.
//
// Blocks are block_size() bytes each, 64-byte aligned, so a node in memory
// is byte-for-byte what it would be on disk (like XFS's xfbtree). They are
// carved from chunks, one allocation each: chunk c holds 2^c blocks until
// a chunk reaches max_chunk_bytes, and every later chunk holds that many.
// A block's address is then arithmetic on its number and one pointer from
// a small chunk table (1,500 pointers for 10^7 u64 records in 4 KiB
// blocks), not a per-block pointer table: that table, one pointer per
// block, missed the cache on most reads of a large tree, one more cache
// miss per level of every descent. A storage holds at most one chunk
// (max_chunk_bytes) beyond its blocks, and a small tree as few bytes as
// its blocks. Checksums can be switched off for speed; they are then
// neither computed nor verified and the checksum field stays zero.
//
// Memory comes only from the Allocator policy the caller names (the default
// uses nothrow operator new); running out gives errc::no_memory, and
// max_blocks gives errc::no_space. Freed blocks are poisoned and kept on a
// free list for reuse; chunks go back to the allocator when the storage is
// destroyed.
//
// Buffers are CheckedBlockBuffers: one byte per block remembers that the
// engine verified the node (checksum and contents) since the block was
// made or last handed out through raw_block(), so a lookup verifies each
// node once, not on every access. They are also SealDeferringBuffers: with
// checksums on, a node the engine changed is sealed (its checksum computed)
// when its bytes leave the storage through raw_block(), once, not after
// every change; until then the same byte says the checksum is stale.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <new>

#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"
#include "jbtree/node/header.hpp"
#include "jbtree/policy/block_storage.hpp"

namespace jbtree {

// Default allocator: nothrow, aligned global operator new/delete.
struct heap_allocator {
    [[nodiscard]] void* allocate(std::size_t n, std::size_t align) noexcept {
        return ::operator new(n, std::align_val_t{align}, std::nothrow);
    }
    void deallocate(void* p, std::size_t /*n*/, std::size_t align) noexcept {
        ::operator delete(p, std::align_val_t{align});
    }
};

struct memory_storage_options {
    std::uint32_t block_size = 4096;
    bool checksums = false;          // compute and verify node checksums
    std::uint32_t checksum_seed = 0; // crc32c seed (a volume would derive it from its UUID)
    std::uint64_t max_blocks = 0;    // 0: no limit other than memory
    // The number of the first block handed out (then first_block + 1, ...):
    // a tree built here for a device range (e.g. a volume's data area,
    // data_start) has the block numbers it will have there, so its blocks
    // can be written out unchanged. At least 1.
    std::uint64_t first_block = 1;
};

template <class Allocator = heap_allocator>
class memory_storage {
public:
    // A pinned block: memory blocks never move, so the pin is just a pointer.
    // Trivially default-constructible (arrays of buffers cost nothing to
    // make); buffer{} is the empty buffer.
    class buffer {
    public:
        buffer() noexcept = default;
        buffer(unsigned char* p, std::uint64_t n, memory_storage* s) noexcept : p_(p), blkno_(n), s_(s) {}
        [[nodiscard]] unsigned char* data() noexcept { return p_; }
        [[nodiscard]] const unsigned char* data() const noexcept { return p_; }
        [[nodiscard]] std::uint64_t blkno() const noexcept { return blkno_; }
        // CheckedBlockBuffer
        [[nodiscard]] bool checked() const noexcept { return (state() & state_checked) != 0; }
        void set_checked() noexcept { state() = static_cast<unsigned char>(state() | state_checked); }
        // SealDeferringBuffer: the storage seals the node when raw_block()
        // hands it out. The engine's own change counts as checked.
        [[nodiscard]] bool defer_seal() noexcept {
            state() = static_cast<unsigned char>(state_checked | state_unsealed);
            return true;
        }
        [[nodiscard]] bool sealed() const noexcept { return (state() & state_unsealed) == 0; }

    private:
        // This block's byte in the storage's table (found again on every
        // use: the table moves when it grows).
        [[nodiscard]] unsigned char& state() const noexcept { return s_->state_[blkno_ - s_->opt_.first_block + 1]; }
        unsigned char* p_;
        std::uint64_t blkno_;
        memory_storage* s_;
    };

    // Fill byte of freed blocks: makes use of a freed node fail validation.
    static constexpr unsigned char poison = 0xDB;
    static constexpr std::size_t alignment = 64;
    // The largest chunk: what a storage may hold beyond its blocks.
    static constexpr std::uint32_t max_chunk_bytes = 128 * 1024;

    // The options are checked by the first allocate(): a bad block size then
    // gives errc::invalid. Use valid_block_size() to check up front.
    explicit memory_storage(const memory_storage_options& o = {}, Allocator a = Allocator{}) noexcept
        : opt_(o), alloc_(a),
          block_shift_(valid_block_size(o.block_size) ? static_cast<unsigned>(std::countr_zero(o.block_size)) : 0),
          chunk_shift_(valid_block_size(o.block_size) && o.block_size < max_chunk_bytes
                           ? static_cast<unsigned>(std::countr_zero(max_chunk_bytes / o.block_size))
                           : 0) {}
    memory_storage(const memory_storage&) = delete;
    memory_storage& operator=(const memory_storage&) = delete;
    ~memory_storage() {
        for (std::uint32_t c = 0; c < nchunks_; ++c) alloc_.deallocate(chunks_[c], chunk_bytes(c), alignment);
        if (chunks_) alloc_.deallocate(chunks_, index_bytes(cap_), alignof(unsigned char*));
    }

    [[nodiscard]] std::uint32_t block_size() const noexcept { return opt_.block_size; }
    [[nodiscard]] bool checksums() const noexcept { return opt_.checksums; }
    [[nodiscard]] std::uint32_t checksum_seed() const noexcept { return opt_.checksum_seed; }

    [[nodiscard]] result<buffer> read(std::uint64_t blkno) noexcept {
        const std::uint64_t i = slot(blkno);
        if (i == 0) return errc::io; // no such block
        return buffer{block_at(i), blkno, this};
    }

    [[nodiscard]] result<buffer> allocate() noexcept {
        if (!valid_block_size(opt_.block_size) || opt_.first_block == 0) return errc::invalid;
        if (opt_.max_blocks && in_use_ >= opt_.max_blocks) return errc::no_space;
        std::uint64_t n;
        if (free_head_) {
            n = free_head_;
            free_head_ = load_le<std::uint64_t>(block_at(n));
        } else {
            if (used_ == 0) used_ = 1; // slot 0 is never handed out
            if (used_ >= cap_ && !grow_index()) return errc::no_memory;
            if (used_ == chunk_start(nchunks_)) { // the first block of a new chunk
                void* p = alloc_.allocate(chunk_bytes(nchunks_), alignment);
                if (!p) return errc::no_memory;
                chunks_[nchunks_++] = static_cast<unsigned char*>(p);
            }
            n = used_++;
        }
        ++in_use_;
        unsigned char* p = block_at(n);
        fill_bytes(p, 0, opt_.block_size);
        state_[n] = 0;
        return buffer{p, n + opt_.first_block - 1, this};
    }

    [[nodiscard]] errc free(std::uint64_t blkno) noexcept {
        const std::uint64_t i = slot(blkno);
        if (i == 0) return errc::invalid;
        unsigned char* p = block_at(i);
        fill_bytes(p, poison, opt_.block_size);
        state_[i] = 0;
        store_le<std::uint64_t>(p, free_head_); // free list threads through freed blocks
        free_head_ = i;
        --in_use_;
        return errc::ok;
    }

    [[nodiscard]] errc write(buffer&) noexcept { return errc::ok; } // already in place
    [[nodiscard]] errc flush() noexcept { return errc::ok; }

    // Blocks currently allocated (not free).
    [[nodiscard]] std::uint64_t blocks_in_use() const noexcept { return in_use_; }
    // Bytes this storage holds from its allocator: its chunks (every block
    // ever made, free ones kept for reuse, and the last chunk's blocks not
    // handed out yet) plus the chunk table and state bytes.
    [[nodiscard]] std::uint64_t bytes_reserved() const noexcept {
        const std::uint64_t chunk_slots = chunk_start(nchunks_) - 1; // slots 1 .. of chunks [0, nchunks_)
        return (chunk_slots << block_shift_) + (chunks_ ? index_bytes(cap_) : 0);
    }
    // Direct access to a block's bytes: for tests that corrupt blocks on
    // purpose, and for writing built blocks out to a device. nullptr if
    // blkno was never handed out. A node changed since it was last sealed
    // is sealed first, so the bytes are exactly what a device would hold.
    // The block counts as changed behind the engine's back: its next read
    // verifies it again.
    [[nodiscard]] unsigned char* raw_block(std::uint64_t blkno) noexcept {
        const std::uint64_t i = slot(blkno);
        if (!i) return nullptr;
        unsigned char* p = block_at(i);
        if (state_[i] & state_unsealed) seal_node(p, opt_.block_size, opt_.checksum_seed);
        state_[i] = 0;
        return p;
    }
    // Block numbers handed out so far lie in [first_block, end_block()).
    [[nodiscard]] std::uint64_t end_block() const noexcept {
        return opt_.first_block + (used_ ? used_ - 1 : 0);
    }

private:
    // Table index of a block number handed out, 0 if none.
    // (One compare: a blkno below first_block wraps to an index >= used_
    // or to 0, and nothing is handed out, used_ == 0, while first_block is
    // 0, which allocate() refuses.)
    [[nodiscard]] std::uint64_t slot(std::uint64_t blkno) const noexcept {
        const std::uint64_t i = blkno - opt_.first_block + 1;
        return i < used_ ? i : 0;
    }
    // Slot i (>= 1) lies in chunk c = chunk_of(i): chunk c < chunk_shift_
    // holds slots [2^c, 2^(c+1)), every later chunk 2^chunk_shift_ slots,
    // from chunk_start(c) on. Both kinds of chunk are computed and one is
    // selected, without a branch: in a small tree a read lands in either
    // about as often.
    struct chunk_slot {
        std::uint64_t c;     // the chunk
        std::uint64_t start; // its first slot
    };
    [[nodiscard]] chunk_slot chunk_of(std::uint64_t i) const noexcept {
        const std::uint64_t full = i >> chunk_shift_; // 0 for the growing chunks
        const auto lg = static_cast<unsigned>(std::bit_width(i) - 1);
        const bool growing = full == 0;
        return {growing ? lg : full + chunk_shift_ - 1, growing ? std::uint64_t{1} << lg : full << chunk_shift_};
    }
    [[nodiscard]] std::uint64_t chunk_start(std::uint64_t c) const noexcept {
        return c < chunk_shift_ ? std::uint64_t{1} << c : (c - chunk_shift_ + 1) << chunk_shift_;
    }
    [[nodiscard]] std::uint64_t chunk_bytes(std::uint64_t c) const noexcept {
        return (chunk_start(c + 1) - chunk_start(c)) << block_shift_;
    }
    // The bytes of slot i (handed out: 0 < i < used_). The hot path of
    // every read: a few shifts and one load from the chunk table.
    [[nodiscard]] unsigned char* block_at(std::uint64_t i) const noexcept {
        const chunk_slot at = chunk_of(i);
        return chunks_[at.c] + ((i - at.start) << block_shift_);
    }
    // One allocation, the index, holds the chunk table (room for the chunks
    // of cap slots), then one state byte per slot.
    [[nodiscard]] std::uint64_t index_chunks(std::uint64_t cap) const noexcept { return chunk_of(cap - 1).c + 1u; }
    [[nodiscard]] std::uint64_t index_bytes(std::uint64_t cap) const noexcept {
        return index_chunks(cap) * sizeof(unsigned char*) + cap;
    }
    bool grow_index() noexcept {
        const std::uint64_t cap = cap_ ? cap_ * 2 : 64;
        auto t = static_cast<unsigned char**>(alloc_.allocate(index_bytes(cap), alignof(unsigned char*)));
        if (!t) return false;
        auto* st = reinterpret_cast<unsigned char*>(t + index_chunks(cap));
        fill_bytes(st, 0, cap);
        if (chunks_) {
            copy_bytes(t, chunks_, nchunks_ * sizeof(unsigned char*));
            copy_bytes(st, state_, used_);
            alloc_.deallocate(chunks_, index_bytes(cap_), alignof(unsigned char*));
        }
        chunks_ = t;
        state_ = st;
        cap_ = cap;
        return true;
    }
    // State byte bits: verified since made or raw_block(); checksum stale.
    static constexpr unsigned char state_checked = 1, state_unsealed = 2;

    memory_storage_options opt_;
    [[no_unique_address]] Allocator alloc_;
    unsigned block_shift_; // log2(block_size), 0 while the block size is invalid
    unsigned chunk_shift_; // log2(blocks in a full-sized chunk)
    unsigned char** chunks_ = nullptr; // chunks_[c]: chunk c, for c < nchunks_
    unsigned char* state_ = nullptr;   // state_[i]: state_checked, state_unsealed of slot i
    std::uint32_t nchunks_ = 0;
    std::uint64_t cap_ = 0;       // slots the index has room for
    std::uint64_t used_ = 0;      // slots handed out so far, including the unused slot 0
    std::uint64_t in_use_ = 0;    // allocated, not freed
    std::uint64_t free_head_ = 0; // first freed slot, 0 = none
};

static_assert(BlockStorage<memory_storage<>>);
static_assert(CheckedBlockBuffer<memory_storage<>::buffer>);
static_assert(SealDeferringBuffer<memory_storage<>::buffer>);

} // namespace jbtree
