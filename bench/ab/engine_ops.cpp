// SPDX-License-Identifier: MIT
// One engine version's insert/find/erase pass, for bench/ab/run.sh.
//
// Compiled once per version, each time against that version's include/
// tree and with -Djbtree=<name> -DAB_RUN=<function>, so that two versions
// of the header-only engine live in one program under different namespace
// names (the include paths in the headers are strings: the macro does not
// touch them).
#include <jbtree/engine/btree.hpp>
#include <jbtree/journal/null_journal.hpp>
#include <jbtree/records/basic.hpp>
#include <jbtree/storage/memory_storage.hpp>

#include "ab_clock.hpp"

#include <cstdint>
#include <cstdlib>
#include <vector>

#ifndef AB_RUN
#error "define AB_RUN, the name of this version's entry point"
#endif

// Insert `ins` into an empty u64 -> u64 tree (4 KiB blocks, memory
// storage, checksums off), find every key of `fnd`, erase every key of
// `ers`; ns per operation of each phase into out[0..2] (thread CPU time).
void AB_RUN(const std::vector<std::uint64_t>& ins, const std::vector<std::uint64_t>& fnd,
            const std::vector<std::uint64_t>& ers, double* out) {
    using namespace jbtree;
    using S = memory_storage<>;
    S s({4096, false, 0});
    null_journal<S> j(s);
    auto t = btree<u64_map_traits, S, null_journal<S>>::create(s, j, 1);
    auto h = j.start(unlimited_credits);
    if (!t || !h) std::abort();
    const double t0 = ab_now();
    for (std::uint64_t k : ins)
        if (t->insert(*h, k, k) != errc::ok) std::abort();
    const double t1 = ab_now();
    std::uint64_t sum = 0;
    for (std::uint64_t k : fnd) {
        auto r = t->find(k);
        if (!r) std::abort();
        sum += *r;
    }
    const double t2 = ab_now();
    for (std::uint64_t k : ers)
        if (t->erase(*h, k) != errc::ok) std::abort();
    const double t3 = ab_now();
    ab_keep(sum);
    out[0] = (t1 - t0) / static_cast<double>(ins.size());
    out[1] = (t2 - t1) / static_cast<double>(fnd.size());
    out[2] = (t3 - t2) / static_cast<double>(ers.size());
}
