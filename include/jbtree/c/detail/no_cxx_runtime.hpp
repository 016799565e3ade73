// SPDX-License-Identifier: MIT
// jbtree: the few C++ runtime functions the e2fs C implementation needs,
// defined in its own translation unit so that a C program links it
// without libstdc++ (e2fsprogs links debugfs and e2fsck with its C
// compiler driver).
//
// Compiled without exceptions and RTTI, the adapter's standard containers
// still call the global allocation functions and, on impossible sizes or
// exhausted memory, libstdc++'s "throw" hooks. Here:
//   - operator new / delete (plain, array, sized, aligned, nothrow): the
//     replaceable global allocation functions, over malloc / aligned_alloc
//     / free. The throwing forms end the program with a message when
//     memory is exhausted: what libstdc++ does when built without
//     exceptions;
//   - the std::__throw_* hooks that libstdc++'s headers call: a message on
//     stderr and abort(), as libstdc++ itself does without exceptions.
// For C programs only: a C++ program includes the adapter's C++ headers
// and links libstdc++ instead (define JBTREE_E2FS_C_NO_RUNTIME to leave
// these out of the implementation TU).
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace jbtree::c_runtime {

[[noreturn]] inline void fatal(const char* what) noexcept {
    std::fprintf(stderr, "jbtree: %s\n", what);
    std::abort();
}

// Large blocks (a scan's record arrays, several MiB) are 2 MiB-aligned and
// offered to the kernel as transparent huge pages: filling them then takes
// a page fault per 2 MiB instead of per 4 KiB, which is most of the cost of
// filling fresh memory in a virtual machine. free() releases them as any
// other block.
inline constexpr std::size_t huge_page = std::size_t{2} << 20;
inline void* allocate(std::size_t n) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (n >= 2 * huge_page) {
        const std::size_t rounded = (n + huge_page - 1) / huge_page * huge_page;
        if (void* p = std::aligned_alloc(huge_page, rounded)) {
            (void)::madvise(p, rounded, MADV_HUGEPAGE); // advice only: ignored where THP is off
            return p;
        }
    }
#endif
    return std::malloc(n ? n : 1);
}
inline void* allocate_aligned(std::size_t n, std::size_t align) noexcept {
    if (align < sizeof(void*)) align = sizeof(void*);
    const std::size_t rounded = (n + align - 1) / align * align; // aligned_alloc wants a multiple
    return std::aligned_alloc(align, rounded ? rounded : align);
}

} // namespace jbtree::c_runtime

// The replaceable global allocation functions ([new.delete]). Each delete
// frees what the matching new above allocated with malloc / aligned_alloc.
// Not inlined, so that tools that replace operator new and delete in a
// running program (valgrind, sanitizers) see every call of both.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
[[gnu::noinline]] void* operator new(std::size_t n) {
    if (void* p = jbtree::c_runtime::allocate(n)) return p;
    jbtree::c_runtime::fatal("out of memory");
}
[[gnu::noinline]] void* operator new[](std::size_t n) { return ::operator new(n); }
[[gnu::noinline]] void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return jbtree::c_runtime::allocate(n); }
[[gnu::noinline]] void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return jbtree::c_runtime::allocate(n); }
[[gnu::noinline]] void* operator new(std::size_t n, std::align_val_t a) {
    if (void* p = jbtree::c_runtime::allocate_aligned(n, static_cast<std::size_t>(a))) return p;
    jbtree::c_runtime::fatal("out of memory");
}
[[gnu::noinline]] void* operator new[](std::size_t n, std::align_val_t a) { return ::operator new(n, a); }
[[gnu::noinline]] void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return jbtree::c_runtime::allocate_aligned(n, static_cast<std::size_t>(a));
}
[[gnu::noinline]] void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return jbtree::c_runtime::allocate_aligned(n, static_cast<std::size_t>(a));
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#if defined(__GLIBCXX__)
// The std::nothrow tag object, which libstdc++ keeps in its library.
const std::nothrow_t std::nothrow{};

// libstdc++'s hooks (bits/functexcept.h) for what would throw.
namespace std {
void __throw_bad_alloc() { jbtree::c_runtime::fatal("out of memory"); }
void __throw_bad_array_new_length() { jbtree::c_runtime::fatal("array length out of range"); }
void __throw_length_error(const char* s) { jbtree::c_runtime::fatal(s); }
void __throw_logic_error(const char* s) { jbtree::c_runtime::fatal(s); }
void __throw_out_of_range(const char* s) { jbtree::c_runtime::fatal(s); }
void __throw_out_of_range_fmt(const char* s, ...) { jbtree::c_runtime::fatal(s); }
void __throw_invalid_argument(const char* s) { jbtree::c_runtime::fatal(s); }
} // namespace std
#endif
