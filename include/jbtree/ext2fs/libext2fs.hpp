// SPDX-License-Identifier: MIT
// jbtree: <ext2fs/ext2fs.h> for C++, without its macros reaching the
// standard library.
//
// e2fsprogs 1.47.1 and later define a function-like macro `clamp(val, min,
// max)` in ext2fs.h; any standard header included after it that mentions
// std::clamp (<algorithm>, and the many that include it) then fails to
// compile ("macro "clamp" passed 4 arguments, but takes just 3"). Every
// jbtree header that needs libext2fs includes this one instead: the
// standard headers the adapter uses come first, then ext2fs.h, then the
// macro is removed (jbtree never uses it; ext2fs.h's own inline functions
// that do were expanded when it was included). A program that includes
// ext2fs.h itself before a jbtree header is covered too: the macro is
// removed before any standard header is read here.
#pragma once

#ifdef clamp
#undef clamp
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <ext2fs/ext2fs.h>

#ifdef clamp
#undef clamp
#endif
