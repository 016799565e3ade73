// SPDX-License-Identifier: MIT
// Credits (and revoke credits) each kmaps call reserves, at tree heights
// 1-4: the maps' own worst-case figures, plus the anchor block's credit
// that kmaps adds (examples/kernel_shim/kmaps.cpp). Revoke credits equal
// buffer credits there (a node can only be freed after being counted among
// the blocks an operation may touch). Trees are grown in memory with
// 512-byte nodes so that height 4 is reached quickly; the figures depend
// only on the height.
#include <jbtree/jbtree.hpp>
#include <jbtree/maps/parent_map.hpp>
#include <jbtree/maps/refcount_map.hpp>
#include <jbtree/maps/rmap.hpp>

#include <cstdio>
#include <string>

using namespace jbtree;
using S = memory_storage<>;
using J = null_journal<S>;

int main() {
    S s({1024, false, 0});
    J j(s);
    auto rm = rmap<S, J>::create(s, j, 1);
    auto rc = refcount_map<S, J>::create(s, j, 2);
    auto pm = parent_map<S, J>::create(s, j, 3);
    if (!rm || !rc || !pm) return 1;
    auto h = j.start(unlimited_credits);
    std::printf("| height | rmap map | rmap unmap (one record) | refcount adjust step | parent add | parent remove |\n");
    std::printf("|---|---|---|---|---|---|\n");
    std::uint64_t i = 0;
    for (unsigned want = 1; want <= 4; ++want) {
        while (rm->tree().height() < want || rc->tree().height() < want || pm->tree().height() < want) {
            if (rm->tree().height() < want && rm->map(*h, 10 * i, 4, 12, 0, 0) != errc::ok) return 2;
            if (rc->tree().height() < want && !rc->adjust(*h, 10 * i, 2, +1)) return 3;
            const std::string name = "name-" + std::to_string(i);
            if (pm->tree().height() < want && pm->add(*h, 100 + i, 2, 1, name_ref(name.data(), name.size())) != errc::ok)
                return 4;
            ++i;
        }
        if (rm->tree().height() != want || rc->tree().height() != want || pm->tree().height() != want) continue;
        auto un = rm->unmap_credits(0, 4, 12, 0);
        if (!un) return 5;
        // kmaps adds one credit (the anchor block) to every handle.
        std::printf("| %u | %u | %u | %u | %u | %u |\n", want, rm->map_credits() + 1, *un + 1,
                    rc->adjust_step_credits() + 1, pm->add_credits() + 1, pm->remove_credits() + 1);
    }
    return 0;
}
