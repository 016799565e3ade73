// SPDX-License-Identifier: MIT
// The one C++ translation unit that holds the implementation of
// jbtree/c/e2fs.h, for tests/test_e2fs_c_api.c (and, the same way, for any
// C program: contrib/e2fsprogs/ builds debugfs and e2fsck with it).
#define JBTREE_E2FS_C_IMPLEMENTATION
#include <jbtree/c/detail/e2fs_implementation.hpp>
