// SPDX-License-Identifier: MIT
// Keep freed heap memory in the process, so that every container of a
// side-by-side benchmark runs on pages that are already mapped.
//
// Why: glibc gives memory back to the kernel by heap-layout luck. A free
// of 64 KiB or more (after coalescing) trims the heap's top, and a block
// of 128 KiB or more is mmap()ed and munmap()ed on its own. A container
// built after such a release touches fresh pages, each a page fault, and
// a fault costs 11 us on the test VMs (bench/README.md): 4,600 of them,
// the pages of 10^6 u64 records, add about 50 ns to every one of 10^6
// inserts. Which container paid depended on which ran after a trim:
// jbtree's 128 KiB storage chunks were munmap()ed at every teardown and
// refaulted at every build, while absl's and frozenca's nodes were mostly
// reused. With trimming and mmap thresholds raised, the first pass of
// every run pays the faults and all later passes of every container reuse
// the same pages: the timings compare the containers, not the kernel's
// fault path.
//
// JBTREE_BENCH_HEAP_WARM=0 leaves glibc's defaults (to see the faults).
#pragma once

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace benchio {

// Call first thing in main(). Returns whether the heap is kept warm.
inline bool keep_heap_warm() noexcept {
    const char* env = std::getenv("JBTREE_BENCH_HEAP_WARM");
    if (env && std::strcmp(env, "0") == 0) return false;
#if defined(__GLIBC__)
    // 32 MiB: glibc's largest mmap threshold on 64-bit; 1 GiB: trim never
    // (every benchmark's heap is smaller). Both fix the thresholds, which
    // glibc otherwise moves as blocks are freed.
    return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
#else
    return false;
#endif
}

} // namespace benchio
