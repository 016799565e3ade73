// SPDX-License-Identifier: MIT
// jbtree: the three maps of an ext4 image, loaded from a scan, stored in the
// image (the map file, map_file.hpp) and opened again for queries.
//
//   load_maps(scan, rm, rc, pm, h)        bulk-load empty maps from a scan
//   build_stored_maps(path, ...)          scan, build, store through the
//                                         image's journal (what `jbtree-e2fs
//                                         build` runs)
//   stored_maps m; m.open(fs, why)        the stored maps of an open image
//
// How a build stays crash-safe (docs/e2fsprogs.md): the trees are built
// straight into blocks that are still free in the filesystem
// (hosted::streaming_storage: only the nodes being filled stay in memory)
// and flushed (ordered data: nothing references them yet); then ONE transaction of the image's jbd2
// journal carries every change that makes them reachable: libext2fs's
// allocation of the map file (block bitmaps, group descriptors, superblock,
// inode 5, through journaled_io) and the volume's bitmap and anchors. The
// superblock is journaled with needs_recovery set and the flag is set on
// disk before the first log block, cleared after the log is emptied, as the
// kernel does. A crash before the commit block leaves the image as it was;
// after it, replay (e2fsck, the kernel, `jbtree-e2fs replay`) finishes it.
//
// Hosted code: allocates (std::vector, std::string) and needs libext2fs,
// like the scan; not part of the freestanding core.
#pragma once

#include "jbtree/ext2fs/libext2fs.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "jbtree/base/errc.hpp"
#include "jbtree/ext2fs/io_device.hpp"
#include "jbtree/ext2fs/journal_extents.hpp"
#include "jbtree/ext2fs/journaled_io.hpp"
#include "jbtree/ext2fs/map_file.hpp"
#include "jbtree/ext2fs/scan.hpp"
#include "jbtree/ext2fs/scan_spill.hpp"
#include "jbtree/hosted/owned_memory.hpp"
#include "jbtree/hosted/radix_sort.hpp"
#include "jbtree/hosted/streaming_storage.hpp"
#include "jbtree/journal/null_journal.hpp"
#include "jbtree/maps/parent_map.hpp"
#include "jbtree/maps/refcount_map.hpp"
#include "jbtree/maps/rmap.hpp"
#include "jbtree/storage/memory_storage.hpp"
#include "jbtree/volume/volume.hpp"

namespace jbtree::ext2fs_adapter {

// Fill percent of bulk-loaded leaves: room for later updates.
inline constexpr unsigned map_fill_percent = 90;
// Capacity of the refcount sweep's heap: the most records overlapping one block.
inline constexpr std::size_t map_sweep_capacity = 4096;

// ---- loading maps from a scan ------------------------------------------------------------

// A scan's links as the parent pointer records they become, in key order:
// keys as parent_map::add() makes them (the name's hash, then collision
// indexes 0, 1, ... in name order among equal hashes); a link whose name a
// parent pointer cannot hold is left out, and the same entry twice (a
// damaged directory) is kept once.
struct keyed_link {
    parent_key key;
    const scan_link* link;
};
[[nodiscard]] inline std::vector<keyed_link> keyed_links(const std::vector<scan_link>& links) {
    using traits = parent_map_traits<>;
    std::vector<keyed_link> ks;
    ks.reserve(links.size());
    for (const scan_link& l : links) {
        const name_ref name(l.name.data(), l.name.size());
        if (!valid_parent_name(name)) continue;
        ks.push_back({parent_key{l.child, l.parent, traits::hash_type::hash(name.data, name.size), 0}, &l});
    }
    hosted::radix_sort(
        ks, [](const keyed_link& x) { return x.key.child; },
        [](const keyed_link& a, const keyed_link& b) {
            const int c = traits::compare(a.key, b.key);
            return c != 0 ? c < 0 : a.link->name < b.link->name;
        });
    auto same = [](const keyed_link& a, const keyed_link& b) {
        return traits::compare(a.key, b.key) == 0 && a.link->name == b.link->name;
    };
    ks.erase(std::unique(ks.begin(), ks.end(), same), ks.end());
    std::vector<keyed_link>& uniq = ks;
    using any_parent_map = parent_map<memory_storage<>, null_journal<memory_storage<>>>; // a static helper: any storage
    any_parent_map::number_collisions(uniq.begin(), uniq.end(), [](keyed_link& x) -> parent_key& { return x.key; });
    return uniq;
}

// Progress of a load: records written so far of the total (rmap, then
// parent pointers), called every 65,536 records and at the end.
struct load_progress {
    void (*fn)(void* ctx, std::uint64_t done, std::uint64_t total) = nullptr;
    void* ctx = nullptr;
    std::uint64_t total = 0, done = 0;
    void step() noexcept {
        if (fn && ((++done & 0xFFFF) == 0 || done == total)) fn(ctx, done, total);
    }
};

// Bulk-load three empty maps from streams, in one handle: the rmap from
// rmap_n records of rnext(rec, got) (canonical, in key order) merged with
// `extra` (e.g. the map file itself), the refcount map swept from that
// rmap (read back from its tree: no records held), the parent pointers
// from link_n() records (called once the rmap is loaded) of lnext(key,
// value, got) in key order; link_hint: their number as far as known before
// (for progress). A stream
// returns an errc (its own failure, e.g. reading a spilled run) or sets
// got false at its end. `what` names the map that failed.
template <class S, class J, class RmapNext, class LinkCount, class LinkNext>
[[nodiscard]] errc load_maps_from(std::uint64_t rmap_n, RmapNext&& rnext, const std::vector<rmap_record>& extra,
                                  std::uint64_t link_hint, LinkCount&& link_count, LinkNext&& lnext, rmap<S, J>& rm, refcount_map<S, J>& rc,
                                  parent_map<S, J>& pm, typename J::handle& h, const char** what = nullptr,
                                  load_progress* progress = nullptr) {
    auto failed = [&](const char* w, errc e) {
        if (what) *what = w;
        return e;
    };
    load_progress none;
    load_progress& pr = progress ? *progress : none;
    pr.total = rmap_n + extra.size() + link_hint;
    pr.done = 0;
    std::vector<rmap_record> more = extra;
    auto key_less = [](const rmap_record& a, const rmap_record& b) { return rmap_traits::compare(a.key(), b.key()) < 0; };
    std::sort(more.begin(), more.end(), key_less);
    std::size_t x = 0;
    errc stream_error = errc::ok;
    rmap_record cur{};
    bool have = false;
    std::uint64_t taken = 0;
    auto fetch = [&]() { // the stream's next record into cur (have false at its end)
        have = false;
        if (taken == rmap_n) return true;
        bool got = false;
        if ((stream_error = rnext(cur, got)) != errc::ok) return false;
        if (!got) return true;
        have = true;
        ++taken;
        return true;
    };
    if (const std::uint64_t total = rmap_n + more.size(); total) {
        if (!fetch()) return failed("rmap", stream_error);
        const errc e = rm.tree().bulk_load(
            h, total,
            [&](rmap_key& k, rmap_value& v) {
                const bool from_extra = x < more.size() && (!have || key_less(more[x], cur));
                if (!from_extra && !have) return false; // the stream ended early
                const rmap_record rec = from_extra ? more[x++] : cur;
                if (!from_extra && !fetch()) return false;
                k = rec.key();
                v = rec.value();
                pr.step();
                return true;
            },
            map_fill_percent);
        if (stream_error != errc::ok) return failed("rmap", stream_error);
        if (e != errc::ok) return failed("rmap", e);
    }
    std::vector<std::uint64_t> ends(map_sweep_capacity);
    auto ext = rm.extents();
    auto n = refcount_map<S, J>::rebuild_count(ext, {ends.data(), ends.size()});
    if (!n) return failed("refcount", n.error());
    if (const errc e = rc.rebuild_from_rmap(h, ext, {ends.data(), ends.size()}, *n, map_fill_percent); e != errc::ok)
        return failed("refcount", e);
    const std::uint64_t link_n = link_count();
    if (link_n) {
        const errc e = pm.tree().bulk_load(
            h, link_n,
            [&](parent_key& k, parent_record& v) {
                bool got = false;
                if ((stream_error = lnext(k, v, got)) != errc::ok || !got) return false;
                pr.step();
                return true;
            },
            map_fill_percent);
        if (stream_error != errc::ok) return failed("parent pointers", stream_error);
        if (e != errc::ok) return failed("parent pointers", e);
    }
    if (pr.fn) pr.fn(pr.ctx, pr.total, pr.total);
    return errc::ok;
}

// Bulk-load three empty maps from a scan, in one handle: the rmap from the
// records (plus `extra`, e.g. the map file itself, merged in key order),
// the refcount map swept from that rmap, the parent pointers with keys as
// add() makes them (name hash, then collision index). Links whose name a
// parent pointer cannot hold are skipped (check reports them). `what` names
// the map that failed.
template <class S, class J>
[[nodiscard]] errc load_maps(const scan_result& r, const std::vector<rmap_record>& extra, rmap<S, J>& rm,
                             refcount_map<S, J>& rc, parent_map<S, J>& pm, typename J::handle& h,
                             const char** what = nullptr, load_progress* progress = nullptr) {
    std::size_t i = 0;
    std::vector<keyed_link> uniq; // made once the rmap is loaded: never both in memory at once
    std::size_t j = 0;
    return load_maps_from(
        r.rmap.size(),
        [&](rmap_record& rec, bool& got) {
            got = i < r.rmap.size();
            if (got) rec = r.rmap[i++];
            return errc::ok;
        },
        extra, r.links.size(),
        [&]() -> std::uint64_t {
            uniq = keyed_links(r.links);
            return uniq.size();
        },
        [&](parent_key& k, parent_record& v, bool& got) {
            got = j < uniq.size();
            if (!got) return errc::ok;
            k = uniq[j].key;
            v.parent_gen = uniq[j].link->parent_gen;
            v.name_len = static_cast<std::uint16_t>(uniq[j].link->name.size());
            std::memcpy(v.name, uniq[j].link->name.data(), v.name_len);
            ++j;
            return errc::ok;
        },
        rm, rc, pm, h, what, progress);
}

// Leave `fs` open but read-only in effect: ext2fs_close() then writes
// neither its in-memory superblock, descriptors nor bitmaps, nor counts the
// bytes written into s_kbytes_written. The MMP block is released.
inline void stop_writing(ext2_filsys fs) noexcept {
    // An MMP filesystem opened read-write has its MMP block set to "fsck
    // running" (written directly, not journaled): put it back, or the kernel
    // would refuse to mount.
    if ((fs->flags & EXT2_FLAG_RW) && ext2fs_has_feature_mmp(fs->super)) (void)ext2fs_mmp_stop(fs);
    fs->flags &= ~(EXT2_FLAG_RW | EXT2_FLAG_DIRTY | EXT2_FLAG_CHANGED | EXT2_FLAG_BB_DIRTY | EXT2_FLAG_IB_DIRTY);
}
// Close the filesystem without letting libext2fs write its in-memory
// superblock, descriptors or bitmaps (every change went through the journal,
// or a replay changed them behind its back).
inline void close_without_writing(ext2_filsys& fs) noexcept {
    if (!fs) return;
    stop_writing(fs);
    ext2fs_close_free(&fs);
}

// ---- the image's journal --------------------------------------------------------------

// journal_options.log_state for an ext4 image: sets (live) or clears the
// superblock's needs_recovery flag on disk, checksum included, and flushes.
struct needs_recovery_flag {
    io_device* dev = nullptr;
    std::vector<unsigned char> buf;

    static errc update(void* ctx, bool live) noexcept {
        auto* self = static_cast<needs_recovery_flag*>(ctx);
        io_device& d = *self->dev;
        ext2_filsys fs = d.filesystem();
        const std::uint32_t bs = d.block_size();
        const std::uint64_t blk = SUPERBLOCK_OFFSET / bs; // block 1 with 1 KiB blocks, else 0
        if (self->buf.size() != bs) return errc::invalid;
        JBTREE_TRY(d.read_blocks(blk, 1, self->buf.data()));
        auto* sb = reinterpret_cast<ext2_super_block*>(self->buf.data() + SUPERBLOCK_OFFSET % bs);
        if (live) ext2fs_set_feature_journal_needs_recovery(sb);
        else ext2fs_clear_feature_journal_needs_recovery(sb);
        ext2fs_superblock_csum_set(fs, sb);
        JBTREE_TRY(d.write_blocks(blk, 1, self->buf.data()));
        return d.flush();
    }
};

// Seconds on the monotonic clock (timing the steps of a build).
inline double monotonic_seconds() noexcept {
    timespec t{};
    clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

inline std::uint64_t realtime_ns(void*) noexcept {
    timespec t{};
    clock_gettime(CLOCK_REALTIME, &t);
    return static_cast<std::uint64_t>(t.tv_sec) * 1000000000u + static_cast<std::uint64_t>(t.tv_nsec);
}

// The smallest transaction a volume with `bitmap_blocks` bitmap blocks
// opens with (twice its bitmap and superblock: volume::open()).
[[nodiscard]] constexpr std::uint32_t volume_min_transaction_blocks(std::uint32_t bitmap_blocks) noexcept {
    return 2 * (bitmap_blocks + 1);
}

// Journal memory for an image of block size bs whose maps' volume has
// bitmap_blocks bitmap blocks; `writing` false for opens that only read
// (queries: a small cache, it only holds a path of each tree), unless
// `read_cache_blocks` asks for more (a check reads every tree several
// times: a cache that holds them all reads each block once).
// extra_blocks: what a transaction journals besides the volume's bitmap
// and superblock (a build: libext2fs's allocation of the map file).
[[nodiscard]] inline hosted::journal_sizes image_journal_sizes(std::uint32_t bs, std::uint32_t bitmap_blocks,
                                                               bool writing = true, std::uint32_t read_cache_blocks = 0,
                                                               std::uint32_t extra_blocks = 0) noexcept {
    hosted::journal_sizes z;
    z.block_size = bs;
    z.bitmap_blocks = bitmap_blocks ? bitmap_blocks : 1;
    // A volume keeps room in every transaction for all its bitmap blocks
    // and its superblock, and opens only if that is at most half of one:
    // a large map file needs larger transactions (capped by open() at a
    // quarter of the log: build_on() refuses a map file too large for it).
    const std::uint32_t tx =
        std::max<std::uint32_t>(writing ? 1024 : 64, volume_min_transaction_blocks(z.bitmap_blocks) + extra_blocks);
    z.max_transaction_blocks = tx;
    z.cache_blocks = std::max<std::uint32_t>(writing ? 2048 : read_cache_blocks > 256 ? read_cache_blocks : 256, tx + 64);
    z.committed_capacity = writing ? 64 : 4;
    z.staging_blocks = writing ? 64 : 4;
    z.revoke_capacity = 1024;
    return z;
}

// ---- saying what is damaged -------------------------------------------------------------
//
// A map operation that fails because of a damaged node (errc::corrupted,
// errc::bad_checksum) leaves the node and the check it failed in the
// tree's last_fault(): these turn that, and verify()'s reports, into words
// naming the map and the block, e.g. "rmap node at block 1234: keys
// outside the parent's separator range".

// Why an operation on `map` (its tree `t`) failed with `e`.
template <class Tree>
[[nodiscard]] std::string describe_map_error(const char* map, const Tree& t, errc e) {
    const node_fault_info& f = t.last_fault();
    if ((e == errc::corrupted || e == errc::bad_checksum) && f.what != node_fault::none)
        return std::string(map) + " node at block " + std::to_string(f.block) + ": " + describe(f.what);
    return std::string(map) + ": " + describe(e);
}

// One problem btree::verify() found, with its block.
[[nodiscard]] inline std::string describe_tree_problem(const char* map, const verify_problem& p) {
    std::string s = std::string(map) + " node at block " + std::to_string(p.blkno) + ": ";
    switch (p.kind) {
    case problem_kind::bad_node: return s + describe(p.fault);
    case problem_kind::read_error: return s + "cannot be read: " + describe(p.error);
    case problem_kind::record_count:
    case problem_kind::bad_anchor: return std::string(map) + " tree: " + describe(p.kind);
    default: return s + describe(p.kind) + " (entry " + std::to_string(p.index) + ")";
    }
}

// The first problem of a map's verify() report, in words (the tree's
// structure first: the record checks run only on a sound tree).
template <class Report>
[[nodiscard]] std::string describe_first_problem(const char* map, const Report& r) {
    if (!r.tree.clean()) return describe_tree_problem(map, r.tree.problems[0]);
    if constexpr (requires { r.walk_error; }) { // parent pointers
        if (r.walk_error != errc::ok) return std::string(map) + ": record walk failed: " + describe(r.walk_error);
        if (r.problem_count)
            return std::string(map) + " record of inode " + std::to_string(r.problems[0].key.child) + " in directory " +
                   std::to_string(r.problems[0].key.parent) + ": " + describe(r.problems[0].kind);
    } else if (r.problem_count) {
        const auto& p = r.problems[0];
        if (p.error != errc::ok) return std::string(map) + ": " + describe(p.kind) + ": " + describe(p.error);
        return std::string(map) + " record at block " + std::to_string(p.start) + ": " + describe(p.kind);
    }
    return std::string(map) + ": clean";
}

// The refcount of `block`, checked against the rmap it is derived from:
// the number of rmap data records (rmap_is_data) covering the block must
// be the refcount map's count when it has a record there (>= 2), and at
// most 1 when it has none. A disagreement is damage no single node shows
// (a refcount record lengthened over its neighbour's blocks, a count or an
// owner changed): errc::corrupted and `disagree`, with both numbers. Any
// other error is the failed map's (`slot`: map_slot_refcount or
// map_slot_rmap).
struct checked_refcount_result {
    errc error = errc::ok;
    bool disagree = false;
    std::uint32_t slot = map_slot_refcount;
    std::uint32_t refcount = 1;      // what the refcount map says
    std::uint64_t data_owners = 0;   // what the rmap says
};
template <class RC, class RM>
[[nodiscard]] checked_refcount_result checked_refcount(RC& rc, RM& rm, std::uint64_t block) noexcept {
    checked_refcount_result r;
    auto c = rc.refcount_of(block);
    if (!c) return r.error = c.error(), r;
    r.refcount = *c;
    r.slot = map_slot_rmap;
    if (const errc e = rm.owners_of(block, [&](const rmap_record& x) noexcept {
            r.data_owners += rmap_is_data(x.owner, x.flags);
            return true;
        });
        e != errc::ok)
        return r.error = e, r;
    const bool agree = r.refcount >= 2 ? r.data_owners == r.refcount : r.data_owners <= 1;
    if (!agree) r.error = errc::corrupted, r.disagree = true;
    return r;
}

// Every parent pointer record paths_of(ino) can use (those of `ino`, of its
// parents, theirs, ... at most `limit` inodes) holds a name whose hash is
// its key's: a record whose name was damaged but whose node is otherwise
// sound would be printed as a path (the engine's node checks do not hash
// names; the map's verify() does). errc::corrupted with the record's key in
// `bad`; another error is the tree's.
template <class PM>
[[nodiscard]] errc check_parent_names(PM& pm, std::uint64_t ino, parent_key& bad, std::size_t limit = 4096) {
    std::vector<std::uint64_t> todo{ino}, seen{ino};
    bool damaged = false;
    while (!todo.empty() && !damaged) {
        const std::uint64_t x = todo.back();
        todo.pop_back();
        const errc e = pm.tree().for_each(parent_key{x, 0, 0, 0}, parent_key{x, ~0ull, ~0u, ~0u},
                                          [&](const parent_key& k, const parent_record& v) {
                                              if (PM::name_hash(v.name_view()) != k.hash) {
                                                  bad = k;
                                                  damaged = true;
                                                  return false;
                                              }
                                              if (seen.size() < limit && std::find(seen.begin(), seen.end(), k.parent) == seen.end()) {
                                                  seen.push_back(k.parent);
                                                  todo.push_back(k.parent);
                                              }
                                              return true;
                                          });
        if (e != errc::ok) return e;
    }
    return damaged ? errc::corrupted : errc::ok;
}

// ---- the stored maps of an open image --------------------------------------------------------

class stored_maps {
public:
    using volume_type = volume<io_device>;
    using S = volume_type::storage;
    using J = volume_type::journal_type;
    using rmap_type = rmap<S, J>;
    using refcount_map_type = refcount_map<S, J>;
    using parent_map_type = parent_map<S, J>;

    stored_maps() = default;
    stored_maps(const stored_maps&) = delete;
    stored_maps& operator=(const stored_maps&) = delete;

    // Open the maps stored in `fs` (opened read-only or read-write; only
    // read here). errc::not_found: none stored (file().state says why,
    // absent or foreign); errc::busy: the image's journal needs recovery
    // first; errc::corrupted: the map file or its volume is damaged, or
    // libext2fs found damage reading inode 5; errc::io: libext2fs failed.
    // `why` says it in words. `for_check`: a cache that holds the whole
    // map file (up to check_cache_bytes), for the checks of check_maps.hpp,
    // which read every tree several times; else a small one for queries.
    static constexpr std::uint64_t check_cache_bytes = std::uint64_t{64} << 20;
    [[nodiscard]] errc open(ext2_filsys fs, std::string& why, bool for_check = false) {
        fs_ = fs;
        errcode_t ee = 0;
        if (const errc e = locate_map_file(fs, file_, &ee); e != errc::ok) {
            why = std::string("inode 5: ") + error_message(ee);
            return e == errc::io && is_damage(ee) ? errc::corrupted : e; // e.g. a group descriptor naming no inode table
        }
        if (ext2fs_has_feature_journal_needs_recovery(fs->super)) { // inode 5 may not be replayed yet
            why = "the image's journal needs recovery (jbtree-e2fs replay, or e2fsck)";
            return errc::busy;
        }
        if (file_.state == map_file_state::absent || file_.state == map_file_state::foreign) {
            why = describe(file_.state);
            return errc::not_found;
        }
        if (file_.state == map_file_state::damaged) {
            why = std::string("the map file (inode 5) is damaged: ") + file_.problem;
            return errc::corrupted;
        }
        errc e = journal_extents(fs, ext_, &ee);
        if (e != errc::ok) {
            why = std::string("the image's journal: ") + describe(e);
            return e == errc::not_supported ? errc::corrupted : e;
        }
        const auto n = static_cast<std::uint32_t>(ext_.size());
        dev_.emplace(fs);
        const std::uint64_t bits = std::uint64_t{fs->blocksize} * 8;
        const std::uint64_t whole = std::min<std::uint64_t>(file_.blocks, check_cache_bytes / fs->blocksize);
        mem_.emplace(image_journal_sizes(fs->blocksize, static_cast<std::uint32_t>((file_.blocks + bits - 1) / bits), false,
                                         for_check ? static_cast<std::uint32_t>(whole) : 0));
        vol_.emplace(*dev_, mem_->volume());
        volume_problem vp = volume_problem::none;
        e = vol_->open({}, &vp, nullptr, volume_location{file_.first, ext_.data(), n});
        if (e != errc::ok) {
            why = std::string("the maps' volume superblock at block ") + std::to_string(file_.first) + ": " +
                  (vp != volume_problem::none ? describe(vp) : describe(e));
            return e == errc::busy ? e : errc::corrupted;
        }
        if (vol_->block_count() != file_.blocks) {
            why = "the maps' volume does not fill the map file";
            return errc::corrupted;
        }
        std::memcpy(&stored_, vol_->owner_data(), sizeof stored_);
        if (stored_.magic.get() != map_stamp_magic) {
            why = "the maps' volume has no build stamp";
            return errc::corrupted;
        }
        now_ = stamp_of(fs);
        auto a0 = vol_->anchor(map_slot_rmap);
        auto a1 = vol_->anchor(map_slot_refcount);
        auto a2 = vol_->anchor(map_slot_parent);
        if (!a0 || !a1 || !a2) {
            why = "the maps' volume lacks a tree";
            return errc::corrupted;
        }
        auto rm = rmap<S, J>::open(vol_->store(), vol_->journal(), *a0);
        auto rc = refcount_map<S, J>::open(vol_->store(), vol_->journal(), *a1);
        auto pm = parent_map<S, J>::open(vol_->store(), vol_->journal(), *a2);
        if (!rm || !rc || !pm) {
            why = !rm   ? root_problem<rmap_traits>("rmap", *a0, rm.error())
                  : !rc ? root_problem<refcount_traits>("refcount", *a1, rc.error())
                        : root_problem<parent_map_traits<>>("parent pointer", *a2, pm.error());
            return errc::corrupted;
        }
        rm_.emplace(std::move(*rm));
        rc_.emplace(std::move(*rc));
        pm_.emplace(std::move(*pm));
        return errc::ok;
    }

    // Why an operation on the stored tree of `slot` (map_slot_rmap, ...)
    // failed with `e`, naming the damaged node: the one in its last_fault();
    // or, when a node points outside the map file (the volume refuses to
    // read such a block: errc::range, and no node is blamed), the node that
    // holds the pointer, found by reading the tree's nodes in the map file.
    [[nodiscard]] std::string describe_error(std::uint32_t slot, errc e) {
        if (slot == map_slot_rmap) return tree_error<rmap_traits>(map_name(slot), rm_->tree(), e);
        if (slot == map_slot_refcount) return tree_error<refcount_traits>(map_name(slot), rc_->tree(), e);
        return tree_error<parent_map_traits<>>(map_name(slot), pm_->tree(), e);
    }
    // The first problem of the verify() report `r` of the tree in `slot`, in
    // words (a read the volume refused: the node pointing there).
    template <class Report>
    [[nodiscard]] std::string describe_verify(std::uint32_t slot, const Report& r) {
        if (!r.tree.clean() && r.tree.problems[0].kind == problem_kind::read_error && r.tree.problems[0].error == errc::range)
            return describe_error(slot, errc::range);
        std::string s = describe_first_problem(map_name(slot), r);
        if (!r.tree.clean() && r.tree.problems[0].kind == problem_kind::record_count) {
            // No block to blame: a node whose count was lowered still holds
            // the entries past it (format: those slots are zero).
            const std::string n = slot == map_slot_rmap       ? stale_entries<rmap_traits>(slot)
                                  : slot == map_slot_refcount ? stale_entries<refcount_traits>(slot)
                                                              : stale_entries<parent_map_traits<>>(slot);
            return n.empty() ? s : s + ", " + n;
        }
        if (!r.tree.clean() || !r.problem_count) return s;
        // A record's problem: in which node.
        std::string where;
        if constexpr (requires { r.walk_error; }) {
            where = node_holding(r.problems[0].key);
        } else if (r.problems[0].error == errc::ok) {
            const std::uint64_t start = r.problems[0].start;
            auto at = [&](auto traits) {
                using T = decltype(traits);
                return leaf_with<T>(slot, [&](const auto& lay, const unsigned char* n, std::uint32_t i) {
                    return load_le<std::uint64_t>(lay.key(n, true, i)) == start ? "at block " + std::to_string(start) : std::string();
                });
            };
            where = slot == map_slot_rmap ? at(rmap_traits{}) : at(refcount_traits{});
        }
        return where.empty() ? s : s + ", in the " + where;
    }
    // The node of the stored rmap or refcount map (`slot`) holding a record
    // that covers `block` (an rmap data record), e.g. "refcount node at
    // block 9495 (record 552+4)"; "" if none is found.
    [[nodiscard]] std::string node_covering(std::uint32_t slot, std::uint64_t block) {
        if (slot == map_slot_rmap)
            return leaf_with<rmap_traits>(slot, [&](const auto& lay, const unsigned char* n, std::uint32_t i) {
                const rmap_key k = rmap_traits::decode_key(lay.key(n, true, i));
                const rmap_value v = rmap_traits::decode_value(lay.payload(n, true, i));
                return k.start <= block && block - k.start < v.length && rmap_is_data(k.owner, v.flags)
                           ? std::to_string(k.start) + "+" + std::to_string(v.length) + " owner " + std::to_string(k.owner)
                           : std::string();
            });
        return leaf_with<refcount_traits>(slot, [&](const auto& lay, const unsigned char* n, std::uint32_t i) {
            const std::uint64_t k = refcount_traits::decode_key(lay.key(n, true, i));
            const refcount_value v = refcount_traits::decode_value(lay.payload(n, true, i));
            return k <= block && block - k < v.length
                       ? std::to_string(k) + "+" + std::to_string(v.length) + " count " + std::to_string(v.refcount)
                       : std::string();
        });
    }
    // The node of the stored parent pointers holding the record `k`, e.g.
    // "parent pointer node at block 9502 (record of inode 63 in directory
    // 12)"; "" if none is found.
    [[nodiscard]] std::string node_holding(const parent_key& want) {
        return leaf_with<parent_map_traits<>>(map_slot_parent, [&](const auto& lay, const unsigned char* n, std::uint32_t i) {
            const parent_key k = parent_map_traits<>::decode_key(lay.key(n, true, i));
            return parent_map_traits<>::compare(k, want) == 0
                       ? "of inode " + std::to_string(k.child) + " in directory " + std::to_string(k.parent)
                       : std::string();
        });
    }
    // The node of the stored rmap holding exactly the record `x`, or "".
    [[nodiscard]] std::string node_holding(const rmap_record& x) {
        return leaf_with<rmap_traits>(map_slot_rmap, [&](const auto& lay, const unsigned char* n, std::uint32_t i) {
            return rmap_traits::compare(rmap_traits::decode_key(lay.key(n, true, i)), x.key()) == 0
                       ? std::to_string(x.start) + "+" + std::to_string(x.length)
                       : std::string();
        });
    }
    [[nodiscard]] static const char* map_name(std::uint32_t slot) noexcept {
        return slot == map_slot_rmap ? "rmap" : slot == map_slot_refcount ? "refcount" : "parent pointer";
    }

    [[nodiscard]] const map_file& file() const noexcept { return file_; }
    [[nodiscard]] ext2_filsys filesystem() const noexcept { return fs_; }
    // The filesystem changed since the build (its stamp differs).
    [[nodiscard]] bool stale() const noexcept { return !stamp_matches(stored_, now_); }
    [[nodiscard]] const map_stamp& stored_stamp() const noexcept { return stored_; }
    [[nodiscard]] const map_stamp& current_stamp() const noexcept { return now_; }
    [[nodiscard]] volume_type& vol() noexcept { return *vol_; }
    [[nodiscard]] rmap<S, J>& rm() noexcept { return *rm_; }
    [[nodiscard]] refcount_map<S, J>& rc() noexcept { return *rc_; }
    [[nodiscard]] parent_map<S, J>& pm() noexcept { return *pm_; }

private:
    // Why a tree's open failed: btree::open validated its root and dropped
    // the tree; validate the root again here to name the check it fails.
    template <class Traits>
    [[nodiscard]] std::string root_problem(const char* map, const tree_anchor& a, errc e) {
        const std::string root = std::to_string(a.root);
        if (a.root == 0 || a.height == 0 || a.height > max_height)
            return std::string("the ") + map + " tree's anchor is inconsistent (root " + root + ", height " +
                   std::to_string(a.height) + ")";
        auto b = vol_->store().read(a.root);
        if (!b) return std::string(map) + " root node at block " + root + ": cannot be read: " + describe(b.error());
        const node_layout<Traits> lay(fs_->blocksize);
        const node_expectation want{a.root, a.tree_id, a.height - 1u, vol_->store().checksums(), vol_->store().checksum_seed()};
        const node_fault f = check_node(lay, b->data(), want);
        return std::string(map) + " root node at block " + root + ": " + (f != node_fault::none ? describe(f) : describe(e));
    }

    template <class Traits, class Tree>
    [[nodiscard]] std::string tree_error(const char* map, const Tree& t, errc e) {
        if (e == errc::range) {
            const std::string s = outside_pointer<Traits>(map, t.anchor().tree_id);
            if (!s.empty()) return s;
        }
        return describe_map_error(map, t, e);
    }
    // The first node of tree `id` (in block order; a sound node: checksum,
    // header) with a child or sibling pointer outside the volume's data
    // area. One read of each allocated block: only on an error path.
    template <class Traits>
    [[nodiscard]] std::string outside_pointer(const char* map, std::uint32_t id) {
        const node_layout<Traits> lay(fs_->blocksize);
        const std::uint64_t lo = vol_->data_start(), hi = vol_->end_block();
        auto outside = [&](std::uint64_t b) { return b < lo || b >= hi; };
        return first_sound_node<Traits>(id, [&](std::uint64_t b, const unsigned char* n) -> std::string {
            const node_header* h = header_of(n);
            const std::string at = std::string(map) + " node at block " + std::to_string(b) + ": ";
            if (h->level.get() == 0) {
                for (const std::uint64_t s : {h->left.get(), h->right.get()})
                    if (s && outside(s)) return at + "sibling link " + std::to_string(s) + " outside the map file";
                return {};
            }
            for (std::uint32_t i = 0; i < node_layout<Traits>::count(n); ++i)
                if (const std::uint64_t c = node_layout<Traits>::child(lay.payload(n, false, i)); outside(c))
                    return at + "child pointer " + std::to_string(c) + " (entry " + std::to_string(i) + ") outside the map file";
            return {};
        });
    }

    // The first non-empty f(block, node) over the structurally sound nodes
    // of tree `id` in the map file (allocated blocks, in block order), or
    // "". One read of each allocated block: only on error paths.
    template <class Traits, class F>
    [[nodiscard]] std::string first_sound_node(std::uint32_t id, F f) {
        const node_layout<Traits> lay(fs_->blocksize);
        for (std::uint64_t b = vol_->data_start(); b < vol_->end_block(); ++b) {
            if (!vol_->allocated(b)) continue;
            auto r = vol_->store().read(b);
            if (!r) continue;
            const unsigned char* n = r->data();
            const node_header* h = header_of(n);
            if (h->magic.get() != Traits::magic || h->tree_id.get() != id) continue;
            const node_expectation want{b, id, h->level.get(), vol_->store().checksums(), vol_->store().checksum_seed(), false};
            if (check_node(lay, n, want) != node_fault::none) continue;
            if (std::string t = f(b, n); !t.empty()) return t;
        }
        return {};
    }

    // The tree id of the map in `slot`.
    [[nodiscard]] std::uint32_t tree_id_of(std::uint32_t slot) const noexcept {
        return slot == map_slot_rmap       ? rm_->anchor().tree_id
               : slot == map_slot_refcount ? rc_->anchor().tree_id
                                           : pm_->anchor().tree_id;
    }

    // Every sound leaf of the tree in `slot`, in block order: the first with
    // a record `show(layout, node, index)` describes (non-empty), as "MAP
    // node at block N (record TEXT)". One read of each allocated block:
    // only on an error path.
    template <class Traits, class Show>
    [[nodiscard]] std::string leaf_with(std::uint32_t slot, Show show) {
        const node_layout<Traits> lay(fs_->blocksize);
        return first_sound_node<Traits>(tree_id_of(slot), [&](std::uint64_t b, const unsigned char* n) -> std::string {
            if (header_of(n)->level.get() != 0) return {};
            for (std::uint32_t i = 0; i < node_layout<Traits>::count(n); ++i)
                if (const std::string t = show(lay, n, i); !t.empty())
                    return std::string(map_name(slot)) + " node at block " + std::to_string(b) + " (record " + t + ")";
            return {};
        });
    }

    // The first sound node of the tree in `slot` (fixed layout) whose key
    // slots past its count are not zero, or "".
    template <class Traits>
    [[nodiscard]] std::string stale_entries(std::uint32_t slot) {
        using L = node_layout<Traits>;
        const L lay(fs_->blocksize);
        return first_sound_node<Traits>(tree_id_of(slot), [&](std::uint64_t b, const unsigned char* n) -> std::string {
            const bool leaf = header_of(n)->level.get() == 0;
            if (leaf && L::slotted_leaves) return {};
            const std::uint32_t cnt = L::count(n);
            if (cnt >= lay.capacity(leaf)) return {};
            const unsigned char* k = lay.key(n, leaf, cnt);
            if (std::any_of(k, k + L::key_size, [](unsigned char c) { return c != 0; }))
                return std::string(map_name(slot)) + " node at block " + std::to_string(b) + ": entries past its count (" +
                       std::to_string(cnt) + ") are not zero";
            return {};
        });
    }

    ext2_filsys fs_ = nullptr;
    map_file file_{};
    std::vector<jbd2::log_extent> ext_;
    std::optional<io_device> dev_;
    std::optional<hosted::owned_memory> mem_;
    std::optional<volume_type> vol_;
    map_stamp stored_{}, now_{};
    // Last: they refer to the volume.
    std::optional<rmap<S, J>> rm_;
    std::optional<refcount_map<S, J>> rc_;
    std::optional<parent_map<S, J>> pm_;
};

// ---- building the stored maps -------------------------------------------------------------

// Why build_stored_maps() refused or failed, for a program to act on (the
// `why` string says it in words).
enum class build_problem : std::uint8_t {
    none,
    cannot_open,    // the image cannot be opened (missing, not ext2/3/4, unreadable superblock)
    in_use,         // mounted, or held by another program (exclusive open, MMP)
    needs_recovery, // its journal needs recovery first
    unsupported,    // no internal journal, no extents, inode 5 foreign, maps too large for a map file
    not_clean,      // marked with errors or not cleanly unmounted
    damaged,        // the scan found damage, or an owned block is marked free in the bitmap
    no_space,       // no free contiguous run for the map file (need_blocks, largest_free_run)
    io,             // libext2fs or the device failed
    failed,         // anything else (memory, a tree that cannot be built)
};

[[nodiscard]] constexpr const char* describe(build_problem p) noexcept {
    switch (p) {
    case build_problem::none: return "none";
    case build_problem::cannot_open: return "cannot open the image";
    case build_problem::in_use: return "the image is in use";
    case build_problem::needs_recovery: return "the journal needs recovery";
    case build_problem::unsupported: return "unsupported";
    case build_problem::not_clean: return "the filesystem is not clean";
    case build_problem::damaged: return "the filesystem is damaged";
    case build_problem::no_space: return "not enough contiguous free space";
    case build_problem::io: return "I/O error";
    case build_problem::failed: return "failed";
    }
    return "unknown";
}

struct build_report {
    build_problem problem = build_problem::none; // set when build_stored_maps() does not return errc::ok
    // The map file's size in blocks, known before anything is written; on
    // build_problem::no_space, also the longest free run the bitmap has.
    std::uint64_t need_blocks = 0, largest_free_run = 0;
    std::uint64_t inodes = 0, directories = 0;
    std::uint64_t rmap_records = 0, refcount_records = 0, parent_records = 0;
    std::uint64_t first = 0, blocks = 0; // the map file's data run
    std::uint64_t tree_blocks = 0;       // its extent tree's blocks (after the run; 0: all in the inode)
    std::uint64_t nodes = 0;             // tree nodes written
    std::uint32_t journaled = 0;         // filesystem blocks libext2fs changed (in the commit)
    bool wrote = false;                  // blocks were written: tree nodes into free blocks, or more
                                         // (a refusal before the trees are built writes none)
    bool replaced = false;               // an older map file was freed
    // Bounded memory (build_hooks::memory): sorted runs the scan wrote to
    // the temporary files, merge passes before the last merge (each
    // merging up to scan_spill::fan_in() runs into one).
    std::uint64_t rmap_runs = 0, link_runs = 0, merge_passes = 0;
    bool gathered = false; // records sharing blocks were gathered in memory
    // Wall time of the phases: open and checks (with reading the bitmaps),
    // scan, building the trees in memory, writing and committing them.
    double open_seconds = 0, scan_seconds = 0, load_seconds = 0, store_seconds = 0;
};

// Test and progress hooks: progress(done, total) during the scan (inodes);
// before_write(blk, n) before every block write of the build (a crash test
// ends the process there); min_blocks: the map file gets at least this
// many data blocks (room for the maps to grow; tests use it for map files
// longer than the inode's 4 extents). Without it (keep_length), a rebuild
// keeps the old map file's length when that is longer than what the maps
// need (room the patched kernel grows them into) and still fits; with it,
// the file is sized from min_blocks and the maps alone.
struct build_hooks {
    void (*progress)(void* ctx, std::uint64_t done, std::uint64_t total) = nullptr;
    void (*before_write)(void* ctx, std::uint64_t blk, std::uint32_t n) = nullptr;
    void* ctx = nullptr;
    std::uint64_t min_blocks = 0;
    bool keep_length = true;
    // Bounded memory: records held at once, in bytes (0: unlimited, every
    // record in memory); past it they go to sorted runs in temporary files
    // in `tmpdir` (scan_spill.hpp; created there and unlinked at once), which
    // must then be given. Only for a build that scans (not a caller's scan).
    std::uint64_t memory = 0;
    const char* tmpdir = nullptr;
    // Progress of writing the trees: records written of the total.
    void (*load_progress)(void* ctx, std::uint64_t done, std::uint64_t total) = nullptr;
};

namespace detail {

// Blocks a map file needs for the scan's records, with room to spare.
// rmap_n: canonical rmap records; links, name_bytes: the scan's links
// (every one, as found) and the sum of their names' lengths.
[[nodiscard]] inline std::uint64_t map_file_estimate(std::uint64_t rmap_n, std::uint64_t links, std::uint64_t name_bytes,
                                                     std::uint32_t bs) noexcept {
    std::uint64_t bytes = rmap_n * 48 + rmap_n / 4 * 24 + 64 + links * 40 + name_bytes;
    const std::uint64_t nodes = bytes * 100 / (std::uint64_t{bs} * 70) + 16;
    const std::uint64_t bits = std::uint64_t{bs} * 8;
    return nodes + 1 + (nodes + bits) / bits;
}


} // namespace detail

// A free run of the block bitmap: the first one of at least `len` blocks
// (found), and the longest free run seen, which is the longest of the
// whole filesystem when none is long enough.
struct free_run {
    bool found = false;
    std::uint64_t first = 0;   // when found: its first block
    std::uint64_t largest = 0; // longest free run seen (blocks)
};

// First fit from s_first_data_block over fs->block_map (loaded), in one
// forward pass: every step starts past the end of the run before it, so
// it ends after at most one pass over the bitmap. (ext2fs_new_range is not
// used for this: in e2fsprogs 1.47 it wraps to s_first_data_block without
// marking that it did when no run is long enough and the last block is in
// use, and scans the bitmap forever.) A libext2fs error code, or 0.
[[nodiscard]] inline errcode_t find_free_run(ext2_filsys fs, std::uint64_t len, free_run& out) noexcept {
    out = free_run{};
    const std::uint64_t end = ext2fs_blocks_count(fs->super); // exclusive
    std::uint64_t b = fs->super->s_first_data_block;
    while (b < end) {
        blk64_t z = 0, s = 0;
        errcode_t e = ext2fs_find_first_zero_block_bitmap2(fs->block_map, b, end - 1, &z);
        if (e == ENOENT) break; // no free block from b on
        if (e) return e;
        if (z < b || z >= end) return EXT2_ET_INVALID_ARGUMENT; // not what was asked: never loop on it
        e = ext2fs_find_first_set_block_bitmap2(fs->block_map, z, end - 1, &s);
        if (e == ENOENT) s = end; // free up to the last block
        else if (e) return e;
        if (s <= z || s > end) return EXT2_ET_INVALID_ARGUMENT;
        const std::uint64_t run = s - z;
        out.largest = std::max(out.largest, run);
        if (run >= len) {
            out.found = true;
            out.first = z;
            return 0;
        }
        b = s; // strictly past z
    }
    return 0;
}

namespace detail {

// Build on an open read-write `fs` (from a scan of it, or `given`: the
// caller's scan of it, used up). The journal is checkpointed and empty on
// return; the caller closes `fs` without letting libext2fs write.
[[nodiscard]] inline errc build_on(ext2_filsys fs, scan_result* given, build_report& rep, std::string& why,
                                   const build_hooks& hooks) {
    auto refuse = [&](build_problem p, errc e, std::string w) {
        rep.problem = p;
        why = std::move(w);
        return e;
    };
    auto lap = [t = monotonic_seconds()]() mutable {
        const double now = monotonic_seconds();
        const double d = now - t;
        t = now;
        return d;
    };
    if (!(fs->flags & EXT2_FLAG_RW)) return refuse(build_problem::failed, errc::invalid, "the filesystem is open read-only");
    ext2_super_block* sb = fs->super;
    if (!ext2fs_has_feature_journal(sb) || sb->s_journal_inum == 0)
        return refuse(build_problem::unsupported, errc::not_supported,
                      "no internal journal: the maps are written through it (tune2fs -j adds one)");
    if (!ext2fs_has_feature_extents(sb))
        return refuse(build_problem::unsupported, errc::not_supported, "the extents feature is needed for the map file");
    if (ext2fs_has_feature_journal_needs_recovery(sb))
        return refuse(build_problem::needs_recovery, errc::busy,
                      "the journal needs recovery first (jbtree-e2fs replay, or e2fsck)");
    if ((sb->s_state & EXT2_ERROR_FS) || !(sb->s_state & EXT2_VALID_FS))
        return refuse(build_problem::not_clean, errc::corrupted,
                      "the filesystem is not clean (errors or not cleanly unmounted): run e2fsck first");
    errcode_t ee = 0;
    map_file old{};
    if (const errc e = locate_map_file(fs, old, &ee); e != errc::ok)
        return refuse(build_problem::io, e, std::string("reading inode 5: ") + error_message(ee));
    if (old.state == map_file_state::foreign) return refuse(build_problem::unsupported, errc::not_supported, describe(old.state));
    if (errcode_t e = ext2fs_read_bitmaps(fs))
        return refuse(is_damage(e) ? build_problem::damaged : build_problem::io, errc::io,
                      std::string("reading the bitmaps: ") + error_message(e));

    rep.open_seconds = lap();
    // 1. Scan (or take the caller's). The old map file's blocks are
    //    dropped: they are freed below.
    scan_result own;
    scan_result& r = given ? *given : own;
    // Bounded memory: records past the budget go to temporary files.
    std::optional<scan_spill> spill;
    if (!given && hooks.memory) {
        if (!hooks.tmpdir) return refuse(build_problem::failed, errc::invalid, "no directory for temporary files");
        spill.emplace(hooks.memory, hooks.tmpdir);
        if (const errc se = spill->open(); se != errc::ok)
            return refuse(build_problem::io, se,
                          std::string("cannot create a temporary file in ") + hooks.tmpdir + ": " + std::strerror(spill->io_errno()));
    }
    auto spill_failed = [&](const char* step) {
        return refuse(build_problem::io, errc::io,
                      std::string(step) + " (temporary files in " + (hooks.tmpdir ? hooks.tmpdir : "?") +
                          "): " + std::strerror(spill->io_errno()));
    };
    if (!given) {
        errc se = scan_filesystem(
            fs, r,
            [&](std::uint64_t d, std::uint64_t t) {
                if (hooks.progress) hooks.progress(hooks.ctx, d, t);
            },
            &ee, spill ? &spill->sink() : nullptr);
        if (se == errc::io && spill && spill->io_errno()) return spill_failed("scan: writing records");
        if (se != errc::ok)
            return refuse(se == errc::corrupted ? build_problem::damaged : build_problem::io, se,
                          std::string("scan: ") + describe(se) + (ee ? std::string(": ") + error_message(ee) : std::string()));
    }
    errc e = errc::ok;
    // Only blocks the bitmap marks free are written: every block something
    // owns must be marked in use, or a damaged bitmap could hand out a
    // file's block (e2fsck's pass 5 finds and fixes that first).
    std::uint64_t hole = 0, hole_owner = 0;
    // The records in memory, or counted in the spilled runs' merge (and
    // the map file's own, which are freed below, left out as they come).
    const bool rmap_streamed = spill && spill->rmap_spilled();
    std::uint64_t rmap_n = 0;
    if (rmap_streamed) {
        std::uint64_t ours = 0;
        if (spill->prepare_rmap([&](const rmap_record& x) {
                if (x.owner == rmap_owner::jbtree) ++ours;
                if (!hole && (hole = first_free_block_of(fs, x)) != 0) hole_owner = x.owner;
                return true;
            }) != errc::ok)
            return spill_failed("merging the rmap records");
        rmap_n = spill->rmap_count() - ours;
        r.blocks_owned = spill->blocks_owned();
    } else hole = first_owned_but_free(fs, r.rmap, &hole_owner);
    if (hole)
        return refuse(build_problem::damaged, errc::corrupted,
                      "block " + std::to_string(hole) + " is in use (owner " + std::to_string(hole_owner) +
                          ") but marked free in the block bitmap: run e2fsck first");
    bool use_stream = rmap_streamed;
    if (rmap_streamed && spill->shared()) { // canonicalize()'s general path: in memory
        if (spill->gather_rmap(r.rmap) != errc::ok) return spill_failed("reading the rmap records back");
        use_stream = false;
        rep.gathered = true;
    }
    if (!use_stream) {
        std::erase_if(r.rmap, [](const rmap_record& x) { return x.owner == rmap_owner::jbtree; });
        rmap_n = r.rmap.size();
    }
    const bool links_streamed = spill && spill->links_spilled();
    std::uint64_t link_raw = r.links.size(), link_names = 0;
    for (const scan_link& l : r.links) link_names += l.name.size();
    if (links_streamed) {
        if (spill->prepare_links() != errc::ok) return spill_failed("merging the links");
        link_raw = spill->raw_links();
        link_names = spill->raw_name_bytes();
    }
    if (spill) {
        rep.rmap_runs = spill->rmap_store().runs_written();
        rep.link_runs = spill->link_store().runs_written();
        rep.merge_passes = spill->rmap_store().merge_passes() + spill->link_store().merge_passes();
    }
    rep.inodes = r.inodes;
    rep.scan_seconds = lap();
    rep.directories = r.directories;

    // The journal's blocks, needed to write: before anything is.
    std::vector<jbd2::log_extent> ext;
    e = journal_extents(fs, ext, &ee);
    const auto next = static_cast<std::uint32_t>(ext.size());
    if (e != errc::ok)
        return refuse(e == errc::corrupted ? build_problem::damaged : build_problem::io, e,
                      std::string("the journal inode: ") + describe(e));
    std::uint64_t log_blocks = 0; // the journal's length
    for (const jbd2::log_extent& x : ext) log_blocks += x.count;

    // 2. Build the trees in memory, numbered as the run they will fill:
    //    the map file's size N is settled here, before any write, and a free
    //    run of N blocks is found in one pass over the bitmap or the build
    //    is refused on the spot.
    const std::uint32_t bs = fs->blocksize;
    const std::uint64_t bits = std::uint64_t{bs} * 8;
    unsigned char uuid[16];
    std::memcpy(uuid, sb->s_uuid, 16);
    const std::uint32_t seed = crc32c_raw(~0u, uuid, 16);
    // The trees are built straight into the run (blocks the bitmap marks
    // free, referenced by nothing until the commit), holding only the
    // nodes the bulk loader works on: the build's memory does not grow
    // with the maps.
    io_device dev(fs);
    dev.set_write_observer(hooks.before_write, hooks.ctx);
    using MS = hosted::streaming_storage<io_device>;
    using MJ = null_journal<MS>;
    std::optional<MS> ms;
    std::optional<MJ> mj;
    // bigalloc: the map file takes whole clusters (allocation is by
    // cluster), so its length is a multiple of the cluster and its run
    // starts a cluster (find_free_run() over a cluster bitmap only finds
    // such runs).
    const std::uint64_t cluster = std::uint64_t{1} << fs->cluster_ratio_bits;
    auto whole_clusters = [cluster](std::uint64_t n) { return (n + cluster - 1) / cluster * cluster; };
    if (hooks.min_blocks >= ext2fs_blocks_count(sb))
        return refuse(build_problem::no_space, errc::no_space,
                      "a map file of " + std::to_string(hooks.min_blocks) + " blocks does not fit in a filesystem of " +
                          std::to_string(ext2fs_blocks_count(sb)));
    // What the maps need with room to grow, or what the caller asked for.
    const std::uint64_t wanted = std::max<std::uint64_t>(whole_clusters(detail::map_file_estimate(rmap_n, link_raw, link_names, bs)), whole_clusters(hooks.min_blocks));
    // A rebuild does not shrink the map file unless asked to (min_blocks
    // given): a longer old one (made with --min-blocks for the room the
    // patched kernel grows the maps into) keeps its length, unless that no
    // longer fits beside it (then `wanted`).
    bool keep_old_length = hooks.keep_length && old.state == map_file_state::present &&
                           whole_clusters(old.blocks) > wanted && old.blocks < ext2fs_blocks_count(sb);
    std::uint64_t N = keep_old_length ? whole_clusters(old.blocks) : wanted;
    blk64_t first = 0;
    std::uint64_t data_start = 0, bm = 0;
    // The extent tree's blocks (none up to 4 extents) follow the run, a
    // cluster each: the map file takes [first, first + N + tree * cluster).
    map_file_tree_shape tree{};
    std::uint64_t fs_tx = 0; // blocks libext2fs journals in the build's transaction, at most
    std::vector<rmap_record> own_blocks;
    std::optional<rmap<MS, MJ>> rm;
    std::optional<refcount_map<MS, MJ>> rc;
    std::optional<parent_map<MS, MJ>> pm;
    for (int attempt = 0;;) { // N doubles each time: at most 5 rounds (and one giving up the old length)
        tree = map_file_tree_of(N, bs);
        const std::uint64_t need = N + tree.tree_blocks * cluster;
        rep.need_blocks = need;
        free_run run;
        if (errcode_t fe = find_free_run(fs, need, run))
            return refuse(build_problem::io, errc::io, std::string("searching the block bitmap: ") + error_message(fe));
        bm = (N + bits - 1) / bits;
        // The one transaction holds libext2fs's changes (the block bitmap
        // and descriptor of every group the old and the new map file
        // touch, the tree, inode, superblock) besides room for the
        // volume's bitmap twice over; jbd2 allows a quarter of the log.
        const std::uint64_t per_group = EXT2_BLOCKS_PER_GROUP(sb);
        fs_tx = 2 * ((need + old.blocks) / per_group + 4) + tree.tree_blocks + 32;
        const std::uint64_t tx = volume_min_transaction_blocks(static_cast<std::uint32_t>(bm)) + fs_tx;
        if (keep_old_length && (!run.found || tx > (log_blocks - 1) / 4)) {
            // The old length does not fit beside the old file, or in one
            // transaction: what the maps need instead.
            keep_old_length = false;
            N = wanted;
            continue;
        }
        if (!run.found) {
            rep.largest_free_run = run.largest;
            return refuse(build_problem::no_space, errc::no_space,
                          "not enough contiguous free space (need " + std::to_string(need) + " blocks, largest free run " +
                              std::to_string(run.largest) + ")");
        }
        first = run.first;
        if (tx > (log_blocks - 1) / 4)
            return refuse(build_problem::unsupported, errc::no_space,
                          "a map file of " + std::to_string(N) + " blocks needs a transaction of " + std::to_string(tx) +
                              " blocks (its allocation in the filesystem, and room for its " + std::to_string(bm) +
                              " allocation bitmap blocks twice over), more than a quarter of the journal (" +
                              std::to_string((log_blocks - 1) / 4) + "): a larger journal (tune2fs -J size=) lifts this");
        data_start = first + 1 + bm;
        rm.reset(), rc.reset(), pm.reset(), mj.reset();
        ms.reset();
        rep.wrote = true; // from here on, tree blocks may be written into the free run
        ms.emplace(dev, hosted::streaming_storage_options{true, seed, data_start, N - 1 - bm});
        mj.emplace(*ms);
        auto a = rmap<MS, MJ>::create(*ms, *mj, 1);
        auto b = refcount_map<MS, MJ>::create(*ms, *mj, 2);
        auto c = parent_map<MS, MJ>::create(*ms, *mj, 3);
        if (!a || !b || !c) return refuse(build_problem::failed, errc::no_memory, "cannot create the maps");
        rm.emplace(std::move(*a)), rc.emplace(std::move(*b)), pm.emplace(std::move(*c));
        auto h = mj->start(unlimited_credits);
        if (!h) return refuse(build_problem::failed, h.error(), std::string("starting to build the maps: ") + describe(h.error()));
        // The map file's own blocks, as a scan finds them: the run, then
        // each tree block (one record when they are contiguous with it).
        own_blocks.assign(1, rmap_record{first, N, rmap_owner::jbtree, 0, 0});
        for (std::uint64_t t = 0; t < tree.tree_blocks; ++t) {
            const std::uint64_t blk = first + N + t * cluster;
            if (rmap_record& last = own_blocks.back(); last.start + last.length == blk) ++last.length;
            else own_blocks.push_back(rmap_record{blk, 1, rmap_owner::jbtree, 0, 0});
        }
        const char* what = "";
        load_progress lp{hooks.load_progress, hooks.ctx};
        std::optional<scan_spill::rmap_stream> rs;
        std::optional<scan_spill::link_stream> ls;
        std::size_t ri = 0;
        std::vector<keyed_link> uniq; // made once the rmap is loaded
        std::size_t li = 0;
        if (use_stream && (rs.emplace(), spill->open_rmap(*rs)) != errc::ok) return spill_failed("reading the rmap records");
        if (links_streamed && (ls.emplace(), spill->open_links(*ls)) != errc::ok) return spill_failed("reading the links");
        e = load_maps_from(
            rmap_n,
            [&](rmap_record& x, bool& got) -> errc {
                for (;;) {
                    if (use_stream) {
                        JBTREE_TRY(rs->next(x, got));
                    } else {
                        got = ri < r.rmap.size();
                        if (got) x = r.rmap[ri++];
                    }
                    if (!got || x.owner != rmap_owner::jbtree) return errc::ok; // the old map file: freed below
                }
            },
            own_blocks, links_streamed ? spill->link_count() : r.links.size(),
            [&]() -> std::uint64_t {
                if (links_streamed) return spill->link_count();
                uniq = keyed_links(r.links);
                return uniq.size();
            },
            [&](parent_key& k, parent_record& v, bool& got) -> errc {
                if (links_streamed) return ls->next(k, v, got);
                got = li < uniq.size();
                if (!got) return errc::ok;
                k = uniq[li].key;
                v.parent_gen = uniq[li].link->parent_gen;
                v.name_len = static_cast<std::uint16_t>(uniq[li].link->name.size());
                std::memcpy(v.name, uniq[li].link->name.data(), v.name_len);
                ++li;
                return errc::ok;
            },
            *rm, *rc, *pm, *h, &what, &lp);
        if (e == errc::io && spill && spill->io_errno()) return spill_failed("reading the spilled records");
        if (e == errc::ok && (e = ms->flush()) != errc::ok) {
            why = std::string("writing the maps: ") + describe(e);
            return e;
        }
        if (e == errc::ok) break;
        if (e != errc::no_space || attempt == 4)
            return refuse(build_problem::failed, e, std::string("building the ") + what + " map: " + describe(e));
        ++attempt;
        N = whole_clusters(N * 2);
    }
    rep.rmap_records = rm->size();
    rep.refcount_records = rc->size();
    rep.parent_records = pm->size();
    rep.first = first;
    rep.blocks = N;
    rep.tree_blocks = tree.tree_blocks;
    rep.nodes = ms->end_block() - data_start;
    rep.replaced = old.state != map_file_state::absent;
    rep.load_seconds = lap();

    // 3. The volume's superblock and bitmap (the nodes are written).
    std::vector<unsigned char> scratch(bs);
    volume_geometry g;
    g.first_block = first;
    g.block_count = N;
    g.external_journal = true;
    std::memcpy(g.uuid, uuid, 16);
    if ((e = stored_maps::volume_type::create(dev, g, scratch.data())) != errc::ok) {
        why = std::string("writing the maps' volume: ") + describe(e);
        return e;
    }

    // 4. One transaction: the filesystem's allocation of the map file and
    //    the volume's bitmap and anchors.
    //    The bytes written through fs->io so far (the caller's, the nodes
    //    just written) go into s_kbytes_written now, as ext2fs_close()
    //    would: the superblock is not written again after the build.
    if (fs->io->manager->get_stats) {
        io_stats stats = nullptr;
        fs->io->manager->get_stats(fs->io, &stats);
        if (stats && stats->bytes_written && sb->s_kbytes_written) sb->s_kbytes_written += stats->bytes_written >> 10;
    }
    needs_recovery_flag flag{&dev, std::vector<unsigned char>(bs)};
    jbd2::journal_options opt;
    opt.clock_ns = &realtime_ns;
    opt.log_state = &needs_recovery_flag::update;
    opt.log_state_ctx = &flag;
    hosted::owned_memory mem(image_journal_sizes(bs, static_cast<std::uint32_t>(bm), true, 0, static_cast<std::uint32_t>(fs_tx)));
    stored_maps::volume_type v(dev, mem.volume());
    volume_problem vp = volume_problem::none;
    if ((e = v.open(opt, &vp, nullptr, volume_location{first, ext.data(), next})) != errc::ok) {
        why = std::string("opening the maps' volume on the image's journal: ") + describe(e) + " (" + describe(vp) + ")";
        return e;
    }
    if ((e = v.claim(data_start, rep.nodes)) != errc::ok || (e = v.set_anchor(map_slot_rmap, rm->anchor())) != errc::ok ||
        (e = v.set_anchor(map_slot_refcount, rc->anchor())) != errc::ok ||
        (e = v.set_anchor(map_slot_parent, pm->anchor())) != errc::ok) {
        why = std::string("recording the trees in the volume: ") + describe(e);
        return e;
    }
    auto h = v.start(v.max_handle_credits());
    if (!h) {
        why = std::string("starting the transaction: ") + describe(h.error());
        return h.error();
    }
    errcode_t fe = 0;
    const char* step = "";
    {
        journaled_io<stored_maps::J> jio(fs, v.journal(), *h);
        if ((e = jio.install()) != errc::ok) {
            why = "cannot route libext2fs's writes into the journal";
            return e;
        }
        ext2_inode inode{};
        const std::uint64_t now = static_cast<std::uint64_t>(time(nullptr));
        do {
            step = "freeing the old map file";
            if (old.state != map_file_state::absent) {
                if ((fe = ext2fs_read_inode(fs, map_inode, &inode))) break;
                if ((fe = ext2fs_punch(fs, map_inode, &inode, nullptr, 0, ~0ULL))) break;
            }
            step = "writing inode 5";
            inode = ext2_inode{};
            inode.i_mode = LINUX_S_IFREG | 0400;
            inode.i_links_count = 1;
            inode.i_generation = map_inode_marker;
            inode.i_atime = inode.i_ctime = inode.i_mtime = static_cast<__u32>(now);
            inode.i_flags = EXT4_EXTENTS_FL;
            if ((fe = ext2fs_write_new_inode(fs, map_inode, &inode))) break;
            step = "allocating the map file";
            if (tree.depth == 0) {
                if ((fe = ext2fs_fallocate(fs, EXT2_FALLOCATE_FORCE_INIT, map_inode, nullptr, first, 0, N))) break;
                if ((fe = ext2fs_read_inode(fs, map_inode, &inode))) break;
            } else {
                // More extents than the inode holds: the tree is written
                // here, packed, in the blocks planned for it (libext2fs
                // would put its blocks wherever its allocator likes, and
                // the trees were numbered and loaded knowing where).
                ext2fs_block_alloc_stats_range(fs, first, static_cast<blk_t>(N), +1);
                for (std::uint64_t t = 0; t < tree.tree_blocks; ++t)
                    ext2fs_block_alloc_stats_range(fs, first + N + t * cluster, static_cast<blk_t>(cluster), +1);
                step = "writing the map file's extent tree";
                if ((fe = write_map_file_tree(fs, map_inode, inode, first, N, first + N, cluster))) break;
                if ((fe = ext2fs_iblk_set(fs, &inode, N / cluster + tree.tree_blocks))) break;
            }
            step = "setting the map file's size";
            if ((fe = ext2fs_inode_size_set(fs, &inode, static_cast<ext2_off64_t>(N * bs)))) break;
            if ((fe = ext2fs_write_inode(fs, map_inode, &inode))) break;
            step = "writing the bitmaps, descriptors and superblock";
            ext2fs_set_feature_journal_needs_recovery(fs->super); // the journaled copy says: replay me
            ext2fs_mark_super_dirty(fs);
            fs->flags |= EXT2_FLAG_MASTER_SB_ONLY; // as the kernel: backups untouched
            if ((fe = ext2fs_flush2(fs, EXT2_FLAG_FLUSH_NO_SYNC))) break;
            step = "";
        } while (false);
        rep.journaled = jio.journaled();
        if (jio.error() != errc::ok) {
            why = std::string(step) + ": the transaction is full or the journal failed: " + describe(jio.error());
            return jio.error();
        }
    }
    if (fe) {
        why = std::string(step) + ": " + error_message(fe);
        return errc::io;
    }
    // The allocation must be exactly the run the trees were numbered for.
    map_file now_file{};
    {
        // locate reads through fs->io: the journaled blocks are in the
        // journal's cache, so look through it once more.
        journaled_io<stored_maps::J> jio(fs, v.journal(), *h);
        if (jio.install() != errc::ok || locate_map_file(fs, now_file, &ee) != errc::ok ||
            now_file.state != map_file_state::present || now_file.first != first || now_file.blocks != N) {
            return refuse(build_problem::failed, errc::no_space, "libext2fs did not allocate the planned run for the map file");
        }
    }
    if ((e = v.stop(*h)) != errc::ok) {
        why = std::string("ending the transaction: ") + describe(e);
        return e;
    }
    map_stamp st = stamp_of(fs);
    st.built_at.set(static_cast<std::uint64_t>(time(nullptr)));
    v.set_owner_data(reinterpret_cast<const unsigned char*>(&st));
    if ((e = v.commit()) != errc::ok) {
        why = std::string("commit: ") + describe(e) +
              ": the journal may hold part of the build; replay it (jbtree-e2fs replay, or e2fsck)";
        return e;
    }
    // 5. Checkpoint, empty the log, clear needs_recovery.
    if ((e = v.close()) != errc::ok) {
        why = std::string("checkpoint: ") + describe(e) + ": the build is committed in the journal; replay it";
        return e;
    }
    rep.store_seconds = lap();
    return errc::ok;
}

[[nodiscard]] inline errc build_stored_maps(const char* path, build_report& rep, std::string& why,
                                            const build_hooks& hooks) {
    auto refuse = [&](build_problem p, errc e, std::string w) {
        rep.problem = p;
        why = std::move(w);
        return e;
    };
    int mount_flags = 0;
    if (errcode_t e = ext2fs_check_if_mounted(path, &mount_flags)) {
        // Also what a missing file gives (ENOENT from its stat()).
        return refuse(e == ENOENT ? build_problem::cannot_open : build_problem::io, errc::io,
                      std::string("cannot tell whether it is mounted: ") + error_message(e));
    }
    if (mount_flags & EXT2_MF_MOUNTED) return refuse(build_problem::in_use, errc::busy, "the filesystem is mounted");
    ext2_filsys fs = nullptr;
    if (errcode_t e = ext2fs_open2(path, nullptr, EXT2_FLAG_RW | EXT2_FLAG_64BITS | EXT2_FLAG_EXCLUSIVE, 0, 0,
                                   unix_io_manager, &fs)) {
        const bool busy = e == EBUSY || e == EXT2_ET_MMP_FSCK_ON || e == EXT2_ET_MMP_FAILED;
        return refuse(busy ? build_problem::in_use : build_problem::cannot_open, busy ? errc::busy : errc::io,
                      std::string("cannot open read-write: ") + error_message(e));
    }
    struct closer {
        ext2_filsys* fs;
        ~closer() { close_without_writing(*fs); }
    } close_fs{&fs};
    return build_on(fs, nullptr, rep, why, hooks);
}

} // namespace detail

// Scan the image at `path`, build the three maps and store them in it (the
// map file replaces an older one). Nothing is written unless every check
// passes; `why` says what was refused or failed and rep.problem says it
// for a program (every failure sets it). errc::not_supported: no internal
// journal, no extents feature, or inode 5 foreign; errc::busy:
// mounted, or the journal needs recovery; errc::corrupted: the filesystem
// is marked with errors or not clean, the scan found damage, or a block
// something owns is marked free in the bitmap (the map file is only ever
// put in blocks the bitmap says are free); errc::no_space: no free
// contiguous run for the map file (rep.need_blocks, rep.largest_free_run),
// found before anything is written.
[[nodiscard]] inline errc build_stored_maps(const char* path, build_report& rep, std::string& why,
                                            const build_hooks& hooks = {}) {
    rep = build_report{};
    const errc e = detail::build_stored_maps(path, rep, why, hooks);
    if (e != errc::ok && rep.problem == build_problem::none) // the steps that write: I/O, or the journal
        rep.problem = e == errc::io ? build_problem::io : e == errc::corrupted ? build_problem::damaged : build_problem::failed;
    return e;
}

// The same on `fs`, opened read-write by the caller (e2fsck at the end of
// its run), from `given` (the caller's scan of it, e.g. a scan_collector's:
// used up) or, when null, a scan made here. The filesystem must be as the
// maps are to describe it: bitmaps loaded or on disk as they must be, the
// superblock clean. Once anything was written (rep.wrote; a refusal
// writes nothing and leaves `fs` as it was), `fs` is left flushed and
// read-only: its superblock and descriptors went through the journal, so
// ext2fs_close() must write nothing more (a later superblock write would
// also make the maps stale; what ext2fs_close() adds to s_kbytes_written
// for the writes made through fs->io is added by the build's superblock
// write instead). An MMP block is released.
[[nodiscard]] inline errc build_stored_maps(ext2_filsys fs, scan_result* given, build_report& rep, std::string& why,
                                            const build_hooks& hooks = {}) {
    rep = build_report{};
    if (!fs) return errc::invalid;
    const errc e = detail::build_on(fs, given, rep, why, hooks);
    if (e != errc::ok && rep.problem == build_problem::none)
        rep.problem = e == errc::io ? build_problem::io : e == errc::corrupted ? build_problem::damaged : build_problem::failed;
    if (rep.wrote) {
        if ((fs->flags & EXT2_FLAG_RW) && ext2fs_has_feature_mmp(fs->super)) (void)ext2fs_mmp_stop(fs);
        fs->flags &= ~(EXT2_FLAG_RW | EXT2_FLAG_DIRTY | EXT2_FLAG_BB_DIRTY | EXT2_FLAG_IB_DIRTY);
    }
    return e;
}

} // namespace jbtree::ext2fs_adapter
