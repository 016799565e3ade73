// SPDX-License-Identifier: MIT
// jbtree: where a jbd2 journal lives on a BlockDevice.
//
// A journal is a sequence of device blocks: one contiguous range of a file,
// or the extents of an ext4 journal inode in logical order. Journal block j
// (0 = the journal superblock) maps to a device block through the extent
// list. log_area is also the LogDevice that recovery reads and writes, so the
// same mapping serves the writer and the replayer.
#pragma once

#include <cstdint>

#include "jbtree/base/errc.hpp"
#include "jbtree/journal/jbd2_recovery.hpp"
#include "jbtree/policy/block_device.hpp"
#include "jbtree/policy/block_storage.hpp"

namespace jbtree::jbd2 {

// `count` device blocks from `start`, the next piece of the journal.
struct log_extent {
    std::uint64_t start = 0;
    std::uint32_t count = 0;
};

template <BlockDevice Dev>
class log_area {
public:
    // The extents are the caller's and must outlive the log_area.
    log_area(Dev& dev, const log_extent* extents, std::uint32_t n) noexcept : dev_(&dev), ext_(extents), n_(n) {
        std::uint64_t total = 0;
        bool ok = n > 0 && valid_block_size(dev.block_size());
        for (std::uint32_t i = 0; ok && i < n; ++i) {
            const log_extent& e = extents[i];
            ok = e.count > 0 && e.start < dev.block_count() && e.count <= dev.block_count() - e.start;
            total += e.count;
        }
        ok = ok && total <= 0xFFFFFFFFu;
        total_ = ok ? static_cast<std::uint32_t>(total) : 0;
    }

    // False if an extent is empty or outside the device, or there is none.
    [[nodiscard]] bool valid() const noexcept { return total_ != 0; }
    [[nodiscard]] Dev& device() const noexcept { return *dev_; }

    // LogDevice
    [[nodiscard]] std::uint32_t block_size() const noexcept { return dev_->block_size(); }
    [[nodiscard]] std::uint32_t journal_blocks() const noexcept { return total_; }
    [[nodiscard]] errc read_log(std::uint32_t j, unsigned char* out) noexcept {
        std::uint32_t run = 0;
        const std::uint64_t b = map(j, run);
        if (!run) return errc::range;
        return dev_->read_blocks(b, 1, out);
    }
    [[nodiscard]] errc write_log(std::uint32_t j, const unsigned char* in) noexcept { return write_log_run(j, 1, in); }
    [[nodiscard]] errc write_home(std::uint64_t blk, const unsigned char* in) noexcept {
        return dev_->write_blocks(blk, 1, in);
    }
    [[nodiscard]] errc flush() noexcept { return dev_->flush(); }

    // Write n blocks to journal blocks j .. j+n-1 (not wrapping), split at
    // extent boundaries.
    [[nodiscard]] errc write_log_run(std::uint32_t j, std::uint32_t n, const unsigned char* in) noexcept {
        const std::uint32_t bs = dev_->block_size();
        while (n) {
            std::uint32_t run = 0;
            const std::uint64_t b = map(j, run);
            if (!run) return errc::range;
            const std::uint32_t k = run < n ? run : n;
            JBTREE_TRY(dev_->write_blocks(b, k, in));
            in += std::size_t{k} * bs;
            j += k;
            n -= k;
        }
        return errc::ok;
    }

    // Device block of journal block j, and in `run` how many journal blocks
    // from j are contiguous on the device (0 if j is outside the journal).
    [[nodiscard]] std::uint64_t map(std::uint32_t j, std::uint32_t& run) noexcept {
        run = 0;
        if (j >= total_) return 0;
        // Journals are read and written in order: start from the last hit.
        if (j < hint_base_) hint_ = 0, hint_base_ = 0;
        for (; hint_ < n_; hint_base_ += ext_[hint_].count, ++hint_) {
            if (j < hint_base_ + ext_[hint_].count) {
                run = hint_base_ + ext_[hint_].count - j;
                return ext_[hint_].start + (j - hint_base_);
            }
        }
        return 0; // unreachable: j < total_
    }

private:
    Dev* dev_;
    const log_extent* ext_;
    std::uint32_t n_;
    std::uint32_t total_ = 0;
    std::uint32_t hint_ = 0;      // extent of the last lookup
    std::uint32_t hint_base_ = 0; // journal block where extent hint_ starts
};

} // namespace jbtree::jbd2
