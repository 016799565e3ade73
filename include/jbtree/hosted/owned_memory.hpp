// SPDX-License-Identifier: MIT
// jbtree (hosted): memory for a jbd2 journal and a volume, owned by
// std::vectors, for tools, tests and benchmarks. The library itself never
// allocates: in a kernel or an embedded caller, fill journal_memory and
// volume_memory from your own allocator instead.
#pragma once

#include <bit>
#include <cstdint>
#include <memory>
#include <vector>

#include "jbtree/journal/jbd2_journal.hpp"
#include "jbtree/volume/volume.hpp"

namespace jbtree::hosted {

struct journal_sizes {
    std::uint32_t block_size = 4096;
    std::uint32_t cache_blocks = 4096;           // the buffer cache
    std::uint32_t max_transaction_blocks = 1024; // capped by open() at a quarter of the log
    std::uint32_t committed_capacity = 1024;     // committed transactions awaiting checkpoint
    std::uint32_t staging_blocks = 130;          // log writes are batched this many blocks at a time
    std::uint32_t bitmap_blocks = 1;             // volumes: the bitmap's length (volume_bitmap_blocks())
    std::uint32_t revoke_capacity = 1u << 16;    // recovery's revoke table
};

// Bitmap blocks a volume of `blocks` blocks of `block_size` bytes needs.
[[nodiscard]] inline std::uint32_t volume_bitmap_blocks(std::uint64_t blocks, std::uint32_t block_size) noexcept {
    const std::uint64_t bits = std::uint64_t{block_size} * 8;
    return static_cast<std::uint32_t>((blocks + bits - 1) / bits);
}

class owned_memory {
public:
    explicit owned_memory(const journal_sizes& z)
        : cache_(new unsigned char[std::size_t{z.block_size} * z.cache_blocks]), slots_(z.cache_blocks),
          buckets_(std::bit_ceil(z.cache_blocks)), running_(z.max_transaction_blocks),
          revokes_(z.max_transaction_blocks), committed_(z.committed_capacity),
          staging_(std::size_t{z.block_size} * z.staging_blocks), bitmap_(std::size_t{z.block_size} * z.bitmap_blocks),
          dirty_(z.bitmap_blocks), rtable_(z.revoke_capacity) {
        vm_.journal = jbd2::journal_memory{cache_.get(),
                                           slots_.data(),
                                           z.cache_blocks,
                                           buckets_.data(),
                                           static_cast<std::uint32_t>(buckets_.size()),
                                           running_.data(),
                                           revokes_.data(),
                                           z.max_transaction_blocks,
                                           committed_.data(),
                                           z.committed_capacity,
                                           staging_.data(),
                                           z.staging_blocks};
        vm_.bitmap = bitmap_.data();
        vm_.bitmap_dirty = dirty_.data();
        vm_.bitmap_blocks = z.bitmap_blocks;
        vm_.revokes = rtable_.data();
        vm_.revoke_capacity = rtable_.size();
    }
    [[nodiscard]] const jbd2::journal_memory& journal() const noexcept { return vm_.journal; }
    [[nodiscard]] const volume_memory& volume() const noexcept { return vm_; }
    // Recovery's memory (shares the staging blocks: use before the journal opens).
    [[nodiscard]] jbd2::recovery_memory recovery(std::uint32_t block_size) noexcept {
        return {staging_.data(), staging_.data() + block_size, rtable_.data(), rtable_.size()};
    }

private:
    // The cache's blocks: left uninitialised (every slot is filled by a
    // read or a create before it is used; zeroing tens of MiB up front
    // would touch every page for nothing).
    std::unique_ptr<unsigned char[]> cache_;
    std::vector<jbd2::cache_slot> slots_;
    std::vector<std::uint32_t> buckets_;
    std::vector<std::uint32_t> running_;
    std::vector<std::uint64_t> revokes_;
    std::vector<jbd2::committed_tx> committed_;
    std::vector<unsigned char> staging_;
    std::vector<unsigned char> bitmap_;
    std::vector<unsigned char> dirty_;
    std::vector<jbd2::revoke_entry> rtable_;
    volume_memory vm_{};
};

} // namespace jbtree::hosted
