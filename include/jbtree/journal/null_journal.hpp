// SPDX-License-Identifier: MIT
// jbtree: the no-op journal (write-through, no atomicity).
//
// Each dirty block goes straight to BlockStorage::write(). Nothing is
// atomic across a crash; use it for memory trees and for tools that rebuild
// from scratch. It still keeps the credit books so that tests can check the
// engine's declared worst cases: every get_*_access call costs one credit
// (jbd2 charges once per block per transaction, so this is an upper bound).
#pragma once

#include <cstdint>

#include "jbtree/base/errc.hpp"
#include "jbtree/policy/block_storage.hpp"
#include "jbtree/policy/journal.hpp"

namespace jbtree {

template <BlockStorage Storage>
class null_journal {
public:
    struct handle {
        std::uint32_t credits = 0; // left; unlimited_credits never runs down
        std::uint32_t used = 0;    // access calls charged so far
        std::uint64_t tid = 0;
        bool open = false;
    };

    explicit null_journal(Storage& s) noexcept : storage_(&s) {}

    [[nodiscard]] result<handle> start(std::uint32_t credits) noexcept {
        if (credits == 0) return errc::invalid;
        return handle{credits, 0, ++tid_, true};
    }
    [[nodiscard]] std::uint32_t credits_left(const handle& h) const noexcept { return h.credits; }
    [[nodiscard]] std::uint64_t transaction_id(const handle& h) const noexcept { return h.tid; }

    [[nodiscard]] errc get_write_access(handle& h, typename Storage::buffer&) noexcept { return charge(h); }
    [[nodiscard]] errc get_create_access(handle& h, typename Storage::buffer&) noexcept { return charge(h); }
    [[nodiscard]] errc dirty_metadata(handle& h, typename Storage::buffer& b) noexcept {
        if (!h.open) return errc::invalid;
        return storage_->write(b);
    }
    [[nodiscard]] errc forget(handle& h, std::uint64_t) noexcept { return h.open ? errc::ok : errc::invalid; }
    [[nodiscard]] errc stop(handle& h) noexcept {
        if (!h.open) return errc::invalid;
        h.open = false;
        return errc::ok;
    }

private:
    static errc charge(handle& h) noexcept {
        if (!h.open) return errc::invalid;
        ++h.used;
        if (h.credits == unlimited_credits) return errc::ok;
        if (h.credits == 0) return errc::no_credits;
        --h.credits;
        return errc::ok;
    }

    Storage* storage_;
    std::uint64_t tid_ = 0;
};

} // namespace jbtree
