// SPDX-License-Identifier: MIT
// kmaps: the three maps over the kernel shim's policies (kernel_policies.hpp),
// C-callable. Built freestanding: see examples/meson.build.
#include "kmaps.h"

#include <cstddef>
#include <cstdint>
#include <new>

#include <jbtree/base/in_place.hpp>
#include <jbtree/maps/parent_map.hpp>
#include <jbtree/maps/refcount_map.hpp>
#include <jbtree/maps/rmap.hpp>

#include "kernel_policies.hpp"

namespace {

using S = kshim::kernel_storage;
using J = kshim::kernel_journal;
using jbtree::errc;

constexpr std::uint32_t path_depth = 32;

// After which failures the running transaction may hold a half-made change.
bool resource_failure(errc e) noexcept {
    return e == errc::io || e == errc::no_memory || e == errc::no_space || e == errc::corrupted ||
           e == errc::bad_checksum;
}

} // namespace

struct kmaps {
    kmaps(super_block* sb, journal_t* j, std::uint32_t seed) noexcept : st(sb, seed), jr(j), journal(j) {}

    S st;
    J jr;
    journal_t* journal;
    jbtree::tree_anchor committed[3]{};
    jbtree::in_place<jbtree::rmap<S, J>> rm;
    jbtree::in_place<jbtree::refcount_map<S, J>> rc;
    jbtree::in_place<jbtree::parent_map<S, J>> pm;
    unsigned char path_buf[jbtree::parent_map<S, J>::path_buffer_size(path_depth)];

    // Back to the last commit: the shim rolls the blocks back, the maps
    // reopen from their committed roots.
    int abort(errc e) noexcept {
        jbd2_journal_abort(journal, static_cast<int>(e));
        reopen();
        return static_cast<int>(e);
    }
    void reopen() noexcept {
        if (auto r = jbtree::rmap<S, J>::open(st, jr, committed[0])) rm.emplace(jbtree::rvalue(*r));
        if (auto r = jbtree::refcount_map<S, J>::open(st, jr, committed[1])) rc.emplace(jbtree::rvalue(*r));
        if (auto r = jbtree::parent_map<S, J>::open(st, jr, committed[2])) pm.emplace(jbtree::rvalue(*r));
    }

    template <class F>
    int run(std::uint64_t credits, F&& f) noexcept {
        if (credits == 0 || credits > 0x7FFFFFFFu) return static_cast<int>(errc::range);
        auto h = jr.start(static_cast<std::uint32_t>(credits));
        if (!h) return static_cast<int>(h.error());
        const errc e = f(*h);
        const errc s = jr.stop(*h);
        if (resource_failure(e)) return abort(e);
        return static_cast<int>(e != errc::ok ? e : s);
    }
};

extern "C" {

int kmaps_create(super_block* sb, journal_t* journal, uint32_t seed, kmaps** out) {
    if (!sb || !journal || !out) return static_cast<int>(errc::invalid);
    void* p = kmalloc(sizeof(kmaps), GFP_NOFS);
    if (!p) return static_cast<int>(errc::no_memory);
    kmaps* m = ::new (p) kmaps(sb, journal, seed);
    auto rm = jbtree::rmap<S, J>::create(m->st, m->jr, 1);
    auto rc = jbtree::refcount_map<S, J>::create(m->st, m->jr, 2);
    auto pm = jbtree::parent_map<S, J>::create(m->st, m->jr, 3);
    if (!rm || !rc || !pm) {
        m->~kmaps();
        kfree(p);
        return static_cast<int>(!rm ? rm.error() : !rc ? rc.error() : pm.error());
    }
    m->committed[0] = rm->anchor();
    m->committed[1] = rc->anchor();
    m->committed[2] = pm->anchor();
    m->rm.emplace(jbtree::rvalue(*rm));
    m->rc.emplace(jbtree::rvalue(*rc));
    m->pm.emplace(jbtree::rvalue(*pm));
    *out = m;
    return 0;
}

void kmaps_destroy(kmaps* m) {
    if (!m) return;
    m->~kmaps();
    kfree(m);
}

int kmaps_rmap_map(kmaps* m, uint64_t start, uint64_t len, uint64_t owner, uint64_t offset, uint32_t flags) {
    auto& rm = m->rm.get();
    return m->run(rm.map_credits(), [&](J::handle& h) noexcept { return rm.map(h, start, len, owner, offset, flags); });
}

int kmaps_rmap_unmap(kmaps* m, uint64_t start, uint64_t len, uint64_t owner, uint64_t offset) {
    auto& rm = m->rm.get();
    auto c = rm.unmap_credits(start, len, owner, offset);
    if (!c) return static_cast<int>(c.error());
    return m->run(*c, [&](J::handle& h) noexcept { return rm.unmap(h, start, len, owner, offset); });
}

int kmaps_rmap_owners(kmaps* m, uint64_t block, uint64_t* owners, int max, int* n) {
    int k = 0;
    const errc e = m->rm.get().owners_of(block, [&](const jbtree::rmap_record& r) noexcept {
        if (k < max) owners[k] = r.owner;
        ++k;
        return true;
    });
    *n = k;
    return static_cast<int>(e);
}

int kmaps_refcount_adjust(kmaps* m, uint64_t start, uint64_t len, int delta) {
    return static_cast<int>(m->rc.get().adjust_all(start, len, delta, 0x7FFFFFFFu,
                                                   [&](std::uint64_t credits, auto&& step) noexcept {
                                                       return m->run(credits, step);
                                                   }));
}

int kmaps_refcount_get(kmaps* m, uint64_t block, uint32_t* count) {
    auto c = m->rc.get().refcount_of(block);
    if (!c) return static_cast<int>(c.error());
    *count = *c;
    return 0;
}

int kmaps_parent_add(kmaps* m, uint64_t child, uint64_t parent, uint32_t parent_gen, const char* name, size_t len) {
    auto& pm = m->pm.get();
    return m->run(pm.add_credits(), [&](J::handle& h) noexcept {
        return pm.add(h, child, parent, parent_gen, jbtree::name_ref(name, len));
    });
}

int kmaps_parent_remove(kmaps* m, uint64_t child, uint64_t parent, const char* name, size_t len) {
    auto& pm = m->pm.get();
    return m->run(pm.remove_credits(),
                  [&](J::handle& h) noexcept { return pm.remove(h, child, parent, jbtree::name_ref(name, len)); });
}

int kmaps_parent_paths(kmaps* m, uint64_t ino, uint64_t root, uint64_t* paths) {
    auto r = m->pm.get().paths_of(ino, root, path_depth, m->path_buf, sizeof m->path_buf,
                                  [](const jbtree::path_event&) noexcept {});
    if (!r) return static_cast<int>(r.error());
    *paths = r->complete;
    return 0;
}

int kmaps_verify(kmaps* m, uint64_t* problems) {
    const auto a = m->rm.get().verify();
    const auto b = m->rc.get().verify();
    const auto c = m->pm.get().verify();
    *problems = std::uint64_t{a.tree.problem_count} + a.problem_count + b.tree.problem_count + b.problem_count +
                c.tree.problem_count + c.problem_count;
    return 0;
}

void kmaps_sizes(kmaps* m, uint64_t* rmap, uint64_t* refcount, uint64_t* parent) {
    *rmap = m->rm.get().size();
    *refcount = m->rc.get().size();
    *parent = m->pm.get().size();
}

int kmaps_commit(kmaps* m) {
    if (const int e = jbd2_journal_force_commit(m->journal)) return m->abort(kshim::to_errc(e));
    m->committed[0] = m->rm.get().anchor();
    m->committed[1] = m->rc.get().anchor();
    m->committed[2] = m->pm.get().anchor();
    return 0;
}

void kmaps_get_credits(kmaps* m, kmaps_credits* c) {
    c->rmap_map = m->rm.get().map_credits();
    c->parent_add = m->pm.get().add_credits();
    c->parent_remove = m->pm.get().remove_credits();
    c->refcount_step = m->rc.get().adjust_step_credits();
}

} // extern "C"
