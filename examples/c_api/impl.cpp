// SPDX-License-Identifier: MIT
// The C API's implementation, compiled once in C++ for example.c.
#define JBTREE_C_IMPLEMENTATION
#include <jbtree/c/jbtree.h>
