// SPDX-License-Identifier: MIT
// jbtree: a volume: several trees, their block allocator and their anchors
// in one BlockDevice, updated atomically through one jbd2 journal.
//
// Layout (docs/format.md, "Volume"), in device block numbers from the
// volume's first block F (0 for a volume that is the whole device):
//
//   block F                      volume superblock (anchors, geometry)
//   [journal_start, +journal)    the jbd2 journal (internal journal only)
//   [bitmap_start, +bitmaps)     allocation bitmap of [F, F + block_count)
//   [data_start, F + block_count) tree nodes
//
// A volume can also live inside a range of a larger device and use a
// journal that is not its own (an external journal: the log of the
// filesystem that holds it, e.g. an ext4 image's jbd2 journal; its log
// extents are given to open(), and replaying it is the caller's job).
//
// The allocator works on an in-memory copy of the bitmap. Its changed
// blocks and the anchors are written into the running transaction by
// commit(), so a transaction's node changes, allocations, frees and root
// changes reach the disk together or not at all. For that, handles are
// started through the volume (start()), which keeps room in every
// transaction for the bitmap and the superblock.
#pragma once

#include <cstddef>
#include <cstdint>

#include "jbtree/base/crc32c.hpp"
#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"
#include "jbtree/engine/tree_anchor.hpp"
#include "jbtree/journal/jbd2_journal.hpp"
#include "jbtree/journal/jbd2_mkjournal.hpp"
#include "jbtree/journal/jbd2_recovery.hpp"
#include "jbtree/node/header.hpp"
#include "jbtree/policy/block_device.hpp"

namespace jbtree {

inline constexpr std::uint32_t volume_magic = 0x4C564A42u; // "BJVL" little-endian: 'B','J','V','L'
inline constexpr std::uint32_t volume_version = 1;
inline constexpr std::uint32_t volume_max_trees = 16;
inline constexpr std::uint32_t volume_flag_node_checksums = 1;
inline constexpr std::uint32_t volume_flag_external_journal = 2; // the log is not inside the volume
inline constexpr std::uint32_t volume_owner_data_size = 64;

// One tree's anchor as stored in the superblock (32 bytes).
struct volume_anchor_disk {
    le64 root;     // root block, 0 = empty tree
    le64 records;  // records in the tree
    le32 tree_id;  // stamped in every node of the tree
    le16 height;   // 0 = empty
    le16 in_use;   // 1 = this anchor slot holds a tree
    le64 reserved;
};
static_assert(sizeof(volume_anchor_disk) == 32);

// The volume superblock, block 0 (all fields little-endian).
struct volume_superblock {
    le32 magic;          // 0x00 volume_magic
    le32 version;        // 0x04 volume_version
    le32 block_size;     // 0x08 bytes per block (nodes, journal, bitmap)
    le32 flags;          // 0x0C volume_flag_*
    unsigned char uuid[16]; // 0x10 identity; seeds node checksums
    le64 block_count;    // 0x20 blocks in the volume
    le64 journal_start;  // 0x28 first journal block
    le32 journal_blocks; // 0x30 journal length
    le32 bitmap_blocks;  // 0x34 allocation bitmap length
    le64 bitmap_start;   // 0x38 first bitmap block
    le64 data_start;     // 0x40 first block the allocator hands out
    le64 generation;     // 0x48 commits that changed this block
    le32 checksum_seed;  // 0x50 crc32c_raw(~0, uuid): the node checksum seed
    le32 tree_slots;     // 0x54 volume_max_trees
    le64 first_block;    // 0x58 this superblock's own device block
    unsigned char reserved[28]; // 0x60
    le32 checksum;       // 0x7C crc32c_raw(~0) of the first 1024 bytes with this field 0
    volume_anchor_disk anchors[volume_max_trees]; // 0x80 .. 0x280
    unsigned char owner_data[volume_owner_data_size]; // 0x280 the embedder's, committed with the anchors
    unsigned char reserved2[1024 - 0x2C0];
};
static_assert(sizeof(volume_superblock) == 1024);
static_assert(offsetof(volume_superblock, checksum) == 0x7C);
static_assert(offsetof(volume_superblock, anchors) == 0x80);

[[nodiscard]] inline std::uint32_t volume_sb_checksum(const unsigned char* b) noexcept {
    static constexpr unsigned char zero[4] = {0, 0, 0, 0};
    std::uint32_t c = crc32c_raw(~0u, b, 0x7C);
    c = crc32c_raw(c, zero, 4);
    return crc32c_raw(c, b + 0x80, 1024 - 0x80);
}

// How to lay out a new volume.
struct volume_geometry {
    std::uint64_t first_block = 0;  // where the volume starts on the device
    std::uint64_t block_count = 0;  // its length; 0: to the end of the device
    bool external_journal = false;  // the log lives elsewhere (volume_location)
    std::uint32_t journal_blocks = 0; // internal journal: 0 = 1/8 of the volume, at least 1024 blocks
    bool node_checksums = true;
    unsigned char uuid[16] = {};
    jbd2::journal_features journal{};
};

// Where open() finds a volume: its first block, and for a volume with an
// external journal, that journal's log extents (the caller's; they must
// outlive the volume).
struct volume_location {
    std::uint64_t first_block = 0;
    const jbd2::log_extent* external_log = nullptr;
    std::uint32_t external_log_extents = 0;
};

// Why a volume was refused.
enum class volume_problem : std::uint8_t {
    none,
    bad_magic,
    bad_checksum,
    bad_geometry,  // fields out of range or overlapping
    bad_anchor,    // an anchor points outside the data area
    journal,       // the journal superblock was refused (see journal_problem), or
                   // internal/external does not match the superblock
    too_small,     // create: the device cannot hold the layout
};

[[nodiscard]] constexpr const char* describe(volume_problem p) noexcept {
    switch (p) {
    case volume_problem::none: return "ok";
    case volume_problem::bad_magic: return "not a jbtree volume (bad magic)";
    case volume_problem::bad_checksum: return "volume superblock checksum is wrong";
    case volume_problem::bad_geometry: return "volume superblock geometry is out of range";
    case volume_problem::bad_anchor: return "a tree anchor points outside the volume's data area";
    case volume_problem::journal: return "the volume's journal was refused";
    case volume_problem::too_small: return "device too small for a volume";
    }
    return "unknown problem";
}

// Memory a volume works in, besides the journal's.
struct volume_memory {
    jbd2::journal_memory journal;
    unsigned char* bitmap = nullptr;     // bitmap_blocks * block_size bytes
    unsigned char* bitmap_dirty = nullptr; // bitmap_blocks bytes
    std::uint32_t bitmap_blocks = 0;
    jbd2::revoke_entry* revokes = nullptr; // recovery's revoke table
    std::size_t revoke_capacity = 0;
};

template <BlockDevice Dev>
class volume {
public:
    using journal_type = jbd2::journal<Dev>;
    using buffer = typename journal_type::buffer;
    using handle = typename journal_type::handle;

    // The BlockStorage trees of this volume use (with journal() as their Journal).
    class storage {
    public:
        using buffer = typename journal_type::buffer;
        [[nodiscard]] std::uint32_t block_size() const noexcept { return v_->bs_; }
        [[nodiscard]] bool checksums() const noexcept { return v_->flags_ & volume_flag_node_checksums; }
        [[nodiscard]] std::uint32_t checksum_seed() const noexcept { return v_->seed_; }
        [[nodiscard]] result<buffer> read(std::uint64_t blkno) noexcept {
            if (blkno < v_->data_start_ || blkno >= v_->end_) return errc::range; // never a node
            return v_->j_.read(blkno);
        }
        [[nodiscard]] result<buffer> allocate() noexcept { return v_->allocate(); }
        [[nodiscard]] errc free(std::uint64_t blkno) noexcept { return v_->free_block(blkno); }
        [[nodiscard]] errc write(buffer&) noexcept { return errc::ok; } // the journal writes
        [[nodiscard]] errc flush() noexcept { return v_->commit(); }

    private:
        friend class volume;
        volume* v_ = nullptr;
    };

    volume(Dev& dev, const volume_memory& mem) noexcept
        : dev_(&dev), mem_(mem), ext_{}, j_(dev, &ext_, 1, mem.journal) {
        st_.v_ = this;
    }
    volume(const volume&) = delete;
    volume& operator=(const volume&) = delete;

    // Lay out a new, empty volume (overwrites its blocks; with an external
    // journal, that journal is not touched). The blocks are written directly
    // and flushed, the superblock last: for a volume inside a filesystem,
    // do it in blocks nothing references yet, then commit the filesystem's
    // change that makes them the volume's.
    [[nodiscard]] static errc create(Dev& dev, const volume_geometry& g, unsigned char* scratch,
                                     volume_problem* why = nullptr) noexcept {
        auto refuse = [&](volume_problem p, errc e) noexcept {
            if (why) *why = p;
            return e;
        };
        if (why) *why = volume_problem::none;
        const std::uint32_t bs = dev.block_size();
        if (!valid_block_size(bs) || bs < 1024) return refuse(volume_problem::bad_geometry, errc::invalid);
        const std::uint64_t dev_blocks = dev.block_count(), first = g.first_block;
        if (first >= dev_blocks || g.block_count > dev_blocks - first)
            return refuse(volume_problem::bad_geometry, errc::range);
        // A volume at block 0 is the whole device (open() checks that it
        // still is: a shorter device was truncated).
        if (first == 0 && g.block_count && g.block_count != dev_blocks)
            return refuse(volume_problem::bad_geometry, errc::range);
        const std::uint64_t n = g.block_count ? g.block_count : dev_blocks - first;
        std::uint64_t jb = 0;
        if (!g.external_journal) {
            jb = g.journal_blocks ? g.journal_blocks : n / 8;
            if (!g.journal_blocks && jb < 1024) jb = 1024;
            if (jb < 64 || jb > 0xFFFFFFFFu) return refuse(volume_problem::too_small, errc::no_space);
        }
        const std::uint64_t bits = std::uint64_t{bs} * 8;
        const std::uint64_t bm = (n + bits - 1) / bits;
        const std::uint64_t data_off = 1 + jb + bm; // data_start - first
        if (data_off + 8 > n) return refuse(volume_problem::too_small, errc::no_space);
        if (!g.external_journal) {
            // The journal superblock and an empty log.
            jbd2::log_extent ext{first + 1, static_cast<std::uint32_t>(jb)};
            jbd2::log_area<Dev> log(dev, &ext, 1);
            JBTREE_TRY(jbd2::make_journal(log, g.journal, g.uuid, scratch));
        }
        // Bitmap: the superblock, journal and bitmap blocks are in use, and
        // the bits past the volume's end.
        for (std::uint64_t b = 0; b < bm; ++b) {
            fill_bytes(scratch, 0, bs);
            for (std::uint64_t i = 0; i < bits; ++i) {
                const std::uint64_t rel = b * bits + i;
                if (rel < data_off || rel >= n) scratch[i / 8] |= static_cast<unsigned char>(1u << (i % 8));
            }
            JBTREE_TRY(dev.write_blocks(first + 1 + jb + b, 1, scratch));
        }
        fill_bytes(scratch, 0, bs);
        volume_superblock* sb = reinterpret_cast<volume_superblock*>(scratch);
        sb->magic.set(volume_magic);
        sb->version.set(volume_version);
        sb->block_size.set(bs);
        sb->flags.set((g.node_checksums ? volume_flag_node_checksums : 0) |
                      (g.external_journal ? volume_flag_external_journal : 0));
        copy_bytes(sb->uuid, g.uuid, 16);
        sb->block_count.set(n);
        sb->journal_start.set(g.external_journal ? 0 : first + 1);
        sb->journal_blocks.set(static_cast<std::uint32_t>(jb));
        sb->bitmap_blocks.set(static_cast<std::uint32_t>(bm));
        sb->bitmap_start.set(first + 1 + jb);
        sb->data_start.set(first + data_off);
        sb->checksum_seed.set(crc32c_raw(~0u, g.uuid, 16));
        sb->tree_slots.set(volume_max_trees);
        sb->first_block.set(first);
        sb->checksum.set(volume_sb_checksum(scratch));
        JBTREE_TRY(dev.flush()); // journal and bitmap before the superblock that names them
        JBTREE_TRY(dev.write_blocks(first, 1, scratch));
        return dev.flush();
    }

    // Open the volume: check the superblock, replay an internal journal,
    // load the bitmap. `rinfo`, if given, receives what recovery did. An
    // external journal (loc.external_log) is only opened: it must have been
    // replayed by its owner (errc::busy if it holds transactions).
    [[nodiscard]] errc open(const jbd2::journal_options& opt, volume_problem* why = nullptr,
                            jbd2::recovery_info* rinfo = nullptr, const volume_location& loc = {}) noexcept {
        if (why) *why = volume_problem::none;
        volume_problem p = volume_problem::none;
        unsigned char* blk = mem_.journal.staging; // free until the journal opens
        first_ = loc.first_block;
        JBTREE_TRY(read_superblock(blk, p, why));
        const bool external = flags_ & volume_flag_external_journal;
        if (external != (loc.external_log != nullptr)) {
            if (why) *why = volume_problem::journal;
            return errc::invalid;
        }
        if (external) {
            JBTREE_TRY(j_.set_log(*dev_, loc.external_log, loc.external_log_extents));
        } else {
            JBTREE_TRY(j_.set_log(*dev_, &ext_, 1));
            jbd2::recovery_info ri;
            jbd2::log_area<Dev> log(*dev_, &ext_, 1);
            const jbd2::recovery_memory rm{mem_.journal.staging, mem_.journal.staging + bs_, mem_.revokes,
                                           mem_.revoke_capacity};
            const errc re = jbd2::recover(log, rm, ri);
            if (rinfo) *rinfo = ri;
            if (re != errc::ok) {
                if (why) *why = ri.refused != jbd2::sb_problem::none ? volume_problem::journal : volume_problem::none;
                return re;
            }
            // Replay may have rewritten the superblock: read it again.
            JBTREE_TRY(read_superblock(blk, p, why));
        }
        jbd2::sb_problem jp = jbd2::sb_problem::none;
        // Tree nodes changed in a transaction are sealed once, as it
        // commits (the journal's frozen trigger), not after every change.
        jbd2::journal_options o = opt;
        o.frozen = flags_ & volume_flag_node_checksums ? &seal_trigger : nullptr;
        o.frozen_ctx = this;
        if (const errc e = j_.open(o, &jp); e != errc::ok) {
            if (why) *why = volume_problem::journal;
            return e;
        }
        if (mem_.bitmap_blocks < bitmap_blocks_ || !mem_.bitmap || !mem_.bitmap_dirty) return errc::invalid;
        JBTREE_TRY(dev_->read_blocks(bitmap_start_, bitmap_blocks_, mem_.bitmap));
        for (std::uint32_t i = 0; i < bitmap_blocks_; ++i) mem_.bitmap_dirty[i] = 0;
        free_blocks_ = 0;
        for (std::uint64_t b = data_start_; b < end_; ++b) free_blocks_ += !bit(b);
        cursor_ = data_start_;
        // Room in every transaction for the bitmap and the superblock.
        meta_reserve_ = bitmap_blocks_ + 1;
        if (meta_reserve_ * 2 > j_.max_transaction_blocks()) return errc::no_space;
        open_ = true;
        return errc::ok;
    }

    [[nodiscard]] storage& store() noexcept { return st_; }
    [[nodiscard]] journal_type& journal() noexcept { return j_; }

    // Start a handle (through the volume, never the journal directly, so
    // the running transaction keeps room for the allocator's blocks).
    [[nodiscard]] result<handle> start(std::uint32_t credits) noexcept {
        if (!open_) return errc::invalid;
        if (credits == 0 || credits > j_.max_transaction_blocks() - meta_reserve_) return errc::range;
        if (j_.reserved_credits() + credits + meta_reserve_ > j_.max_transaction_blocks()) JBTREE_TRY(commit());
        return j_.start(credits);
    }
    [[nodiscard]] errc stop(handle& h) noexcept { return j_.stop(h); }

    // The largest credits one handle can ask for.
    [[nodiscard]] std::uint32_t max_handle_credits() const noexcept {
        return j_.max_transaction_blocks() - meta_reserve_;
    }

    // Anchors: the trees' owner records each tree's anchor after changing
    // it; commit() stores them with the transaction.
    [[nodiscard]] errc set_anchor(std::uint32_t slot, const tree_anchor& a) noexcept {
        if (slot >= volume_max_trees) return errc::range;
        anchors_[slot] = a;
        used_[slot] = true;
        anchors_dirty_ = true;
        return errc::ok;
    }
    [[nodiscard]] result<tree_anchor> anchor(std::uint32_t slot) const noexcept {
        if (slot >= volume_max_trees) return errc::range;
        if (!used_[slot]) return errc::not_found;
        return anchors_[slot];
    }

    // Put the bitmap and anchors into the running transaction and commit it
    // durably. errc::busy while handles are open.
    [[nodiscard]] errc commit() noexcept {
        if (!open_) return errc::invalid;
        if (j_.open_handles()) return errc::busy;
        std::uint32_t dirty = anchors_dirty_ ? 1 : 0;
        for (std::uint32_t i = 0; i < bitmap_blocks_; ++i) dirty += mem_.bitmap_dirty[i];
        if (dirty) {
            auto h = j_.start(dirty);
            if (!h) return h.error();
            errc e = errc::ok;
            for (std::uint32_t i = 0; i < bitmap_blocks_ && e == errc::ok; ++i) {
                if (!mem_.bitmap_dirty[i]) continue;
                e = put_block(*h, bitmap_start_ + i, mem_.bitmap + std::size_t{i} * bs_, bs_);
                mem_.bitmap_dirty[i] = 0;
            }
            if (e == errc::ok && anchors_dirty_) e = put_superblock(*h);
            anchors_dirty_ = false;
            const errc s = j_.stop(*h);
            JBTREE_TRY(e);
            JBTREE_TRY(s);
        }
        return j_.commit();
    }

    // Commit, write everything home, and mark the journal clean.
    [[nodiscard]] errc close() noexcept {
        JBTREE_TRY(commit());
        open_ = false;
        return j_.close();
    }

    // Owner data: 64 bytes in the superblock that jbtree stores and never
    // interprets (an embedder's stamp, e.g. what the trees were built
    // from). set_owner_data() is committed with the anchors.
    [[nodiscard]] const unsigned char* owner_data() const noexcept { return owner_data_; }
    void set_owner_data(const unsigned char* d) noexcept {
        copy_bytes(owner_data_, d, volume_owner_data_size);
        anchors_dirty_ = true;
    }

    [[nodiscard]] std::uint64_t free_blocks() const noexcept { return free_blocks_; }
    // Device block numbers: the superblock, the first node block, the end
    // (exclusive); block_count() is the volume's length.
    [[nodiscard]] std::uint64_t first_block() const noexcept { return first_; }
    [[nodiscard]] std::uint64_t data_start() const noexcept { return data_start_; }
    [[nodiscard]] std::uint64_t end_block() const noexcept { return end_; }
    [[nodiscard]] std::uint64_t block_count() const noexcept { return end_ - first_; }
    [[nodiscard]] bool external_journal() const noexcept { return flags_ & volume_flag_external_journal; }
    // Mark [first, first + count) in use for tree nodes written outside the
    // journal: a bulk build (e.g. into a memory_storage numbered from
    // data_start()) written straight to blocks that are free in the committed
    // bitmap, so nothing reachable changes until the commit that names them
    // (ordered writes: flush the device before commit()). The blocks must not
    // have been read through the journal since open(). errc::invalid if one
    // is outside the data area or already in use; nothing changes then.
    [[nodiscard]] errc claim(std::uint64_t first, std::uint64_t count) noexcept {
        if (!open_) return errc::invalid;
        if (first < data_start_ || first > end_ || count > end_ - first) return errc::invalid;
        for (std::uint64_t b = first; b < first + count; ++b)
            if (bit(b)) return errc::invalid;
        for (std::uint64_t b = first; b < first + count; ++b) set_bit(b, true);
        free_blocks_ -= count;
        if (first + count > cursor_) cursor_ = first + count;
        return errc::ok;
    }
    // Is blkno allocated (in the live, in-memory bitmap)?
    [[nodiscard]] bool allocated(std::uint64_t blkno) const noexcept {
        return blkno >= first_ && blkno < end_ && bit(blkno);
    }

private:
    // The journal's frozen trigger: seal a tree node before it is logged.
    static void seal_trigger(void* ctx, unsigned char* block) noexcept {
        const volume* v = static_cast<const volume*>(ctx);
        seal_node(block, v->bs_, v->seed_);
    }
    errc read_superblock(unsigned char* blk, volume_problem& p, volume_problem* why) noexcept {
        auto refuse = [&](volume_problem q, errc e) noexcept {
            p = q;
            if (why) *why = q;
            return e;
        };
        const std::uint32_t dbs = dev_->block_size();
        if (!valid_block_size(dbs) || dbs < 1024) return refuse(volume_problem::bad_geometry, errc::invalid);
        const std::uint64_t first = first_, dev_blocks = dev_->block_count();
        if (first >= dev_blocks) return refuse(volume_problem::bad_geometry, errc::range);
        JBTREE_TRY(dev_->read_blocks(first, 1, blk));
        const volume_superblock* sb = reinterpret_cast<const volume_superblock*>(blk);
        if (sb->magic.get() != volume_magic) return refuse(volume_problem::bad_magic, errc::corrupted);
        if (sb->checksum.get() != volume_sb_checksum(blk)) return refuse(volume_problem::bad_checksum, errc::bad_checksum);
        const std::uint64_t n = sb->block_count.get(), js = sb->journal_start.get(), bms = sb->bitmap_start.get(),
                            ds = sb->data_start.get();
        const std::uint32_t jb = sb->journal_blocks.get(), bm = sb->bitmap_blocks.get(), fl = sb->flags.get();
        const bool external = fl & volume_flag_external_journal;
        const std::uint64_t bits = std::uint64_t{dbs} * 8;
        // A whole-device volume must span the device (a shorter device was
        // truncated); one inside a larger device must fit in it.
        const bool size_ok = first == 0 ? n == dev_blocks : (n <= dev_blocks - first);
        const bool journal_ok = external ? (js == 0 && jb == 0 && bms == first + 1)
                                         : (js == first + 1 && jb >= 64 && bms == js + jb);
        if (sb->version.get() != volume_version || sb->block_size.get() != dbs || !size_ok ||
            sb->first_block.get() != first || sb->tree_slots.get() != volume_max_trees || !journal_ok ||
            bm != (n + bits - 1) / bits || ds != bms + bm || ds >= first + n)
            return refuse(volume_problem::bad_geometry, errc::corrupted);
        for (std::uint32_t i = 0; i < volume_max_trees; ++i) {
            const volume_anchor_disk& a = sb->anchors[i];
            const std::uint64_t root = a.root.get();
            const bool in_use = a.in_use.get() != 0;
            if (in_use && (a.height.get() > 16 || (root != 0) != (a.height.get() != 0) ||
                           (root != 0 && (root < ds || root >= first + n))))
                return refuse(volume_problem::bad_anchor, errc::corrupted);
            used_[i] = in_use;
            anchors_[i] = tree_anchor{root, a.records.get(), a.tree_id.get(), a.height.get()};
        }
        bs_ = dbs;
        flags_ = fl;
        seed_ = sb->checksum_seed.get();
        end_ = first + n;
        copy_bytes(owner_data_, sb->owner_data, volume_owner_data_size);
        bitmap_start_ = bms;
        bitmap_blocks_ = bm;
        data_start_ = ds;
        generation_ = sb->generation.get();
        ext_ = jbd2::log_extent{js, jb};
        anchors_dirty_ = false;
        return errc::ok;
    }

    errc put_block(handle& h, std::uint64_t blkno, const unsigned char* src, std::uint32_t n) noexcept {
        auto b = j_.read(blkno);
        if (!b) return b.error();
        JBTREE_TRY(j_.get_write_access(h, *b));
        copy_bytes(b->data(), src, n);
        return j_.dirty_metadata(h, *b);
    }
    errc put_superblock(handle& h) noexcept {
        auto b = j_.read(first_);
        if (!b) return b.error();
        JBTREE_TRY(j_.get_write_access(h, *b));
        volume_superblock* sb = reinterpret_cast<volume_superblock*>(b->data());
        copy_bytes(sb->owner_data, owner_data_, volume_owner_data_size);
        for (std::uint32_t i = 0; i < volume_max_trees; ++i) {
            volume_anchor_disk& d = sb->anchors[i];
            d.root.set(anchors_[i].root);
            d.records.set(anchors_[i].records);
            d.tree_id.set(anchors_[i].tree_id);
            d.height.set(anchors_[i].height);
            d.in_use.set(used_[i] ? 1 : 0);
            d.reserved.set(0);
        }
        sb->generation.set(++generation_);
        sb->checksum.set(volume_sb_checksum(b->data()));
        return j_.dirty_metadata(h, *b);
    }

    // Bit i of the bitmap is device block first_ + i.
    bool bit(std::uint64_t blk) const noexcept {
        const std::uint64_t b = blk - first_;
        return mem_.bitmap[b / 8] & (1u << (b % 8));
    }
    void set_bit(std::uint64_t blk, bool on) noexcept {
        const std::uint64_t b = blk - first_;
        unsigned char& byte = mem_.bitmap[b / 8];
        byte = static_cast<unsigned char>(on ? byte | (1u << (b % 8)) : byte & ~(1u << (b % 8)));
        mem_.bitmap_dirty[b / (std::uint64_t{bs_} * 8)] = 1;
    }

    result<buffer> allocate() noexcept {
        if (!open_) return errc::invalid;
        if (free_blocks_ == 0) return errc::no_space;
        // Next fit from the last allocation, a byte at a time over full bytes.
        std::uint64_t b = cursor_;
        for (std::uint64_t scanned = 0; scanned <= end_; ++scanned) {
            if (b >= end_) b = data_start_;
            if (((b - first_) % 8) == 0 && mem_.bitmap[(b - first_) / 8] == 0xFF && b + 8 <= end_) {
                b += 8;
                scanned += 7;
                continue;
            }
            if (!bit(b)) break;
            ++b;
        }
        if (b >= end_ || bit(b)) return errc::no_space; // free count was wrong: a corrupted bitmap
        auto r = j_.read_new(b);
        if (!r) return r.error();
        set_bit(b, true);
        --free_blocks_;
        cursor_ = b + 1;
        return r;
    }
    errc free_block(std::uint64_t b) noexcept {
        if (!open_) return errc::invalid;
        if (b < data_start_ || b >= end_ || !bit(b)) return errc::invalid; // not a node, or freed twice
        set_bit(b, false);
        ++free_blocks_;
        return errc::ok;
    }

    Dev* dev_;
    volume_memory mem_;
    jbd2::log_extent ext_;
    journal_type j_;
    storage st_{};
    tree_anchor anchors_[volume_max_trees]{};
    bool used_[volume_max_trees]{};
    unsigned char owner_data_[volume_owner_data_size]{};
    bool anchors_dirty_ = false;
    bool open_ = false;
    std::uint32_t bs_ = 0, flags_ = 0, seed_ = 0, bitmap_blocks_ = 0, meta_reserve_ = 0;
    std::uint64_t first_ = 0, end_ = 0, bitmap_start_ = 0, data_start_ = 0, generation_ = 0, free_blocks_ = 0,
                  cursor_ = 0;
};

} // namespace jbtree
