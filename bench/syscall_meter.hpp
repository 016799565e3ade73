// SPDX-License-Identifier: MIT
// An exact, store-independent write meter: this header defines write,
// pwrite(64), writev, pwritev(64)(v2), fsync and fdatasync in the
// executable, so that they interpose the C library's for the program and for
// the shared libraries it uses (LMDB calls writev and pwrite). Each counts
// the bytes the kernel accepted (file descriptors 1 and 2 excluded) and the
// syncs, then calls the real function (dlsym(RTLD_NEXT)).
//
// Include it in exactly one translation unit of a program.
#pragma once

#include <dlfcn.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

namespace syscall_meter {

inline std::atomic<std::uint64_t> bytes{0};
inline std::atomic<std::uint64_t> calls{0};
inline std::atomic<std::uint64_t> syncs{0};

inline void count(int fd, ssize_t r) noexcept {
    if (fd > 2 && r > 0) {
        bytes.fetch_add(static_cast<std::uint64_t>(r), std::memory_order_relaxed);
        calls.fetch_add(1, std::memory_order_relaxed);
    }
}

template <class F>
F real(const char* name) noexcept {
    return reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

} // namespace syscall_meter

// The definitions carry explicit symbol names (asm labels): with
// -D_FILE_OFFSET_BITS=64 glibc's headers rename pwrite to pwrite64 and
// pwritev to pwritev64, and both names must be interposed.
#define SYSCALL_METER_WRITE(cname, sym, params, args)                                              \
    extern "C" ssize_t cname params __asm__(sym);                                                  \
    extern "C" ssize_t cname params {                                                              \
        using fn = ssize_t(*) params;                                                              \
        static const fn f = syscall_meter::real<fn>(sym);                                          \
        const ssize_t r = f args;                                                                  \
        syscall_meter::count(fd, r);                                                               \
        return r;                                                                                  \
    }
#define SYSCALL_METER_SYNC(cname, sym)                                                             \
    extern "C" int cname(int fd) __asm__(sym);                                                     \
    extern "C" int cname(int fd) {                                                                 \
        using fn = int (*)(int);                                                                   \
        static const fn f = syscall_meter::real<fn>(sym);                                          \
        syscall_meter::syncs.fetch_add(1, std::memory_order_relaxed);                              \
        return f(fd);                                                                              \
    }

SYSCALL_METER_WRITE(syscall_meter_write, "write", (int fd, const void* b, size_t n), (fd, b, n))
SYSCALL_METER_WRITE(syscall_meter_pwrite, "pwrite", (int fd, const void* b, size_t n, off_t o), (fd, b, n, o))
SYSCALL_METER_WRITE(syscall_meter_pwrite64, "pwrite64", (int fd, const void* b, size_t n, off_t o), (fd, b, n, o))
SYSCALL_METER_WRITE(syscall_meter_writev, "writev", (int fd, const struct iovec* v, int n), (fd, v, n))
SYSCALL_METER_WRITE(syscall_meter_pwritev, "pwritev", (int fd, const struct iovec* v, int n, off_t o), (fd, v, n, o))
SYSCALL_METER_WRITE(syscall_meter_pwritev64, "pwritev64", (int fd, const struct iovec* v, int n, off_t o),
                    (fd, v, n, o))
SYSCALL_METER_WRITE(syscall_meter_pwritev2, "pwritev2", (int fd, const struct iovec* v, int n, off_t o, int fl),
                    (fd, v, n, o, fl))
SYSCALL_METER_WRITE(syscall_meter_pwritev64v2, "pwritev64v2", (int fd, const struct iovec* v, int n, off_t o, int fl),
                    (fd, v, n, o, fl))
SYSCALL_METER_SYNC(syscall_meter_fsync, "fsync")
SYSCALL_METER_SYNC(syscall_meter_fdatasync, "fdatasync")

#undef SYSCALL_METER_WRITE
#undef SYSCALL_METER_SYNC
