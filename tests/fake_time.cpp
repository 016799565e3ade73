// SPDX-License-Identifier: MIT
// An LD_PRELOAD time() for tests of the tools' superblock writes (libext2fs
// sets s_wtime from time() unless fs->now is set): with JBTREE_FAKE_TIME=T
// the clock reads T at the first call and JBTREE_FAKE_TIME_STEP seconds
// (default 1) more at each later one, so that every superblock write falls
// in another second; without it, the real time.
#include <cstdlib>
#include <ctime>

extern "C" std::time_t time(std::time_t* out) noexcept {
    static long long next = -1, step = 1;
    long long now;
    if (next < 0) {
        const char* t = std::getenv("JBTREE_FAKE_TIME");
        const char* s = std::getenv("JBTREE_FAKE_TIME_STEP");
        if (s && *s) step = std::strtoll(s, nullptr, 10);
        next = t && *t ? std::strtoll(t, nullptr, 10) : 0;
    }
    if (next > 0) {
        now = next;
        next += step;
    } else {
        timespec ts{};
        clock_gettime(CLOCK_REALTIME, &ts);
        now = ts.tv_sec;
    }
    if (out) *out = static_cast<std::time_t>(now);
    return static_cast<std::time_t>(now);
}
