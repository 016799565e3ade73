// SPDX-License-Identifier: MIT
// jbtree: the library's version (semantic versioning; docs/format.md,
// "Versions", says what a version change means for images on disk).
//
// Kept by hand, in step with meson.build's project version: `meson setup`
// refuses to configure when the two differ. Only macros, so C code can
// include it too. Every jbtree header includes it (through base/config.hpp).
#ifndef JBTREE_VERSION_HPP
#define JBTREE_VERSION_HPP

#define JBTREE_VERSION_MAJOR 0
#define JBTREE_VERSION_MINOR 1
#define JBTREE_VERSION_PATCH 0
#define JBTREE_VERSION_STRING "0.1.0"

// One number for comparisons: MAJOR * 10000 + MINOR * 100 + PATCH.
#define JBTREE_VERSION (JBTREE_VERSION_MAJOR * 10000 + JBTREE_VERSION_MINOR * 100 + JBTREE_VERSION_PATCH)

#endif // JBTREE_VERSION_HPP
