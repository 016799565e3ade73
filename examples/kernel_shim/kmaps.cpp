// SPDX-License-Identifier: MIT
// kmaps: the three maps over kglue.h (kernel_policies.hpp), C-callable.
// Built freestanding with the kernel's code-generation flags into a module
// (examples/kernel_module/), or with ordinary flags for the user-space tests.
#include "kmaps.h"

#include <cstddef>
#include <cstdint>
#include <new>

#include <jbtree/base/crc32c.hpp>
#include <jbtree/base/endian.hpp>
#include <jbtree/base/in_place.hpp>
#include <jbtree/maps/parent_map.hpp>
#include <jbtree/maps/refcount_map.hpp>
#include <jbtree/maps/rmap.hpp>
#include <jbtree/volume/volume.hpp>

#include "kernel_policies.hpp"

namespace {

using S = kshim::kernel_storage;
using J = kshim::kernel_journal;
using RM = jbtree::rmap<S, J>;
using RC = jbtree::refcount_map<S, J>;
using PM = jbtree::parent_map<S, J>;
using jbtree::errc;

constexpr std::uint32_t path_depth = 32;
// A restartable refcount adjust asks for at most this many steps' credits
// per handle (a transaction's size is the journal's business).
constexpr std::uint64_t adjust_steps_per_handle = 8;

int as_int(errc e) noexcept { return static_cast<int>(e); }

} // namespace

// The anchor block: magic, crc32c (seeded as the nodes, over the block
// with this field zero), its own block number, then the three trees'
// anchors in the volume's on-disk form (docs/kernel.md).
struct anchor_block_disk {
    jbtree::le32 magic;                    // 0x00 anchor_magic
    jbtree::le32 checksum;                 // 0x04
    jbtree::le64 self;                     // 0x08
    jbtree::volume_anchor_disk anchors[3]; // 0x10 rmap, refcount, parent pointers
};
constexpr std::uint32_t anchor_magic = 0x4D4B424Au; // "JBKM"

struct kmaps {
    kmaps(kglue_fs* f, std::uint32_t s) noexcept : fs(f), seed(s), st(f, s), jr(f) {}

    kglue_fs* fs;
    std::uint32_t seed;
    S st;
    J jr;
    std::uint64_t anchor_blk = 0;
    jbtree::tree_anchor written[3]{}; // what the anchor block holds (in the running transaction)
    bool read_only = false;           // the journal was aborted under these maps
    jbtree::in_place<RM> rm;
    jbtree::in_place<RC> rc;
    jbtree::in_place<PM> pm;
    // verify() results: here, not on a small kernel stack.
    jbtree::in_place<jbtree::rmap_verify_report> rm_report;
    jbtree::in_place<jbtree::refcount_verify_report> rc_report;
    jbtree::in_place<jbtree::parent_map_report> pm_report;
    unsigned char path_buf[PM::path_buffer_size(path_depth)];

    [[nodiscard]] int refuse() const noexcept { return read_only ? as_int(errc::read_only) : 0; }

    [[nodiscard]] static std::uint32_t anchor_checksum(const unsigned char* b, std::uint32_t bs,
                                                       std::uint32_t seed) noexcept {
        const unsigned char zero[4] = {0, 0, 0, 0};
        std::uint32_t c = jbtree::crc32c_raw(seed, b, 4);
        c = jbtree::crc32c_raw(c, zero, 4);
        return jbtree::crc32c_raw(c, b + 8, bs - 8);
    }
    // The trees' anchors into the anchor block, in handle h, if they moved
    // (with the credit run()/run_in() held back for it).
    [[nodiscard]] errc write_anchors(J::handle& h, bool created = false) noexcept {
        const jbtree::tree_anchor now[3] = {rm.get().anchor(), rc.get().anchor(), pm.get().anchor()};
        if (!created && now[0] == written[0] && now[1] == written[1] && now[2] == written[2]) return errc::ok;
        h.held = 0;
        auto b = st.read(anchor_blk);
        if (!b) return b.error();
        JBTREE_TRY(created ? jr.get_create_access(h, *b) : jr.get_write_access(h, *b));
        unsigned char* p = b->data();
        auto* d = reinterpret_cast<anchor_block_disk*>(p);
        d->magic.set(anchor_magic);
        d->self.set(anchor_blk);
        for (int i = 0; i < 3; ++i) {
            d->anchors[i].root.set(now[i].root);
            d->anchors[i].records.set(now[i].records);
            d->anchors[i].tree_id.set(now[i].tree_id);
            d->anchors[i].height.set(now[i].height);
            d->anchors[i].in_use.set(1);
        }
        d->checksum.set(anchor_checksum(p, st.block_size(), seed));
        JBTREE_TRY(jr.dirty_metadata(h, *b));
        for (int i = 0; i < 3; ++i) written[i] = now[i];
        return errc::ok;
    }

    // A change failed: if it dirtied nothing it changed nothing, else the
    // journal is aborted (no rollback exists) and the maps stop accepting
    // calls.
    int failed(const J::handle& h, errc e) noexcept {
        if (h.dirtied) {
            kglue_abort(fs, as_int(e));
            read_only = true;
        }
        return as_int(e);
    }

    // f(handle) in a handle of its own with `credits` (and as many
    // revokes), plus one for the anchor block.
    template <class F>
    int run(std::uint64_t credits, F&& f) noexcept {
        if (const int e = refuse()) return e;
        if (credits == 0 || credits >= 0x7FFFFFFFu) return as_int(errc::range);
        auto h = jr.start(static_cast<std::uint32_t>(credits + 1));
        if (!h) return as_int(h.error());
        h->held = 1;
        errc e = f(*h);
        if (e == errc::ok) e = write_anchors(*h);
        if (e != errc::ok) {
            const int r = failed(*h, e);
            (void)jr.stop(*h);
            return r;
        }
        const errc s = jr.stop(*h);
        if (s != errc::ok && kglue_aborted(fs)) read_only = true;
        return as_int(s);
    }

    // At least `credits` (+1 for the anchor block) left in the caller's
    // handle: extended if needed. A single change cannot restart the
    // caller's transaction half-way, so a handle that cannot grow gives
    // -ENOBUFS and nothing changes.
    [[nodiscard]] int reserve(J::handle& h, std::uint64_t credits) noexcept {
        h.held = 0;
        const std::uint32_t left = jr.credits_left(h);
        if (left < credits + 1) {
            const int more = static_cast<int>(credits + 1 - left);
            const int r = kglue_extend(h.get(), more, more);
            if (r) return r > 0 ? as_int(errc::no_credits) : r;
        }
        h.held = 1;
        return 0;
    }
    template <class F>
    int run_in(kglue_handle* kh, std::uint64_t credits, F&& f) noexcept {
        if (const int e = refuse()) return e;
        if (!kh || credits >= 0x7FFFFFFFu) return as_int(errc::invalid);
        J::handle h = J::adopt(kh);
        if (const int r = reserve(h, credits)) return r;
        errc e = f(h);
        if (e == errc::ok) e = write_anchors(h);
        return e == errc::ok ? 0 : failed(h, e);
    }
};

namespace {

// Read and check the anchor block.
errc read_anchors(kmaps* m, jbtree::tree_anchor* out) noexcept {
    auto b = m->st.read(m->anchor_blk);
    if (!b) return b.error();
    const unsigned char* p = b->data();
    const auto* d = reinterpret_cast<const anchor_block_disk*>(p);
    if (d->magic.get() != anchor_magic || d->self.get() != m->anchor_blk) return errc::corrupted;
    if (d->checksum.get() != kmaps::anchor_checksum(p, m->st.block_size(), m->seed)) return errc::bad_checksum;
    for (int i = 0; i < 3; ++i) {
        out[i] = jbtree::tree_anchor{d->anchors[i].root.get(), d->anchors[i].records.get(),
                                     d->anchors[i].tree_id.get(), d->anchors[i].height.get()};
        if (out[i].tree_id != static_cast<std::uint32_t>(i + 1)) return errc::corrupted;
    }
    return errc::ok;
}

// A new anchor block, in a handle of its own.
errc create_anchor_block(kmaps* m) noexcept {
    auto h = m->jr.start(1);
    if (!h) return h.error();
    errc e;
    {
        auto b = m->st.allocate();
        e = b ? errc::ok : b.error();
        if (b) m->anchor_blk = b->blkno();
    } // released before write_anchors reads it again
    if (e == errc::ok) e = m->write_anchors(*h, true);
    const errc s = m->jr.stop(*h);
    if (e == errc::ok) e = s;
    if (e != errc::ok && h->dirtied) kglue_abort(m->fs, as_int(e));
    return e;
}

// Create (anchor_blk == 0) or open the maps.
int open_maps(kglue_fs* fs, std::uint32_t seed, std::uint64_t anchor_blk, kmaps** out) {
    if (!fs || !out) return as_int(errc::invalid);
    if (sizeof(anchor_block_disk) > kglue_block_size(fs)) return as_int(errc::invalid);
    void* p = kglue_alloc(sizeof(kmaps));
    if (!p) return as_int(errc::no_memory);
    kmaps* m = ::new (p) kmaps(fs, seed);
    auto fail = [&](errc e) noexcept {
        m->~kmaps();
        kglue_free(p);
        return as_int(e);
    };
    jbtree::tree_anchor a[3];
    if (anchor_blk) {
        m->anchor_blk = anchor_blk;
        if (const errc e = read_anchors(m, a); e != errc::ok) return fail(e);
    } else {
        for (int i = 0; i < 3; ++i) a[i] = jbtree::tree_anchor{0, 0, static_cast<std::uint32_t>(i + 1), 0};
    }
    auto rm = RM::open(m->st, m->jr, a[0]);
    auto rc = RC::open(m->st, m->jr, a[1]);
    auto pm = PM::open(m->st, m->jr, a[2]);
    if (!rm || !rc || !pm) return fail(!rm ? rm.error() : !rc ? rc.error() : pm.error());
    m->rm.emplace(jbtree::rvalue(*rm));
    m->rc.emplace(jbtree::rvalue(*rc));
    m->pm.emplace(jbtree::rvalue(*pm));
    for (int i = 0; i < 3; ++i) m->written[i] = a[i];
    if (!anchor_blk)
        if (const errc e = create_anchor_block(m); e != errc::ok) return fail(e);
    *out = m;
    return 0;
}

} // namespace

extern "C" {

int kmaps_create(kglue_fs* fs, uint32_t seed, kmaps** out) { return open_maps(fs, seed, 0, out); }

int kmaps_open(kglue_fs* fs, uint32_t seed, uint64_t anchor_block, kmaps** out) {
    if (anchor_block == 0) return as_int(errc::invalid);
    return open_maps(fs, seed, anchor_block, out);
}

void kmaps_destroy(kmaps* m) {
    if (!m) return;
    m->~kmaps();
    kglue_free(m);
}

uint64_t kmaps_anchor_block(const kmaps* m) { return m->anchor_blk; }

int kmaps_rmap_map(kmaps* m, uint64_t start, uint64_t len, uint64_t owner, uint64_t offset, uint32_t flags) {
    auto& rm = m->rm.get();
    return m->run(rm.map_credits(), [&](J::handle& h) noexcept { return rm.map(h, start, len, owner, offset, flags); });
}
int kmaps_rmap_map_in(kmaps* m, kglue_handle* kh, uint64_t start, uint64_t len, uint64_t owner, uint64_t offset,
                      uint32_t flags) {
    auto& rm = m->rm.get();
    return m->run_in(kh, rm.map_credits(),
                     [&](J::handle& h) noexcept { return rm.map(h, start, len, owner, offset, flags); });
}

int kmaps_rmap_unmap(kmaps* m, uint64_t start, uint64_t len, uint64_t owner, uint64_t offset) {
    if (const int e = m->refuse()) return e;
    auto& rm = m->rm.get();
    auto c = rm.unmap_credits(start, len, owner, offset);
    if (!c) return as_int(c.error());
    return m->run(*c, [&](J::handle& h) noexcept { return rm.unmap(h, start, len, owner, offset); });
}
int kmaps_rmap_unmap_in(kmaps* m, kglue_handle* kh, uint64_t start, uint64_t len, uint64_t owner, uint64_t offset) {
    if (const int e = m->refuse()) return e;
    auto& rm = m->rm.get();
    auto c = rm.unmap_credits(start, len, owner, offset);
    if (!c) return as_int(c.error());
    return m->run_in(kh, *c, [&](J::handle& h) noexcept { return rm.unmap(h, start, len, owner, offset); });
}

int kmaps_rmap_owners(kmaps* m, uint64_t block, uint64_t* owners, int max, int* n) {
    if (const int e = m->refuse()) return e;
    int k = 0;
    const errc e = m->rm.get().owners_of(block, [&](const jbtree::rmap_record& r) noexcept {
        if (k < max) owners[k] = r.owner;
        ++k;
        return true;
    });
    *n = k;
    return as_int(e);
}

int kmaps_refcount_adjust(kmaps* m, uint64_t start, uint64_t len, int delta) {
    if (const int e = m->refuse()) return e;
    const int max = kglue_max_credits(m->fs) - 1; // run() adds the anchor block's credit
    return as_int(m->rc.get().adjust_all(start, len, delta, static_cast<std::uint64_t>(max > 0 ? max : 1),
                                         [&](std::uint64_t credits, auto&& step) noexcept {
                                             return m->run(credits, step);
                                         }));
}

// Step by step in the caller's handle: before each step the handle is
// extended to what the rest needs (at most adjust_steps_per_handle steps'
// worth, +1 for the anchor block), or restarted when it cannot grow. Every
// step leaves the maps exact for the blocks done, and the anchor block is
// written before a restart, so what the old transaction commits is a
// consistent state of the maps (the caller's own changes are its business,
// as with any restart).
int kmaps_refcount_adjust_in(kmaps* m, kglue_handle* kh, uint64_t start, uint64_t len, int delta) {
    if (const int e = m->refuse()) return e;
    if (!kh) return as_int(errc::invalid);
    auto& rc = m->rc.get();
    J::handle h = J::adopt(kh);
    if (const int r = m->reserve(h, 0)) return r; // the anchor block's credit
    for (std::uint64_t at = start, end = start + len;;) {
        auto need = rc.adjust_credits(at, end - at, delta);
        if (!need) return h.dirtied ? m->failed(h, need.error()) : as_int(need.error());
        if (*need == 0) break; // nothing stored changes
        const std::uint64_t step = rc.adjust_step_credits();
        const std::uint64_t cap = step * adjust_steps_per_handle;
        const std::uint64_t want = (*need < cap ? *need : cap) + 1;
        const std::uint32_t left = m->jr.credits_left(h); // beyond the held one
        if (left < step) {
            const int more = static_cast<int>(want - left - 1);
            int r = kglue_extend(kh, more, more);
            if (r > 0) {
                if (const errc e = m->write_anchors(h); e != errc::ok) return m->failed(h, e);
                r = kglue_restart(kh, static_cast<int>(want), static_cast<int>(want));
                h.held = 1;
            }
            if (r < 0) return h.dirtied ? m->failed(h, jbtree::from_errno(r)) : r;
        }
        auto a = rc.adjust(h, at, end - at, delta);
        if (!a) return m->failed(h, a.error());
        if (a->done) break;
        at = a->next;
    }
    const errc e = m->write_anchors(h);
    return e == errc::ok ? 0 : m->failed(h, e);
}

int kmaps_refcount_get(kmaps* m, uint64_t block, uint32_t* count) {
    if (const int e = m->refuse()) return e;
    auto c = m->rc.get().refcount_of(block);
    if (!c) return as_int(c.error());
    *count = *c;
    return 0;
}

int kmaps_parent_add(kmaps* m, uint64_t child, uint64_t parent, uint32_t parent_gen, const char* name, size_t len) {
    auto& pm = m->pm.get();
    return m->run(pm.add_credits(), [&](J::handle& h) noexcept {
        return pm.add(h, child, parent, parent_gen, jbtree::name_ref(name, len));
    });
}
int kmaps_parent_add_in(kmaps* m, kglue_handle* kh, uint64_t child, uint64_t parent, uint32_t parent_gen,
                        const char* name, size_t len) {
    auto& pm = m->pm.get();
    return m->run_in(kh, pm.add_credits(), [&](J::handle& h) noexcept {
        return pm.add(h, child, parent, parent_gen, jbtree::name_ref(name, len));
    });
}

int kmaps_parent_remove(kmaps* m, uint64_t child, uint64_t parent, const char* name, size_t len) {
    auto& pm = m->pm.get();
    return m->run(pm.remove_credits(),
                  [&](J::handle& h) noexcept { return pm.remove(h, child, parent, jbtree::name_ref(name, len)); });
}
int kmaps_parent_remove_in(kmaps* m, kglue_handle* kh, uint64_t child, uint64_t parent, const char* name,
                           size_t len) {
    auto& pm = m->pm.get();
    return m->run_in(kh, pm.remove_credits(),
                     [&](J::handle& h) noexcept { return pm.remove(h, child, parent, jbtree::name_ref(name, len)); });
}

int kmaps_parent_paths(kmaps* m, uint64_t ino, uint64_t root, uint64_t* paths) {
    if (const int e = m->refuse()) return e;
    auto r = m->pm.get().paths_of(ino, root, path_depth, m->path_buf, sizeof m->path_buf,
                                  [](const jbtree::path_event&) noexcept {});
    if (!r) return as_int(r.error());
    *paths = r->complete;
    return 0;
}

int kmaps_verify(kmaps* m, uint64_t* problems) {
    if (const int e = m->refuse()) return e;
    const auto& a = m->rm_report.emplace_from([m]() noexcept { return m->rm.get().verify(); });
    const auto& b = m->rc_report.emplace_from([m]() noexcept { return m->rc.get().verify(); });
    const auto& c = m->pm_report.emplace_from([m]() noexcept { return m->pm.get().verify(); });
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
    if (const int e = m->refuse()) return e;
    if (const int e = kglue_force_commit(m->fs)) {
        kglue_abort(m->fs, e);
        m->read_only = true;
        return e;
    }
    return 0;
}

void kmaps_get_credits(kmaps* m, kmaps_credits* c) {
    c->rmap_map = m->rm.get().map_credits();
    c->parent_add = m->pm.get().add_credits();
    c->parent_remove = m->pm.get().remove_credits();
    c->refcount_step = m->rc.get().adjust_step_credits();
}

} // extern "C"
