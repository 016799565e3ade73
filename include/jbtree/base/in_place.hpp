// SPDX-License-Identifier: MIT
// jbtree: in_place<T>, room for one T constructed later (what std::optional
// does, for freestanding code that has no <optional>): the maps have no
// default constructor, and the C API and kernel shim build them after
// opening their volume or journal.
#pragma once

#include "jbtree/base/config.hpp"

#include <new>

namespace jbtree {

template <class T>
class in_place {
public:
    in_place() noexcept {}
    in_place(const in_place&) = delete;
    in_place& operator=(const in_place&) = delete;
    ~in_place() { reset(); }

    template <class... A>
    T& emplace(A&&... a) noexcept {
        reset();
        T* t = ::new (static_cast<void*>(buf_)) T(static_cast<A&&>(a)...);
        live_ = true;
        return *t;
    }
    // T built from what make() returns, in place: a T returned by value is
    // constructed straight into this storage (no copy on the caller's
    // stack: what keeps large results such as verify reports off a small
    // kernel stack).
    template <class F>
    T& emplace_from(F&& make) noexcept {
        reset();
        T* t = ::new (static_cast<void*>(buf_)) T(make());
        live_ = true;
        return *t;
    }
    void reset() noexcept {
        if (live_) get().~T();
        live_ = false;
    }
    // Only while live().
    [[nodiscard]] T& get() noexcept { return *std::launder(reinterpret_cast<T*>(buf_)); }
    [[nodiscard]] bool live() const noexcept { return live_; }

private:
    alignas(T) unsigned char buf_[sizeof(T)];
    bool live_ = false;
};

} // namespace jbtree
