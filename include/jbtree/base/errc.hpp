// SPDX-License-Identifier: MIT
// jbtree: error codes and result<T>.
//
// Errors are negative errno values, as in the Linux kernel, so a kernel shim
// can hand them through unchanged. No exceptions are thrown anywhere in the
// library; every fallible call returns either an `errc` or a `result<T>`,
// both of which are [[nodiscard]].
#pragma once

#include "jbtree/base/config.hpp"

#include <cstdint>
#include <new>
#include <type_traits>

namespace jbtree {

// Negative errno numbers (Linux values, fixed here so the library does not
// depend on <cerrno>, which is not freestanding).
enum class [[nodiscard]] errc : int {
    ok = 0,
    not_found = -2,        // ENOENT: no such key
    io = -5,               // EIO: the storage failed to read or write
    no_memory = -12,       // ENOMEM: an allocation the caller allowed failed
    busy = -16,            // EBUSY: the journal cannot commit while handles are open
    exists = -17,          // EEXIST: unique insert of a key that is present
    invalid = -22,         // EINVAL: bad argument (unsorted bulk input, bad size)
    no_space = -28,        // ENOSPC: the storage has no free block
    read_only = -30,       // EROFS: the journal was aborted; no change is accepted
    range = -34,           // ERANGE: a value or size out of its allowed range
    not_empty = -39,       // ENOTEMPTY: bulk load into a non-empty tree
    too_deep = -40,        // ELOOP: the tree would exceed max_height
    not_supported = -95,   // EOPNOTSUPP: operation not available for these traits
    no_credits = -105,     // ENOBUFS: the journal handle has too few credits left
    bad_checksum = -74,    // EBADMSG, the kernel's EFSBADCRC
    corrupted = -117,      // EUCLEAN, the kernel's EFSCORRUPTED
};

// Short, stable description of an error code (for tools and test output).
[[nodiscard]] constexpr const char* describe(errc e) noexcept {
    switch (e) {
    case errc::ok: return "success";
    case errc::not_found: return "not found";
    case errc::io: return "I/O error";
    case errc::no_memory: return "out of memory";
    case errc::busy: return "busy (journal handles open)";
    case errc::exists: return "key exists";
    case errc::invalid: return "invalid argument";
    case errc::no_space: return "no free block";
    case errc::read_only: return "read-only (journal aborted)";
    case errc::range: return "out of range";
    case errc::not_empty: return "tree not empty";
    case errc::too_deep: return "tree height limit reached";
    case errc::not_supported: return "not supported";
    case errc::no_credits: return "journal handle has too few credits";
    case errc::bad_checksum: return "bad checksum";
    case errc::corrupted: return "structure corrupted";
    }
    return "unknown error";
}

// A negative errno from outside (a C callback, a kernel call) as an errc:
// the values errc names pass through, >= 0 is ok, anything else is errc::io.
[[nodiscard]] constexpr errc from_errno(int r) noexcept {
    if (r >= 0) return errc::ok;
    const errc e = static_cast<errc>(r);
    switch (e) {
    case errc::ok:
    case errc::not_found:
    case errc::io:
    case errc::no_memory:
    case errc::busy:
    case errc::exists:
    case errc::invalid:
    case errc::no_space:
    case errc::read_only:
    case errc::range:
    case errc::not_empty:
    case errc::too_deep:
    case errc::not_supported:
    case errc::no_credits:
    case errc::bad_checksum:
    case errc::corrupted: return e;
    }
    return errc::io;
}

// Either a value of type T or an error code. T must be trivially destructible
// or at least nothrow-movable; the library only stores plain records in it.
template <class T>
class [[nodiscard]] result {
    static_assert(!std::is_reference_v<T>, "result<T&> is not supported");
    static_assert(std::is_nothrow_move_constructible_v<T>, "T must be nothrow movable");

public:
    constexpr result(const T& v) noexcept(std::is_nothrow_copy_constructible_v<T>)
        : err_(errc::ok), value_(v) {}
    constexpr result(T&& v) noexcept : err_(errc::ok), value_(static_cast<T&&>(v)) {}
    // An error result. Passing errc::ok here is a programming error; it is
    // turned into errc::invalid so that ok() never lies about a missing value.
    constexpr result(errc e) noexcept : err_(e == errc::ok ? errc::invalid : e) {}

    result(const result& o) noexcept(std::is_nothrow_copy_constructible_v<T>) : err_(o.err_) {
        if (ok()) ::new (static_cast<void*>(&value_)) T(o.value_);
    }
    result(result&& o) noexcept : err_(o.err_) {
        if (ok()) ::new (static_cast<void*>(&value_)) T(static_cast<T&&>(o.value_));
    }
    result& operator=(const result&) = delete;
    result& operator=(result&&) = delete;
    ~result() {
        if (ok()) value_.~T();
    }

    [[nodiscard]] constexpr bool ok() const noexcept { return err_ == errc::ok; }
    constexpr explicit operator bool() const noexcept { return ok(); }
    [[nodiscard]] constexpr errc error() const noexcept { return err_; }

    // Access to the value; only valid when ok().
    [[nodiscard]] constexpr T& value() & noexcept { return value_; }
    [[nodiscard]] constexpr const T& value() const& noexcept { return value_; }
    [[nodiscard]] constexpr T&& value() && noexcept { return static_cast<T&&>(value_); }
    constexpr T* operator->() noexcept { return &value_; }
    constexpr const T* operator->() const noexcept { return &value_; }
    constexpr T& operator*() & noexcept { return value_; }
    constexpr const T& operator*() const& noexcept { return value_; }

private:
    errc err_;
    union {
        T value_;
    };
};

// std::move without <utility> (not in the freestanding set).
template <class T>
[[nodiscard]] constexpr std::remove_reference_t<T>&& rvalue(T&& t) noexcept {
    return static_cast<std::remove_reference_t<T>&&>(t);
}

} // namespace jbtree

// Propagate an error from an expression yielding errc.
#define JBTREE_TRY(expr)                                                                           \
    do {                                                                                           \
        if (::jbtree::errc jbtree_try_e_ = (expr); jbtree_try_e_ != ::jbtree::errc::ok)             \
            return jbtree_try_e_;                                                                  \
    } while (0)
