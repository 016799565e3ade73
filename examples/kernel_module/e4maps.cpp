// SPDX-License-Identifier: MIT
// e4maps: the maps stored in an ext4 image's map file, for kernel code
// (e4maps.h). Freestanding C++ over kernel_policies.hpp: built with the
// kernel's own code-generation flags (the ext4 patch in contrib/linux/
// links it into fs/ext4), it sees the kernel only through kglue.h.
#include "e4maps.h"

#include <cstddef>
#include <cstdint>
#include <new>

#include <jbtree/base/crc32c.hpp>
#include <jbtree/base/endian.hpp>
#include <jbtree/base/in_place.hpp>
#include <jbtree/maps/map_stamp.hpp>
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

// The map file's tree slots and their tree ids (docs/format.md section 8).
constexpr std::uint32_t slots = 3;
static_assert(sizeof(jbtree::map_stamp) == jbtree::volume_owner_data_size);
static_assert(E4MAPS_STAMP_ABANDONED == jbtree::map_stamp_abandoned);

int as_int(errc e) noexcept { return static_cast<int>(e); }

} // namespace

struct e4maps {
    // The maps' nodes never leave the map file: freed ones are not revoked
    // (kernel_journal's revoke_freed), so changes need no revoke credits.
    e4maps(kglue_fs* f, std::uint32_t seed) noexcept : fs(f), st(f, seed), jr(f, false) {}

    kglue_fs* fs;
    S st;
    J jr;
    e4maps_geometry geo{};
    unsigned char owner_data[jbtree::volume_owner_data_size]{};
    jbtree::tree_anchor written[3]{}; // what the volume superblock holds (in the running transaction)
    bool owner_data_dirty = false;
    bool generation_bumped = false;   // the volume superblock's generation was
    std::uint64_t generation_tid = 0; // raised in this transaction already
    e4maps_stats stats{};
    jbtree::in_place<RM> rm;
    jbtree::in_place<RC> rc;
    jbtree::in_place<PM> pm;
    // verify() results: here, not on a small kernel stack.
    jbtree::in_place<jbtree::rmap_verify_report> rm_report;
    jbtree::in_place<jbtree::refcount_verify_report> rc_report;
    jbtree::in_place<jbtree::parent_map_report> pm_report;
};

namespace {

// The volume superblock of a map file, checked as the volume checks it
// (docs/format.md section 7) plus what section 8 fixes: an external
// journal, node checksums seeded from the filesystem's uuid, slots 0..2 in
// use with tree ids 1..3. On success the anchors and geometry are out.
errc check_superblock(const unsigned char* blk, std::uint32_t bs, std::uint64_t first, std::uint64_t blocks,
                      const unsigned char* fs_uuid, e4maps_geometry& g, jbtree::tree_anchor* a,
                      unsigned char* owner_data, std::uint32_t& seed, const char*& why) noexcept {
    const auto* sb = reinterpret_cast<const jbtree::volume_superblock*>(blk);
    auto bad = [&](const char* w) noexcept {
        why = w;
        return errc::corrupted;
    };
    if (sb->magic.get() != jbtree::volume_magic) return bad("no volume superblock at the map file's first block");
    if (sb->checksum.get() != jbtree::volume_sb_checksum(blk)) return bad("volume superblock checksum is wrong");
    const std::uint64_t n = sb->block_count.get(), bits = std::uint64_t{bs} * 8;
    const std::uint64_t bms = sb->bitmap_start.get(), ds = sb->data_start.get();
    const std::uint32_t bm = sb->bitmap_blocks.get();
    const std::uint32_t want_flags = jbtree::volume_flag_node_checksums | jbtree::volume_flag_external_journal;
    if (sb->version.get() != jbtree::volume_version || sb->block_size.get() != bs || n != blocks ||
        sb->first_block.get() != first || sb->tree_slots.get() != jbtree::volume_max_trees ||
        sb->flags.get() != want_flags || sb->journal_start.get() != 0 || sb->journal_blocks.get() != 0 ||
        bms != first + 1 || bm != (n + bits - 1) / bits || ds != bms + bm || ds >= first + n)
        return bad("volume superblock geometry does not match the map file");
    bool same_uuid = true;
    for (int i = 0; i < 16; ++i) same_uuid = same_uuid && sb->uuid[i] == fs_uuid[i];
    seed = jbtree::crc32c_raw(~0u, fs_uuid, 16);
    if (!same_uuid || sb->checksum_seed.get() != seed) return bad("volume uuid is not the filesystem's");
    for (std::uint32_t i = 0; i < jbtree::volume_max_trees; ++i) {
        const jbtree::volume_anchor_disk& d = sb->anchors[i];
        const bool in_use = d.in_use.get() != 0;
        if (i >= slots) {
            if (in_use) return bad("a tree slot past the three maps is in use");
            continue;
        }
        const std::uint64_t root = d.root.get();
        const std::uint16_t h = d.height.get();
        if (!in_use || d.tree_id.get() != i + 1 || h > 16 || (root != 0) != (h != 0) ||
            (root != 0 && (root < ds || root >= first + n)))
            return bad("a tree anchor is out of range");
        a[i] = jbtree::tree_anchor{root, d.records.get(), d.tree_id.get(), h};
    }
    g = e4maps_geometry{first, first + n, bms, ds, bm};
    for (std::uint32_t i = 0; i < jbtree::volume_owner_data_size; ++i) owner_data[i] = sb->owner_data[i];
    return errc::ok;
}


// The frozen trigger (kglue_set_sealer): a changed block's bytes about to
// be logged, or frozen, by a commit: the volume superblock gets its
// checksum, a node its node checksum (the magics differ).
void seal_block(void* ctx, unsigned char* data, std::size_t size) noexcept {
    auto* m = static_cast<e4maps*>(ctx);
    auto* sb = reinterpret_cast<jbtree::volume_superblock*>(data);
    if (sb->magic.get() == jbtree::volume_magic)
        sb->checksum.set(jbtree::volume_sb_checksum(data));
    else
        jbtree::seal_node(data, static_cast<std::uint32_t>(size), m->st.checksum_seed());
}

// The trees' anchors (and the owner data, if set) into the volume
// superblock, in handle h, if they moved: generation + 1 once per
// transaction and the checksum once per commit (the frozen trigger), as
// the volume's own commit writes them (docs/format.md section 7).
errc write_anchors(e4maps* m, J::handle& h) noexcept {
    const jbtree::tree_anchor now[slots] = {m->rm.get().anchor(), m->rc.get().anchor(), m->pm.get().anchor()};
    bool same = !m->owner_data_dirty;
    for (std::uint32_t i = 0; i < slots; ++i) same = same && now[i] == m->written[i];
    if (same) return errc::ok;
    h.held = 0;
    auto b = m->st.read(m->geo.first);
    if (!b) return b.error();
    JBTREE_TRY(m->jr.get_write_access(h, *b));
    unsigned char* p = b->data();
    auto* sb = reinterpret_cast<jbtree::volume_superblock*>(p);
    for (std::uint32_t i = 0; i < slots; ++i) {
        sb->anchors[i].root.set(now[i].root);
        sb->anchors[i].records.set(now[i].records);
        sb->anchors[i].height.set(now[i].height);
    }
    for (std::uint32_t i = 0; i < jbtree::volume_owner_data_size; ++i) sb->owner_data[i] = m->owner_data[i];
    const std::uint64_t tid = m->jr.transaction_id(h);
    if (!m->generation_bumped || m->generation_tid != tid) {
        sb->generation.set(sb->generation.get() + 1);
        m->generation_bumped = true;
        m->generation_tid = tid;
    }
    if (!kglue_defer_seal(m->fs, b->get())) sb->checksum.set(jbtree::volume_sb_checksum(p));
    JBTREE_TRY(m->jr.dirty_metadata(h, *b));
    for (std::uint32_t i = 0; i < slots; ++i) m->written[i] = now[i];
    m->owner_data_dirty = false;
    return errc::ok;
}

// The credits a change needs beyond its trees': the volume superblock, and
// every bitmap block (each node a change allocates or frees sets or clears
// a bit; with at most 16 bitmap blocks, reserving them all is cheap and
// needs no plan).
std::uint64_t extra_credits(const e4maps* m) noexcept { return 1 + std::uint64_t{m->geo.bitmap_blocks}; }

// f(handle) inside the caller's running handle, after making sure it has
// `credits` + extra_credits() buffer credits left (no revoke credits: the
// maps revoke nothing). The caller reserves them when it starts the handle
// (ext4_jbtree_trans_blocks); only a handle that has used them up is
// extended here, by the shortfall (jbd2_journal_extend: 0 or a negative
// errno, > 0 no room: the transaction is full or already committing). A
// failure is returned as it is: nothing is aborted. The caller (ext4) then
// stops using the maps and leaves them to read as stale: whatever this
// handle changed in them commits with a stamp that no longer matches the
// filesystem.
template <class F>
int run_in(e4maps* m, kglue_handle* kh, int kind, std::uint64_t credits, F&& f) noexcept {
    if (!kh || credits >= 0x7FFF0000u) return as_int(errc::invalid);
    J::handle h = J::adopt(kh);
    ++m->stats.changes;
    ++m->stats.calls[kind];
    const std::uint64_t want = credits + extra_credits(m);
    const std::uint32_t left = m->jr.credits_left(h);
    if (left < want) {
        const int more = static_cast<int>(want - left);
        ++m->stats.extends;
        m->stats.extend_credits += static_cast<std::uint32_t>(more);
        const int r = kglue_extend(kh, more, 0);
        if (r) {
            ++m->stats.extends_refused;
            return r > 0 ? as_int(errc::no_credits) : r;
        }
    }
    h.held = static_cast<std::uint32_t>(extra_credits(m));
    const int c0 = kglue_credits_left(kh);
    errc e = f(h);
    const int c1 = kglue_credits_left(kh);
    m->stats.dirtied[kind] += h.dirtied;
    if (e == errc::ok) e = write_anchors(m, h);
    m->stats.nodes[kind] += static_cast<std::uint32_t>(c0 - c1);
    m->stats.anchors[kind] += static_cast<std::uint32_t>(c1 - kglue_credits_left(kh));
    return as_int(e);
}

} // namespace

extern "C" {

int e4maps_open(kglue_fs* fs, uint64_t first, uint64_t blocks, const unsigned char fs_uuid[16], e4maps** out,
                const char** why) {
    const char* w = "";
    if (!why) why = &w;
    *why = "";
    if (!fs || !out || !fs_uuid) return as_int(errc::invalid);
    const std::uint32_t bs = kglue_block_size(fs);
    if (bs < sizeof(jbtree::volume_superblock)) return as_int(errc::invalid);
    e4maps_geometry g{};
    jbtree::tree_anchor a[slots]{};
    unsigned char od[jbtree::volume_owner_data_size];
    std::uint32_t seed = 0;
    {
        int err = 0;
        kglue_buf* b = kglue_read(fs, first, &err);
        if (!b) {
            *why = "cannot read the volume superblock";
            return err;
        }
        const errc e = check_superblock(kglue_data(b), bs, first, blocks, fs_uuid, g, a, od, seed, *why);
        kglue_release(b);
        if (e != errc::ok) return as_int(e);
    }
    void* p = kglue_alloc(sizeof(e4maps));
    if (!p) return as_int(errc::no_memory);
    e4maps* m = ::new (p) e4maps(fs, seed);
    // Changed nodes and the volume superblock are sealed by jbd2's frozen
    // trigger, once per commit (e4maps_close's caller commits first).
    kglue_set_sealer(fs, &seal_block, m);
    m->geo = g;
    for (std::uint32_t i = 0; i < jbtree::volume_owner_data_size; ++i) m->owner_data[i] = od[i];
    auto rm = RM::open(m->st, m->jr, a[0]);
    auto rc = RC::open(m->st, m->jr, a[1]);
    auto pm = PM::open(m->st, m->jr, a[2]);
    if (!rm || !rc || !pm) {
        const errc e = !rm ? rm.error() : !rc ? rc.error() : pm.error();
        *why = "a tree's root node was refused";
        kglue_set_sealer(fs, nullptr, nullptr);
        m->~e4maps();
        kglue_free(p);
        return as_int(e);
    }
    m->rm.emplace(jbtree::rvalue(*rm));
    m->rc.emplace(jbtree::rvalue(*rc));
    m->pm.emplace(jbtree::rvalue(*pm));
    for (std::uint32_t i = 0; i < slots; ++i) m->written[i] = a[i];
    *out = m;
    return 0;
}

void e4maps_close(e4maps* m) {
    if (!m) return;
    kglue_set_sealer(m->fs, nullptr, nullptr);
    m->~e4maps();
    kglue_free(m);
}

void e4maps_get_geometry(const e4maps* m, e4maps_geometry* g) { *g = m->geo; }

const unsigned char* e4maps_owner_data(const e4maps* m) { return m->owner_data; }

int e4maps_verify(e4maps* m, uint64_t* problems) {
    const auto& a = m->rm_report.emplace_from([m]() noexcept { return m->rm.get().verify(); });
    const auto& b = m->rc_report.emplace_from([m]() noexcept { return m->rc.get().verify(); });
    const auto& c = m->pm_report.emplace_from([m]() noexcept { return m->pm.get().verify(); });
    *problems = std::uint64_t{a.tree.problem_count} + a.problem_count + b.tree.problem_count + b.problem_count +
                c.tree.problem_count + c.problem_count;
    return 0;
}

void e4maps_sizes(e4maps* m, uint64_t* rmap, uint64_t* refcount, uint64_t* parent) {
    *rmap = m->rm.get().size();
    *refcount = m->rc.get().size();
    *parent = m->pm.get().size();
}

void e4maps_get_stats(const e4maps* m, e4maps_stats* s) { *s = m->stats; }

void e4maps_get_credits(e4maps* m, e4maps_credits* c) {
    const std::uint32_t x = static_cast<std::uint32_t>(extra_credits(m));
    c->rmap_map = m->rm.get().map_credits() + x;
    c->parent_add = m->pm.get().add_credits() + x;
    c->parent_remove = m->pm.get().remove_credits() + x;
}

int e4maps_rmap_map_in(e4maps* m, kglue_handle* kh, uint64_t start, uint64_t len, uint64_t owner, uint64_t offset,
                       uint32_t flags) {
    auto& rm = m->rm.get();
    return run_in(m, kh, E4MAPS_RMAP_MAP, rm.map_credits(),
                  [&](J::handle& h) noexcept { return rm.map(h, start, len, owner, offset, flags); });
}

int e4maps_rmap_unmap_in(e4maps* m, kglue_handle* kh, uint64_t start, uint64_t len, uint64_t owner,
                         uint64_t offset) {
    auto& rm = m->rm.get();
    auto c = rm.unmap_credits(start, len, owner, offset);
    if (!c) return as_int(c.error());
    return run_in(m, kh, E4MAPS_RMAP_UNMAP, *c, [&](J::handle& h) noexcept { return rm.unmap(h, start, len, owner, offset); });
}

int e4maps_parent_add_in(e4maps* m, kglue_handle* kh, uint64_t child, uint64_t parent, uint32_t parent_gen,
                         const char* name, size_t len) {
    auto& pm = m->pm.get();
    return run_in(m, kh, E4MAPS_PARENT_ADD, pm.add_credits(), [&](J::handle& h) noexcept {
        return pm.add(h, child, parent, parent_gen, jbtree::name_ref(name, len));
    });
}

int e4maps_parent_remove_in(e4maps* m, kglue_handle* kh, uint64_t child, uint64_t parent, const char* name,
                            size_t len) {
    auto& pm = m->pm.get();
    return run_in(m, kh, E4MAPS_PARENT_REMOVE, pm.remove_credits(),
                  [&](J::handle& h) noexcept { return pm.remove(h, child, parent, jbtree::name_ref(name, len)); });
}

int e4maps_set_owner_data_in(e4maps* m, kglue_handle* kh, const unsigned char* data) {
    for (std::uint32_t i = 0; i < jbtree::volume_owner_data_size; ++i) m->owner_data[i] = data[i];
    m->owner_data_dirty = true;
    return run_in(m, kh, E4MAPS_OTHER, 0, [](J::handle&) noexcept { return errc::ok; });
}

namespace {
// The stamp's layout and match rule are jbtree/maps/map_stamp.hpp's (one
// definition, shared with jbtree-e2fs); here only the C interface's
// values go in and out.
jbtree::map_fs_state state_of(const e4maps_stamp* s) noexcept {
    jbtree::map_fs_state f;
    f.wtime = s->fs_wtime;
    f.mtime = s->fs_mtime;
    f.kbytes_written = s->kbytes_written;
    f.free_blocks = s->free_blocks;
    f.free_inodes = s->free_inodes;
    f.mnt_count = s->mnt_count;
    f.gdt_crc = s->gdt_crc;
    return f;
}

// The mount the live stamp names.
jbtree::map_fs_state mount_of(std::uint32_t mnt_count, std::uint64_t mtime, std::uint64_t wtime,
                              std::uint64_t kbytes_written) noexcept {
    jbtree::map_fs_state f;
    f.mnt_count = mnt_count;
    f.mtime = mtime;
    f.wtime = wtime;
    f.kbytes_written = kbytes_written;
    return f;
}

// owner_data into the bytes of the volume superblock: generation + 1, checksum.
void seal_owner_data(e4maps* m, unsigned char* block, const jbtree::map_stamp& st) noexcept {
    auto* sb = reinterpret_cast<jbtree::volume_superblock*>(block);
    jbtree::copy_bytes(sb->owner_data, &st, sizeof st);
    jbtree::copy_bytes(m->owner_data, &st, sizeof st);
    sb->generation.set(sb->generation.get() + 1);
    sb->checksum.set(jbtree::volume_sb_checksum(block));
}
} // namespace

int e4maps_stamp_check(const e4maps* m, const e4maps_stamp* found) {
    jbtree::map_stamp stored;
    jbtree::copy_bytes(&stored, m->owner_data, sizeof stored);
    switch (jbtree::match_stamp(stored, state_of(found))) {
    case jbtree::stamp_match::full: return E4MAPS_STAMP_FULL;
    case jbtree::stamp_match::live: return E4MAPS_STAMP_LIVE;
    case jbtree::stamp_match::stale: break;
    }
    return E4MAPS_STAMP_NONE;
}

int e4maps_live_stamp_in(e4maps* m, kglue_handle* kh, uint32_t mnt_count, uint64_t mtime, uint64_t wtime,
                         uint64_t kbytes_written, uint64_t written_at, uint32_t flags) {
    const jbtree::map_stamp st = jbtree::live_stamp(mount_of(mnt_count, mtime, wtime, kbytes_written), written_at, flags);
    unsigned char od[jbtree::volume_owner_data_size];
    jbtree::copy_bytes(od, &st, sizeof st);
    return e4maps_set_owner_data_in(m, kh, od);
}

void e4maps_live_volume(e4maps* m, unsigned char* block, uint32_t mnt_count, uint64_t mtime, uint64_t wtime,
                        uint64_t kbytes_written, uint64_t written_at, uint32_t flags) {
    seal_owner_data(m, block, jbtree::live_stamp(mount_of(mnt_count, mtime, wtime, kbytes_written), written_at, flags));
}

void e4maps_stamp_volume(e4maps* m, unsigned char* block, const e4maps_stamp* st) {
    seal_owner_data(m, block, jbtree::full_stamp(state_of(st), st->built_at));
}

uint32_t e4maps_crc32c_raw(uint32_t crc, const void* data, size_t len) {
    return jbtree::crc32c_raw(crc, static_cast<const unsigned char*>(data), len);
}

} // extern "C"
