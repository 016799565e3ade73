// SPDX-License-Identifier: MIT
// jbtree: what a map's verify() found.
//
// A map's verify() first runs the engine's btree::verify() (structure:
// nodes, keys, links, counts) and then, if the structure is sound, walks
// the records and checks what only the map knows (lengths, owners, flags,
// overlaps). Each map defines its own problem kinds.
#pragma once

#include <cstdint>

#include "jbtree/base/errc.hpp"
#include "jbtree/engine/verify_report.hpp"

namespace jbtree {

template <class Kind>
struct map_problem {
    Kind kind{};
    errc error = errc::ok;      // when the record walk itself failed
    std::uint64_t start = 0;    // the record's first block
    std::uint64_t detail = 0;   // map-specific (rmap: the owner)
};

template <class Kind>
struct map_verify_report {
    static constexpr std::uint32_t max_problems = 32;

    verify_report tree;              // the engine's structural check
    std::uint64_t records = 0;       // records the map-level walk checked
    std::uint64_t mergeable = 0;     // neighbour pairs that could be one record (not an error)
    std::uint32_t problem_count = 0; // map-level problems, including those not kept
    map_problem<Kind> problems[max_problems] = {};

    [[nodiscard]] bool clean() const noexcept { return tree.clean() && problem_count == 0; }
    [[nodiscard]] std::uint32_t kept() const noexcept {
        return problem_count < max_problems ? problem_count : max_problems;
    }
    [[nodiscard]] bool has(Kind k) const noexcept {
        for (std::uint32_t i = 0; i < kept(); ++i)
            if (problems[i].kind == k) return true;
        return false;
    }
    void add(Kind k, std::uint64_t start, std::uint64_t detail = 0, errc e = errc::ok) noexcept {
        if (problem_count < max_problems) problems[problem_count] = map_problem<Kind>{k, e, start, detail};
        ++problem_count;
    }
};

} // namespace jbtree
