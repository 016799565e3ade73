// SPDX-License-Identifier: MIT
// bench/ab: the clock and a sink the optimiser cannot drop.
#pragma once
#include <cstdint>
#include <time.h>

inline double ab_now() {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}
inline void ab_keep(std::uint64_t x) { asm volatile("" : : "r"(x) : "memory"); }
