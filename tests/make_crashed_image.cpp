// SPDX-License-Identifier: MIT
// An image with stored maps, left as the patched kernel leaves it when it
// crashes (for tests/check_e2fsprogs.sh: the patched e2fsck after a crash):
//
//   make-crashed-image IMAGE [ORPHAN_PATH]
//
// IMAGE must carry current maps (jbtree-e2fs build). With ORPHAN_PATH (a
// regular file of two blocks or more, e.g. /d/big) that file is cut to its
// first block and put on the orphan list, as a crash during a truncate
// leaves it. Then one transaction is committed to the image's journal and
// not replayed (needs_recovery set), and the maps are given the live stamp
// of the patched kernel naming the superblock as it now is: current, as
// after a crash of a mount that kept them. Exit 0, or 1 with a message.
#include "crashed_maps.hpp"

#include <cstdio>

int main(int argc, char** argv) {
    if (argc < 2 || argc > 3) {
        std::fprintf(stderr, "usage: make-crashed-image IMAGE [ORPHAN_PATH]\n");
        return 2;
    }
    const std::filesystem::path img = argv[1];
    std::string err;
    if (argc == 3 && crashed_maps::make_orphan(img, argv[2], err) == 0) {
        std::fprintf(stderr, "make-crashed-image: %s\n", err.c_str());
        return 1;
    }
    err = crashed_maps::log_one_transaction(img);
    if (!err.empty()) {
        std::fprintf(stderr, "make-crashed-image: logging a transaction: %s\n", err.c_str());
        return 1;
    }
    jbtree::ext2fs_adapter::map_stamp crashed{};
    std::uint64_t first = 0;
    if (!crashed_maps::stamp_now(img, crashed, first) ||
        !crashed_maps::write_stamp(img, jbtree::ext2fs_adapter::live_stamp(jbtree::ext2fs_adapter::state_in(crashed), 1))) {
        std::fprintf(stderr, "make-crashed-image: no map file to stamp in %s\n", img.c_str());
        return 1;
    }
    std::printf("%s: one transaction to replay%s, maps under a live stamp\n", img.c_str(), argc == 3 ? ", an orphan" : "");
    return 0;
}
