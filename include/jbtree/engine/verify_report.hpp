// SPDX-License-Identifier: MIT
// jbtree: what btree::verify() found.
//
// A report, not a bool: every problem names the block (and entry index)
// where it was seen. The first max_problems problems are kept; the total is
// always counted.
#pragma once

#include <cstdint>

#include "jbtree/base/errc.hpp"
#include "jbtree/node/validate.hpp"

namespace jbtree {

enum class problem_kind : std::uint8_t {
    read_error,    // the storage could not read the block (error holds why)
    bad_node,      // the node failed validation (fault holds which check)
    key_order,     // keys inside a node are not strictly increasing (index: the later key)
    key_bound,     // a key is >= the next separator of the parent (outside its subtree's range)
    entry_key,     // an internal entry's key is not its child's first key
    entry_high,    // an internal entry's high key is not its subtree's largest high key
    null_child,    // an internal entry points at block 0
    sibling_link,  // leaf left/right links disagree with the key order of the leaves
    bad_value,     // a record's value does not decode, or the traits reject the record (valid_record)
    record_count,  // the anchor's record count differs from the records found
    bad_anchor,    // root/height/records of the anchor are inconsistent
};

[[nodiscard]] constexpr const char* describe(problem_kind k) noexcept {
    switch (k) {
    case problem_kind::read_error: return "read error";
    case problem_kind::bad_node: return "bad node";
    case problem_kind::key_order: return "keys out of order";
    case problem_kind::key_bound: return "key outside parent's range";
    case problem_kind::entry_key: return "internal key differs from child's first key";
    case problem_kind::entry_high: return "internal high key differs from child's highest key";
    case problem_kind::null_child: return "null child pointer";
    case problem_kind::sibling_link: return "bad leaf sibling link";
    case problem_kind::bad_value: return "record does not decode or is out of range";
    case problem_kind::record_count: return "record count mismatch";
    case problem_kind::bad_anchor: return "inconsistent tree anchor";
    }
    return "unknown problem";
}

struct verify_problem {
    problem_kind kind = problem_kind::bad_node;
    node_fault fault = node_fault::none; // for bad_node
    errc error = errc::ok;               // for read_error
    std::uint64_t blkno = 0;             // block where it was seen
    std::uint32_t index = 0;             // entry index inside that block, where it applies
};

struct verify_report {
    static constexpr std::uint32_t max_problems = 32;

    std::uint64_t nodes = 0;   // nodes visited and valid
    std::uint64_t leaves = 0;
    std::uint64_t records = 0; // records found in valid leaves
    std::uint32_t height = 0;
    std::uint32_t problem_count = 0; // all problems, including those not kept
    verify_problem problems[max_problems] = {};

    [[nodiscard]] bool clean() const noexcept { return problem_count == 0; }
    [[nodiscard]] std::uint32_t kept() const noexcept {
        return problem_count < max_problems ? problem_count : max_problems;
    }
    [[nodiscard]] bool has(problem_kind k) const noexcept {
        for (std::uint32_t i = 0; i < kept(); ++i)
            if (problems[i].kind == k) return true;
        return false;
    }
    void add(const verify_problem& p) noexcept {
        if (problem_count < max_problems) problems[problem_count] = p;
        ++problem_count;
    }
};

} // namespace jbtree
