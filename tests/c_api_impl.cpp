// SPDX-License-Identifier: MIT
// The one C++ translation unit that holds the C API's implementation, for
// tests/test_c_api.c (and, the same way, for any C program).
#define JBTREE_C_IMPLEMENTATION
#include <jbtree/c/jbtree.h>
