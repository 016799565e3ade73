// SPDX-License-Identifier: MIT
// A program that uses jbtree the way a consumer does: an installed tree
// (CMake's find_package, pkg-config) or a meson subproject. Built and run
// by tests/check_consumers.sh; argv[1] is the version it must see.
#include <jbtree/jbtree.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>

using namespace jbtree;
using storage = memory_storage<>;
using journal = null_journal<storage>;

int main(int argc, char** argv) {
    static_assert(JBTREE_VERSION == JBTREE_VERSION_MAJOR * 10000 + JBTREE_VERSION_MINOR * 100 + JBTREE_VERSION_PATCH);
    if (argc > 1 && std::strcmp(argv[1], JBTREE_VERSION_STRING) != 0) {
        std::fprintf(stderr, "consumer: headers say version %s, expected %s\n", JBTREE_VERSION_STRING, argv[1]);
        return 1;
    }
    storage disk({.block_size = 4096, .checksums = true, .checksum_seed = 7});
    journal jnl(disk);
    auto tree = btree<u64_map_traits, storage, journal>::create(disk, jnl, 1);
    if (!tree) return 1;
    auto h = jnl.start(unlimited_credits);
    if (!h) return 1;
    for (std::uint64_t k = 1; k <= 10000; ++k)
        if (tree->insert(*h, k * 7, k) != errc::ok) return 1;
    if (jnl.stop(*h) != errc::ok) return 1;
    auto v = tree->find(7 * 1234);
    if (!v || *v != 1234 || !tree->verify().clean()) {
        std::fprintf(stderr, "consumer: the tree is wrong\n");
        return 1;
    }
    std::printf("consumer: jbtree %s, %llu records, height %u: ok\n", JBTREE_VERSION_STRING,
                static_cast<unsigned long long>(tree->size()), tree->height());
    return 0;
}
