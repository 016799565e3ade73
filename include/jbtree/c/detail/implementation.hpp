// SPDX-License-Identifier: MIT
// jbtree: the C API's implementation (include/jbtree/c/jbtree.h).
//
// Compiled in exactly one C++ translation unit, by jbtree.h when
// JBTREE_C_IMPLEMENTATION is defined. A jbt_volume is one of two backends:
//   own      (jbt_volume_open) a jbtree::volume over a BlockDevice that calls
//            the caller's jbt_block_io, in memory from the caller's
//            jbt_allocator (the journal's cache and tables, the volume
//            bitmap), holding the rmap in tree slot 0, the refcount map in
//            slot 1 and parent pointers in slot 2 (tree ids 1, 2, 3);
//   caller's (jbt_maps_open) the three maps over the caller's buffer cache
//            and journal (jbt_storage_ops, jbt_journal_ops).
// Each change runs in a handle of exactly the credits it needs; the own
// backend records the changed anchors in the same handle.
#pragma once

#ifndef JBTREE_C_JBTREE_H
#error "include jbtree/c/jbtree.h with JBTREE_C_IMPLEMENTATION defined instead"
#endif

#include <bit>
#include <cstddef>
#include <cstdint>
#include <new>

#include "jbtree/base/errc.hpp"
#include "jbtree/base/in_place.hpp"
#include "jbtree/journal/jbd2_journal.hpp"
#include "jbtree/maps/parent_map.hpp"
#include "jbtree/maps/refcount_map.hpp"
#include "jbtree/maps/rmap.hpp"
#include "jbtree/volume/ownership.hpp"
#include "jbtree/volume/volume.hpp"

namespace jbtree::c_api {

// A callback's return value as an errc: jbtree::from_errno (base/errc.hpp).

// A BlockDevice over the caller's callbacks.
class callback_device {
public:
    explicit callback_device(const jbt_block_io& io) noexcept : io_(io) {}
    [[nodiscard]] std::uint32_t block_size() const noexcept { return io_.block_size; }
    [[nodiscard]] std::uint64_t block_count() const noexcept { return io_.block_count; }
    [[nodiscard]] errc read_blocks(std::uint64_t blk, std::uint32_t n, unsigned char* out) noexcept {
        if (n == 0) return errc::ok;
        if (!out) return errc::invalid;
        if (blk >= io_.block_count || n > io_.block_count - blk) return errc::range;
        return from_errno(io_.read(io_.ctx, blk, n, out));
    }
    [[nodiscard]] errc write_blocks(std::uint64_t blk, std::uint32_t n, const unsigned char* in) noexcept {
        if (n == 0) return errc::ok;
        if (!in) return errc::invalid;
        if (blk >= io_.block_count || n > io_.block_count - blk) return errc::range;
        return from_errno(io_.write(io_.ctx, blk, n, in));
    }
    [[nodiscard]] errc flush() noexcept { return from_errno(io_.flush(io_.ctx)); }

private:
    jbt_block_io io_;
};
static_assert(BlockDevice<callback_device>);

[[nodiscard]] inline bool valid_io(const jbt_block_io* io) noexcept {
    return io && io->read && io->write && io->flush && valid_block_size(io->block_size) && io->block_size >= 1024 &&
           io->block_count > 0;
}
[[nodiscard]] inline bool valid_allocator(const jbt_allocator* a) noexcept { return a && a->alloc && a->free; }

// One allocation from the caller's allocator, remembered for freeing.
struct allocation {
    void* p = nullptr;
    std::size_t size = 0, align = 0;
};

// The caller's buffer cache as a BlockStorage.
class callback_storage {
public:
    class buffer {
    public:
        buffer() noexcept = default;
        buffer(const jbt_storage_ops* ops, const jbt_buffer& b) noexcept : ops_(ops), b_(b) {}
        buffer(buffer&& o) noexcept : ops_(o.ops_), b_(o.b_) { o.ops_ = nullptr; }
        buffer& operator=(buffer&& o) noexcept {
            if (this != &o) {
                drop();
                ops_ = o.ops_;
                b_ = o.b_;
                o.ops_ = nullptr;
            }
            return *this;
        }
        ~buffer() { drop(); }
        [[nodiscard]] unsigned char* data() noexcept { return b_.data; }
        [[nodiscard]] std::uint64_t blkno() const noexcept { return b_.blkno; }
        [[nodiscard]] jbt_buffer* raw() noexcept { return &b_; }

    private:
        void drop() noexcept {
            if (ops_) ops_->release(ops_->ctx, &b_);
            ops_ = nullptr;
        }
        const jbt_storage_ops* ops_ = nullptr;
        jbt_buffer b_{};
    };

    explicit callback_storage(const jbt_storage_ops& ops) noexcept : ops_(ops) {}
    [[nodiscard]] std::uint32_t block_size() const noexcept { return ops_.block_size; }
    [[nodiscard]] bool checksums() const noexcept { return true; }
    [[nodiscard]] std::uint32_t checksum_seed() const noexcept { return ops_.checksum_seed; }
    [[nodiscard]] result<buffer> read(std::uint64_t blkno) noexcept {
        jbt_buffer b{};
        if (const int e = ops_.read(ops_.ctx, blkno, &b)) return from_errno(e);
        if (!b.data || b.blkno != blkno) return errc::io;
        return buffer(&ops_, b);
    }
    [[nodiscard]] result<buffer> allocate() noexcept {
        jbt_buffer b{};
        if (const int e = ops_.allocate(ops_.ctx, &b)) return from_errno(e);
        if (!b.data || b.blkno == 0) return errc::io;
        return buffer(&ops_, b);
    }
    [[nodiscard]] errc free(std::uint64_t blkno) noexcept { return from_errno(ops_.free(ops_.ctx, blkno)); }
    [[nodiscard]] errc write(buffer&) noexcept { return errc::ok; } // the caller's journal writes
    [[nodiscard]] errc flush() noexcept { return errc::ok; }

private:
    jbt_storage_ops ops_;
};
static_assert(BlockStorage<callback_storage>);

// The caller's journal as a Journal policy.
class callback_journal {
public:
    class handle {
    public:
        handle() noexcept = default;
        explicit handle(void* h) noexcept : h_(h) {}
        handle(handle&& o) noexcept : h_(o.h_) { o.h_ = nullptr; }
        handle& operator=(handle&& o) noexcept {
            h_ = o.h_;
            o.h_ = nullptr;
            return *this;
        }

    private:
        friend class callback_journal;
        void* h_ = nullptr;
    };

    explicit callback_journal(const jbt_journal_ops& ops) noexcept : ops_(ops) {}
    [[nodiscard]] result<handle> start(std::uint32_t credits) noexcept {
        void* h = nullptr;
        if (const int e = ops_.start(ops_.ctx, credits, &h)) return from_errno(e);
        return handle(h);
    }
    [[nodiscard]] std::uint32_t credits_left(const handle& h) const noexcept { return ops_.credits_left(ops_.ctx, h.h_); }
    [[nodiscard]] std::uint64_t transaction_id(const handle& h) const noexcept {
        return ops_.transaction_id(ops_.ctx, h.h_);
    }
    [[nodiscard]] errc get_write_access(handle& h, callback_storage::buffer& b) noexcept {
        return from_errno(ops_.get_write_access(ops_.ctx, h.h_, b.raw()));
    }
    [[nodiscard]] errc get_create_access(handle& h, callback_storage::buffer& b) noexcept {
        return from_errno(ops_.get_create_access(ops_.ctx, h.h_, b.raw()));
    }
    [[nodiscard]] errc dirty_metadata(handle& h, callback_storage::buffer& b) noexcept {
        return from_errno(ops_.dirty_metadata(ops_.ctx, h.h_, b.raw()));
    }
    [[nodiscard]] errc forget(handle& h, std::uint64_t blkno) noexcept {
        return from_errno(ops_.forget(ops_.ctx, h.h_, blkno));
    }
    [[nodiscard]] errc stop(handle& h) noexcept {
        const int e = ops_.stop(ops_.ctx, h.h_);
        h.h_ = nullptr;
        return from_errno(e);
    }

private:
    jbt_journal_ops ops_;
};
static_assert(Journal<callback_journal, callback_storage>);

[[nodiscard]] inline bool valid_ops(const jbt_storage_ops* s, const jbt_journal_ops* j) noexcept {
    return s && j && s->read && s->allocate && s->free && s->release && valid_block_size(s->block_size) &&
           s->block_size >= 1024 && j->start && j->credits_left && j->transaction_id && j->get_write_access &&
           j->get_create_access && j->dirty_metadata && j->forget && j->stop;
}

inline constexpr std::uint32_t slot_rmap = 0, slot_refcount = 1, slot_parent = 2;
inline constexpr std::uint32_t path_depth = 64;

using volume_type = volume<callback_device>;
using S = volume_type::storage;
using J = volume_type::journal_type;
using XS = callback_storage;
using XJ = callback_journal;

// The three maps over one storage and journal.
template <class St, class Jr>
struct map_set {
    in_place<rmap<St, Jr>> rm;
    in_place<refcount_map<St, Jr>> rc;
    in_place<parent_map<St, Jr>> pm;

    // Open from anchors (a null anchor: a new, empty map with tree id i + 1).
    errc open(St& s, Jr& j, const tree_anchor* const a[3]) noexcept {
        auto r = a[0] ? rmap<St, Jr>::open(s, j, *a[0]) : rmap<St, Jr>::create(s, j, 1);
        if (!r) return r.error();
        rm.emplace(rvalue(*r));
        auto c = a[1] ? refcount_map<St, Jr>::open(s, j, *a[1]) : refcount_map<St, Jr>::create(s, j, 2);
        if (!c) return c.error();
        rc.emplace(rvalue(*c));
        auto p = a[2] ? parent_map<St, Jr>::open(s, j, *a[2]) : parent_map<St, Jr>::create(s, j, 3);
        if (!p) return p.error();
        pm.emplace(rvalue(*p));
        return errc::ok;
    }
    void reset() noexcept {
        pm.reset();
        rc.reset();
        rm.reset();
    }
};

} // namespace jbtree::c_api

// The opaque volume of the C API.
struct jbt_volume {
    jbt_volume(const jbt_allocator& a, bool external_) noexcept : mem(a), external(external_) {}

    jbt_allocator mem;
    bool external;
    jbt_journal_hooks hooks{};
    jbtree::c_api::allocation parts[12];
    unsigned nparts = 0;
    unsigned char* path_buf = nullptr;
    std::size_t path_buf_size = 0;
    // The own backend.
    jbtree::in_place<jbtree::c_api::callback_device> dev;
    jbtree::volume_memory vm{};
    jbtree::in_place<jbtree::c_api::volume_type> vol;
    jbtree::c_api::map_set<jbtree::c_api::S, jbtree::c_api::J> own;
    // The caller's backend.
    jbtree::in_place<jbtree::c_api::XS> xs;
    jbtree::in_place<jbtree::c_api::XJ> xj;
    jbtree::c_api::map_set<jbtree::c_api::XS, jbtree::c_api::XJ> theirs;

    // Memory from the caller's allocator, zeroed; freed by release().
    template <class T>
    T* take(std::size_t count, std::size_t align = alignof(T)) noexcept {
        if (nparts == sizeof parts / sizeof parts[0] || count == 0) return nullptr;
        const std::size_t size = count * sizeof(T);
        void* p = mem.alloc(mem.ctx, size, align);
        if (!p) return nullptr;
        parts[nparts++] = {p, size, align};
        jbtree::fill_bytes(static_cast<unsigned char*>(p), 0, size);
        return static_cast<T*>(p);
    }
    // Destroy the maps and the volume (nothing written) and give back the memory.
    void release() noexcept {
        theirs.reset();
        own.reset();
        vol.reset();
        while (nparts) {
            const jbtree::c_api::allocation& a = parts[--nparts];
            mem.free(mem.ctx, a.p, a.size, a.align);
        }
    }
};

namespace jbtree::c_api {

inline std::uint64_t hook_clock(void* ctx) noexcept {
    auto* v = static_cast<jbt_volume*>(ctx);
    return v->hooks.clock_ns(v->hooks.ctx);
}
inline errc hook_log_state(void* ctx, bool live) noexcept {
    auto* v = static_cast<jbt_volume*>(ctx);
    return from_errno(v->hooks.log_state(v->hooks.ctx, live ? 1 : 0));
}

// Runs step(handle) in a handle of `credits` of the own backend, records
// the three anchors in the same handle, stops it.
struct own_runner {
    jbt_volume* v;
    template <class F>
    int operator()(std::uint64_t credits, F&& step) const noexcept {
        volume_type& vol = v->vol.get();
        if (credits == 0 || credits > vol.max_handle_credits()) return static_cast<int>(errc::no_credits);
        auto h = vol.start(static_cast<std::uint32_t>(credits));
        if (!h) return static_cast<int>(h.error());
        errc e = step(*h);
        if (e == errc::ok) e = vol.set_anchor(slot_rmap, v->own.rm.get().anchor());
        if (e == errc::ok) e = vol.set_anchor(slot_refcount, v->own.rc.get().anchor());
        if (e == errc::ok) e = vol.set_anchor(slot_parent, v->own.pm.get().anchor());
        const errc s = vol.stop(*h);
        return static_cast<int>(e != errc::ok ? e : s);
    }
    [[nodiscard]] std::uint64_t max_credits() const noexcept { return v->vol.get().max_handle_credits(); }
};

// The same over the caller's journal (the caller records the roots).
struct their_runner {
    jbt_volume* v;
    template <class F>
    int operator()(std::uint64_t credits, F&& step) const noexcept {
        if (credits == 0 || credits > 0x7FFFFFFFu) return static_cast<int>(errc::no_credits);
        auto h = v->xj.get().start(static_cast<std::uint32_t>(credits));
        if (!h) return static_cast<int>(h.error());
        const errc e = step(*h);
        const errc s = v->xj.get().stop(*h);
        return static_cast<int>(e != errc::ok ? e : s);
    }
    [[nodiscard]] std::uint64_t max_credits() const noexcept { return 0x7FFFFFFFu; }
};

// f(maps, runner) on whichever backend v has.
template <class F>
int dispatch(jbt_volume* v, F&& f) noexcept {
    if (!v) return static_cast<int>(errc::invalid);
    if (v->external) return f(v->theirs, their_runner{v});
    return f(v->own, own_runner{v});
}

inline void free_volume(jbt_volume* v) noexcept {
    v->release();
    const jbt_allocator a = v->mem;
    v->~jbt_volume();
    a.free(a.ctx, v, sizeof(jbt_volume), alignof(jbt_volume));
}

} // namespace jbtree::c_api

extern "C" {

int jbt_volume_create(const jbt_block_io* io, const jbt_allocator* mem, uint32_t journal_blocks, const uint8_t* uuid) {
    using namespace jbtree;
    if (!c_api::valid_io(io) || !c_api::valid_allocator(mem)) return static_cast<int>(errc::invalid);
    c_api::callback_device dev(*io);
    volume_geometry g;
    g.journal_blocks = journal_blocks;
    if (uuid) copy_bytes(g.uuid, uuid, 16);
    void* scratch = mem->alloc(mem->ctx, io->block_size, 64);
    if (!scratch) return static_cast<int>(errc::no_memory);
    const errc e = c_api::volume_type::create(dev, g, static_cast<unsigned char*>(scratch));
    mem->free(mem->ctx, scratch, io->block_size, 64);
    return static_cast<int>(e);
}

int jbt_volume_open(const jbt_block_io* io, const jbt_allocator* mem, const jbt_journal_hooks* hooks,
                    const jbt_open_options* opts, jbt_volume** out) {
    using namespace jbtree;
    using c_api::S;
    using c_api::J;
    if (!c_api::valid_io(io) || !c_api::valid_allocator(mem) || !out) return static_cast<int>(errc::invalid);
    const std::uint32_t bs = io->block_size;
    const std::uint32_t cache = opts && opts->cache_blocks ? opts->cache_blocks : 1024;
    const std::uint32_t max_tx = opts && opts->max_transaction_blocks ? opts->max_transaction_blocks : 256;
    if (cache < max_tx + 64 || max_tx < 8) return static_cast<int>(errc::invalid); // the journal's own rule
    void* self = mem->alloc(mem->ctx, sizeof(jbt_volume), alignof(jbt_volume));
    if (!self) return static_cast<int>(errc::no_memory);
    jbt_volume* v = ::new (self) jbt_volume(*mem, false);
    auto fail = [&](errc e) noexcept {
        c_api::free_volume(v);
        return static_cast<int>(e);
    };
    if (hooks) v->hooks = *hooks;
    v->dev.emplace(*io);
    // The journal's and the volume's memory.
    const std::uint32_t buckets = std::bit_ceil(cache), committed = 64, staging = 16, revokes = 1u << 14;
    const std::uint64_t bits = std::uint64_t{bs} * 8;
    const std::uint32_t bitmap = static_cast<std::uint32_t>((io->block_count + bits - 1) / bits);
    jbd2::journal_memory& jm = v->vm.journal;
    jm.cache = v->take<unsigned char>(std::size_t{cache} * bs, 64);
    jm.slots = v->take<jbd2::cache_slot>(cache);
    jm.cache_blocks = cache;
    jm.buckets = v->take<std::uint32_t>(buckets);
    jm.bucket_count = buckets;
    jm.running = v->take<std::uint32_t>(max_tx);
    jm.revokes = v->take<std::uint64_t>(max_tx);
    jm.max_transaction_blocks = max_tx;
    jm.committed = v->take<jbd2::committed_tx>(committed);
    jm.committed_capacity = committed;
    jm.staging = v->take<unsigned char>(std::size_t{staging} * bs, 64);
    jm.staging_blocks = staging;
    v->vm.bitmap = v->take<unsigned char>(std::size_t{bitmap} * bs);
    v->vm.bitmap_dirty = v->take<unsigned char>(bitmap);
    v->vm.bitmap_blocks = bitmap;
    v->vm.revokes = v->take<jbd2::revoke_entry>(revokes);
    v->vm.revoke_capacity = revokes;
    v->path_buf_size = parent_map<S, J>::path_buffer_size(c_api::path_depth);
    v->path_buf = v->take<unsigned char>(v->path_buf_size);
    if (!jm.cache || !jm.slots || !jm.buckets || !jm.running || !jm.revokes || !jm.committed || !jm.staging ||
        !v->vm.bitmap || !v->vm.bitmap_dirty || !v->vm.revokes || !v->path_buf)
        return fail(errc::no_memory);
    c_api::volume_type& vol = v->vol.emplace(v->dev.get(), v->vm);
    jbd2::journal_options o;
    if (v->hooks.clock_ns) o.clock_ns = &c_api::hook_clock, o.clock_ctx = v;
    if (v->hooks.log_state) o.log_state = &c_api::hook_log_state, o.log_state_ctx = v;
    if (const errc e = vol.open(o); e != errc::ok) return fail(e);
    // The maps: opened from their anchors, or new and empty.
    auto a0 = vol.anchor(c_api::slot_rmap);
    auto a1 = vol.anchor(c_api::slot_refcount);
    auto a2 = vol.anchor(c_api::slot_parent);
    const tree_anchor* const anchors[3] = {a0 ? &*a0 : nullptr, a1 ? &*a1 : nullptr, a2 ? &*a2 : nullptr};
    if (const errc e = v->own.open(vol.store(), vol.journal(), anchors); e != errc::ok) return fail(e);
    *out = v;
    return 0;
}

int jbt_maps_open(const jbt_storage_ops* storage, const jbt_journal_ops* journal, const jbt_allocator* mem,
                  const jbt_root* roots, jbt_volume** out) {
    using namespace jbtree;
    if (!c_api::valid_ops(storage, journal) || !c_api::valid_allocator(mem) || !out)
        return static_cast<int>(errc::invalid);
    void* self = mem->alloc(mem->ctx, sizeof(jbt_volume), alignof(jbt_volume));
    if (!self) return static_cast<int>(errc::no_memory);
    jbt_volume* v = ::new (self) jbt_volume(*mem, true);
    v->path_buf_size = parent_map<c_api::XS, c_api::XJ>::path_buffer_size(c_api::path_depth);
    v->path_buf = v->take<unsigned char>(v->path_buf_size);
    if (!v->path_buf) {
        c_api::free_volume(v);
        return static_cast<int>(errc::no_memory);
    }
    c_api::XS& s = v->xs.emplace(*storage);
    c_api::XJ& j = v->xj.emplace(*journal);
    tree_anchor a[3]{};
    const tree_anchor* anchors[3] = {nullptr, nullptr, nullptr};
    if (roots)
        for (int i = 0; i < 3; ++i) {
            a[i] = tree_anchor{roots[i].root, roots[i].records, roots[i].tree_id,
                               static_cast<std::uint16_t>(roots[i].height > 0xFFFFu ? 0xFFFFu : roots[i].height)};
            anchors[i] = &a[i];
        }
    if (const errc e = v->theirs.open(s, j, anchors); e != errc::ok) {
        c_api::free_volume(v);
        return static_cast<int>(e);
    }
    *out = v;
    return 0;
}

int jbt_maps_roots(jbt_volume* v, jbt_root roots[3]) {
    if (!roots) return static_cast<int>(jbtree::errc::invalid);
    return jbtree::c_api::dispatch(v, [&](auto& m, auto) noexcept {
        const jbtree::tree_anchor a[3] = {m.rm.get().anchor(), m.rc.get().anchor(), m.pm.get().anchor()};
        for (int i = 0; i < 3; ++i) roots[i] = jbt_root{a[i].root, a[i].records, a[i].tree_id, a[i].height};
        return 0;
    });
}

int jbt_volume_commit(jbt_volume* v) {
    if (!v) return static_cast<int>(jbtree::errc::invalid);
    if (v->external) return static_cast<int>(jbtree::errc::not_supported); // the caller's journal commits
    return static_cast<int>(v->vol.get().commit());
}

int jbt_volume_close(jbt_volume* v) {
    if (!v) return static_cast<int>(jbtree::errc::invalid);
    const jbtree::errc e = v->external ? jbtree::errc::ok : v->vol.get().close();
    jbtree::c_api::free_volume(v);
    return static_cast<int>(e);
}

void jbt_volume_abandon(jbt_volume* v) {
    if (v) jbtree::c_api::free_volume(v);
}

int jbt_rmap_map(jbt_volume* v, uint64_t start, uint64_t length, uint64_t owner, uint64_t offset, uint32_t flags) {
    return jbtree::c_api::dispatch(v, [&](auto& m, auto run) noexcept {
        auto& rm = m.rm.get();
        return run(rm.map_credits(), [&](auto& h) noexcept { return rm.map(h, start, length, owner, offset, flags); });
    });
}

int jbt_rmap_unmap(jbt_volume* v, uint64_t start, uint64_t length, uint64_t owner, uint64_t offset) {
    return jbtree::c_api::dispatch(v, [&](auto& m, auto run) noexcept {
        auto& rm = m.rm.get();
        auto credits = rm.unmap_credits(start, length, owner, offset);
        if (!credits) return static_cast<int>(credits.error());
        return run(*credits, [&](auto& h) noexcept { return rm.unmap(h, start, length, owner, offset); });
    });
}

int jbt_rmap_owners(jbt_volume* v, uint64_t block, jbt_rmap_visit visit, void* ctx) {
    if (!visit) return static_cast<int>(jbtree::errc::invalid);
    return jbtree::c_api::dispatch(v, [&](auto& m, auto) noexcept {
        return static_cast<int>(m.rm.get().owners_of(block, [&](const jbtree::rmap_record& r) noexcept {
            const jbt_rmap_record c{r.start, r.length, r.owner, r.offset, r.flags};
            return visit(ctx, &c) == 0;
        }));
    });
}

int jbt_refcount_adjust(jbt_volume* v, uint64_t start, uint64_t length, int delta) {
    return jbtree::c_api::dispatch(v, [&](auto& m, auto run) noexcept {
        return static_cast<int>(m.rc.get().adjust_all(start, length, delta, run.max_credits(),
                                                       [&](std::uint64_t credits, auto&& step) noexcept {
                                                           return run(credits, step);
                                                       }));
    });
}

int jbt_refcount_get(jbt_volume* v, uint64_t block, uint32_t* count) {
    if (!count) return static_cast<int>(jbtree::errc::invalid);
    return jbtree::c_api::dispatch(v, [&](auto& m, auto) noexcept {
        auto c = m.rc.get().refcount_of(block);
        if (!c) return static_cast<int>(c.error());
        *count = *c;
        return 0;
    });
}

int jbt_parent_add(jbt_volume* v, uint64_t child, uint64_t parent, uint32_t parent_generation, const char* name,
                   size_t name_len) {
    if (!name) return static_cast<int>(jbtree::errc::invalid);
    return jbtree::c_api::dispatch(v, [&](auto& m, auto run) noexcept {
        auto& pm = m.pm.get();
        return run(pm.add_credits(), [&](auto& h) noexcept {
            return pm.add(h, child, parent, parent_generation, jbtree::name_ref(name, name_len));
        });
    });
}

int jbt_parent_remove(jbt_volume* v, uint64_t child, uint64_t parent, const char* name, size_t name_len) {
    if (!name) return static_cast<int>(jbtree::errc::invalid);
    return jbtree::c_api::dispatch(v, [&](auto& m, auto run) noexcept {
        auto& pm = m.pm.get();
        return run(pm.remove_credits(),
                   [&](auto& h) noexcept { return pm.remove(h, child, parent, jbtree::name_ref(name, name_len)); });
    });
}

int jbt_parent_find(jbt_volume* v, uint64_t child, uint64_t parent, const char* name, size_t name_len,
                    uint32_t* parent_generation) {
    if (!name || !parent_generation) return static_cast<int>(jbtree::errc::invalid);
    return jbtree::c_api::dispatch(v, [&](auto& m, auto) noexcept {
        auto g = m.pm.get().find(child, parent, jbtree::name_ref(name, name_len));
        if (!g) return static_cast<int>(g.error());
        *parent_generation = *g;
        return 0;
    });
}

int jbt_parent_paths(jbt_volume* v, uint64_t ino, uint64_t root, jbt_path_visit visit, void* ctx, uint64_t* complete) {
    if (!visit) return static_cast<int>(jbtree::errc::invalid);
    return jbtree::c_api::dispatch(v, [&](auto& m, auto) noexcept {
        std::uint64_t n = 0;
        auto r = m.pm.get().paths_of(ino, root, jbtree::c_api::path_depth, v->path_buf, v->path_buf_size,
                                     [&](const jbtree::path_event& e) noexcept {
                                         if (e.kind != jbtree::path_kind::complete) return true;
                                         ++n;
                                         return visit(ctx, reinterpret_cast<const char*>(e.path), e.size) == 0;
                                     });
        if (complete) *complete = n;
        return r ? 0 : static_cast<int>(r.error());
    });
}

int jbt_verify(jbt_volume* v, jbt_verify_result* out) {
    using jbtree::errc;
    if (!out) return static_cast<int>(errc::invalid);
    return jbtree::c_api::dispatch(v, [&](auto& m, auto) noexcept {
        *out = jbt_verify_result{};
        auto& rm = m.rm.get();
        auto& rc = m.rc.get();
        auto& pm = m.pm.get();
        const auto rv = rm.verify();
        const auto cv = rc.verify();
        const auto pv = pm.verify();
        out->rmap_records = rm.size();
        out->refcount_records = rc.size();
        out->parent_records = pm.size();
        out->problems = rv.tree.problem_count + rv.problem_count + cv.tree.problem_count + cv.problem_count +
                        pv.tree.problem_count + pv.problem_count;
        if (out->problems) return 0; // the other checks walk the trees: only on sound ones
        const std::size_t ends = 4096;
        auto* sweep = static_cast<std::uint64_t*>(v->mem.alloc(v->mem.ctx, ends * sizeof(std::uint64_t), 8));
        if (!sweep) return static_cast<int>(errc::no_memory);
        errc e = errc::ok;
        auto src = rm.extents();
        auto cc = rc.cross_check(src, {sweep, ends}, [](std::uint64_t, std::uint64_t, std::uint32_t, std::uint32_t) noexcept {});
        if (cc) out->refcount_mismatches = *cc;
        else e = cc.error();
        v->mem.free(v->mem.ctx, sweep, ends * sizeof(std::uint64_t), 8);
        // The own backend's allocator against the trees' blocks (the caller's
        // allocator is the caller's to check).
        if (e == errc::ok && !v->external) {
            auto& vol = v->vol.get();
            const std::size_t seen_bytes = static_cast<std::size_t>((vol.end_block() - vol.data_start() + 7) / 8);
            auto* seen = static_cast<unsigned char*>(v->mem.alloc(v->mem.ctx, seen_bytes, 8));
            if (!seen) return static_cast<int>(errc::no_memory);
            const auto own = jbtree::check_ownership(vol, seen, seen_bytes, v->own.rm.get().tree(),
                                                     v->own.rc.get().tree(), v->own.pm.get().tree());
            out->block_problems = own.problem_count;
            v->mem.free(v->mem.ctx, seen, seen_bytes, 8);
        }
        return static_cast<int>(e);
    });
}

const char* jbt_strerror(int err) { return jbtree::describe(static_cast<jbtree::errc>(err)); }

} // extern "C"
