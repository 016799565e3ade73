// SPDX-License-Identifier: MIT
// jbtree: what every header needs first: C++20, and the version macros.
//
// Included at the top of each header that includes no other jbtree header,
// so a translation unit compiled below C++20 stops with this message
// before any other error. (The C API's declarations in jbtree/c/jbtree.h
// are plain C and do not include it; its implementation does.)
#pragma once

#if defined(__cplusplus) && __cplusplus < 202002L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 202002L)
#error "jbtree needs C++20 (-std=c++20)"
#endif

#include "jbtree/version.hpp"
