// SPDX-License-Identifier: MIT
// jbtree: the Journal policy.
//
// The interface mirrors the jbd2 handle API one to one, so a kernel shim can
// map each call onto jbd2_journal_start/get_write_access/... directly:
//
//   typename handle;                                   movable, by value
//   result<handle> start(std::uint32_t credits);       jbd2_journal_start
//   std::uint32_t credits_left(const handle&) const;   h_total_credits - used
//   std::uint64_t transaction_id(const handle&) const; stamped into node headers
//   errc get_write_access(handle&, buffer&);           before changing a block
//   errc get_create_access(handle&, buffer&);          for a newly allocated block
//   errc dirty_metadata(handle&, buffer&);             block changed (content final
//                                                      for this operation)
//   errc forget(handle&, std::uint64_t blkno);         block freed: revoke it
//   errc stop(handle&);                                jbd2_journal_stop
//
// Optional: std::uint64_t forgets_left(const handle&) const, how many more
// blocks the running transaction can forget (jbd2 bounds its revoke
// records). Operations that free many blocks at once (btree::destroy)
// check it first when the journal has it.
//
// Credit contract: every mutating engine operation first checks
// credits_left() against its declared worst case (btree::insert_credits()
// and friends) and fails with errc::no_credits, changing nothing, when the
// handle is short. An operation calls get_*_access at most once per block.
// Once an operation has started changing blocks, a get_*_access failure can
// only mean the journal itself failed (aborted); the transaction must then
// not commit, exactly as with jbd2.
#pragma once

#include <concepts>
#include <cstdint>

#include "jbtree/base/errc.hpp"
#include "jbtree/policy/block_storage.hpp"

namespace jbtree {

// Passing this to start() asks for a handle whose credits never run out
// (useful with journals that give no atomicity anyway).
inline constexpr std::uint32_t unlimited_credits = 0xFFFFFFFFu;

template <class J, class S>
concept Journal = BlockStorage<S> && requires(J& j, const J& cj, typename J::handle& h,
                                              const typename J::handle& ch, typename S::buffer& b,
                                              std::uint64_t blkno, std::uint32_t credits) {
    typename J::handle;
    { j.start(credits) } noexcept -> std::same_as<result<typename J::handle>>;
    { cj.credits_left(ch) } noexcept -> std::same_as<std::uint32_t>;
    { cj.transaction_id(ch) } noexcept -> std::same_as<std::uint64_t>;
    { j.get_write_access(h, b) } noexcept -> std::same_as<errc>;
    { j.get_create_access(h, b) } noexcept -> std::same_as<errc>;
    { j.dirty_metadata(h, b) } noexcept -> std::same_as<errc>;
    { j.forget(h, blkno) } noexcept -> std::same_as<errc>;
    { j.stop(h) } noexcept -> std::same_as<errc>;
};

} // namespace jbtree
