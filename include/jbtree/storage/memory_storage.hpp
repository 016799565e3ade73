// SPDX-License-Identifier: MIT
// jbtree: blocks in RAM, in the on-disk format.
//
// Every block is a separately allocated, 64-byte aligned array of
// block_size() bytes, reached through a table indexed by block number, so a
// node in memory is byte-for-byte what it would be on disk (like XFS's
// xfbtree). Checksums can be switched off for speed; they are then neither
// computed nor verified and the checksum field stays zero.
//
// Memory comes only from the Allocator policy the caller names (the default
// uses nothrow operator new); running out gives errc::no_memory, and
// max_blocks gives errc::no_space. Freed blocks are poisoned and kept on a
// free list for reuse.
//
// Buffers are CheckedBlockBuffers: one byte per block remembers that the
// engine verified the node (checksum and contents) since the block was
// made or last handed out through raw_block(), so a lookup verifies each
// node once, not on every access. They are also SealDeferringBuffers: with
// checksums on, a node the engine changed is sealed (its checksum computed)
// when its bytes leave the storage through raw_block(), once, not after
// every change; until then the same byte says the checksum is stale.
#pragma once

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

    // The options are checked by the first allocate(): a bad block size then
    // gives errc::invalid. Use valid_block_size() to check up front.
    explicit memory_storage(const memory_storage_options& o = {}, Allocator a = Allocator{}) noexcept
        : opt_(o), alloc_(a) {}
    memory_storage(const memory_storage&) = delete;
    memory_storage& operator=(const memory_storage&) = delete;
    ~memory_storage() {
        for (std::uint64_t i = 1; i < used_; ++i) alloc_.deallocate(table_[i], opt_.block_size, alignment);
        if (table_) alloc_.deallocate(table_, table_cap_ * slot_bytes, alignof(unsigned char*));
    }

    [[nodiscard]] std::uint32_t block_size() const noexcept { return opt_.block_size; }
    [[nodiscard]] bool checksums() const noexcept { return opt_.checksums; }
    [[nodiscard]] std::uint32_t checksum_seed() const noexcept { return opt_.checksum_seed; }

    [[nodiscard]] result<buffer> read(std::uint64_t blkno) noexcept {
        const std::uint64_t i = slot(blkno);
        if (i == 0) return errc::io; // no such block
        return buffer{table_[i], blkno, this};
    }

    [[nodiscard]] result<buffer> allocate() noexcept {
        if (!valid_block_size(opt_.block_size) || opt_.first_block == 0) return errc::invalid;
        if (opt_.max_blocks && in_use_ >= opt_.max_blocks) return errc::no_space;
        std::uint64_t n;
        if (free_head_) {
            n = free_head_;
            free_head_ = load_le<std::uint64_t>(table_[n]);
        } else {
            if (used_ == 0) used_ = 1; // block 0 is never handed out
            if (used_ >= table_cap_ && !grow_table()) return errc::no_memory;
            void* p = alloc_.allocate(opt_.block_size, alignment);
            if (!p) return errc::no_memory;
            n = used_++;
            table_[n] = static_cast<unsigned char*>(p);
        }
        ++in_use_;
        fill_bytes(table_[n], 0, opt_.block_size);
        state_[n] = 0;
        return buffer{table_[n], n + opt_.first_block - 1, this};
    }

    [[nodiscard]] errc free(std::uint64_t blkno) noexcept {
        const std::uint64_t i = slot(blkno);
        if (i == 0) return errc::invalid;
        unsigned char* p = table_[i];
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
    // Bytes this storage holds from its allocator: every block ever made
    // (free ones are kept for reuse) plus the block table.
    [[nodiscard]] std::uint64_t bytes_reserved() const noexcept {
        const std::uint64_t blocks = used_ ? used_ - 1 : 0;
        return blocks * opt_.block_size + table_cap_ * slot_bytes;
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
        if (state_[i] & state_unsealed) seal_node(table_[i], opt_.block_size, opt_.checksum_seed);
        state_[i] = 0;
        return table_[i];
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
    // One allocation holds the block pointers, then the state bytes.
    bool grow_table() noexcept {
        const std::uint64_t cap = table_cap_ ? table_cap_ * 2 : 64;
        auto t = static_cast<unsigned char**>(alloc_.allocate(cap * slot_bytes, alignof(unsigned char*)));
        if (!t) return false;
        auto* c = reinterpret_cast<unsigned char*>(t + cap);
        fill_bytes(c, 0, cap);
        if (table_) {
            copy_bytes(t, table_, used_ * sizeof(unsigned char*));
            copy_bytes(c, state_, used_);
            alloc_.deallocate(table_, table_cap_ * slot_bytes, alignof(unsigned char*));
        }
        table_ = t;
        state_ = c;
        table_cap_ = cap;
        return true;
    }
    static constexpr std::size_t slot_bytes = sizeof(unsigned char*) + 1; // pointer + state byte
    // State byte bits: verified since made or raw_block(); checksum stale.
    static constexpr unsigned char state_checked = 1, state_unsealed = 2;

    memory_storage_options opt_;
    [[no_unique_address]] Allocator alloc_;
    unsigned char** table_ = nullptr;
    unsigned char* state_ = nullptr; // state_[i]: state_checked, state_unsealed of table_[i]
    std::uint64_t table_cap_ = 0;
    std::uint64_t used_ = 0;      // table slots in use, including the unused slot 0
    std::uint64_t in_use_ = 0;    // allocated, not freed
    std::uint64_t free_head_ = 0; // first freed block, 0 = none
};

static_assert(BlockStorage<memory_storage<>>);
static_assert(CheckedBlockBuffer<memory_storage<>::buffer>);
static_assert(SealDeferringBuffer<memory_storage<>::buffer>);

} // namespace jbtree
