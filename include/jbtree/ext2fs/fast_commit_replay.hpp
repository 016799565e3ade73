// SPDX-License-Identifier: MIT
// jbtree: e2fsck's fast-commit replay (e2fsprogs 1.47), over libext2fs: the
// jbd2::FastCommitReplayer that jbd2::recover() hands the valid tags of a
// journal's fast-commit area to, after the block replay.
//
//   ext2fs_adapter::fast_commit_replay fcr(fs);   // fs: opened before the block replay
//   jbd2::recover(log, mem, info, fcr);
//
// The result is meant to be e2fsck -E journal_only's image, byte for byte,
// so the steps are e2fsck's, in its order, through the same libext2fs calls
// (the allocator, the extent and directory code then decide the same):
//  - begin: bitmaps read (checksum errors ignored from then on), the ext4
//    superblock written with s_state | ERROR_FS | FC_REPLAY (a crash during
//    the replay leaves a filesystem marked for a check); superblock and group
//    descriptors are those of `fs` as it was opened, before the block replay;
//  - INODE: the logged inode over the on-disk one, but i_block (the extent
//    root) kept, or replaced by an empty extent root if it is not one, or by
//    the logged i_block for inline data; i_blocks recounted; the inode
//    bitmap bit follows i_links_count;
//  - ADD_RANGE / DEL_RANGE: the inode's extents are read into a list (the
//    tree's index blocks freed), the range added (the blocks it covers in
//    the list first released) or punched out, the list sorted and merged,
//    every block in it marked in the block bitmap; the list is written back
//    as a new extent tree (extent inserts) when another inode's tag comes, or
//    at the TAIL, or before a CREAT/LINK;
//  - CREAT / LINK: any entry of that name removed, then the entry linked with
//    the file type of the inode's mode (none for a symlink: e2fsck skips it);
//    UNLINK: the entry removed;
//  - finish: free counts recomputed from the bitmaps (groups and superblock),
//    bitmaps written, group descriptor checksums set, s_state restored, all
//    flushed.
// An error of any step ends the replay there (recover() reports it; the
// caller marks the filesystem not clean), as in e2fsck.
//
// Needs libext2fs (pkg-config ext2fs); not part of the freestanding core.
// Memory: the extent list and a name buffer, from libext2fs's allocator.
#pragma once

#include "jbtree/ext2fs/libext2fs.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"
#include "jbtree/journal/jbd2_fast_commit.hpp"

namespace jbtree::ext2fs_adapter {

class fast_commit_replay {
public:
    explicit fast_commit_replay(ext2_filsys fs) noexcept : fs_(fs) {}
    fast_commit_replay(const fast_commit_replay&) = delete;
    fast_commit_replay& operator=(const fast_commit_replay&) = delete;
    ~fast_commit_replay() {
        if (list_.extents) ext2fs_free_mem(&list_.extents);
    }

    // e2fsck replays fast commits only on a filesystem with the feature.
    [[nodiscard]] bool enabled() noexcept {
        return fs_->super->s_feature_compat & jbd2::fc::ext4_compat_fast_commit;
    }

    // Before anything is written: can e2fsck's result be reproduced? Every
    // byte e2fsck's handler of this tag reads must lie in the block (the
    // scan checked the tag's own length). And the filesystem must have
    // group descriptor checksums (metadata_csum or uninit_bg): without them
    // e2fsck's final free-count pass (ext2fs_calculate_summary_stats) still
    // marks groups uninitialized, which e2fsck's superblock check then
    // repairs, going on to a full check that jbtree does not do. why() says
    // which.
    [[nodiscard]] errc vet(const jbd2::fc::tag_view& t) noexcept {
        using jbd2::fc::tag;
        if (!ext2fs_has_group_desc_csum(fs_)) return refuse(no_group_csum);
        switch (static_cast<tag>(t.type)) {
        case tag::del_range: return t.room >= jbd2::fc::del_range_bytes ? errc::ok : refuse(past_block);
        case tag::creat:
        case tag::link:
        case tag::unlink: return t.length >= jbd2::fc::dentry_bytes ? errc::ok : refuse(short_dentry);
        case tag::inode: {
            const std::uint32_t isize = EXT2_INODE_SIZE(fs_->super);
            if (isize > max_inode_bytes) return refuse(big_inode);
            if (isize <= EXT2_GOOD_OLD_INODE_SIZE)
                return t.room >= 4 + EXT2_GOOD_OLD_INODE_SIZE ? errc::ok : refuse(past_block);
            if (t.room < 4 + EXT2_GOOD_OLD_INODE_SIZE + 2) return refuse(past_block);
            const std::uint32_t len = inode_length(t.value + 4);
            return len == 0 || t.room >= 4 + len ? errc::ok : refuse(past_block); // 0: e2fsck stops on it
        }
        default: return errc::ok;
        }
    }

    // Why vet() refused (nullptr: it did not).
    [[nodiscard]] const char* why() const noexcept { return why_; }

    [[nodiscard]] errc begin() noexcept {
        // As e2fsck's filesystem: checksum errors ignored from here on, the
        // primary superblock only.
        fs_->flags |= EXT2_FLAG_IGNORE_CSUM_ERRORS | EXT2_FLAG_MASTER_SB_ONLY;
        if (const errcode_t e = ext2fs_read_bitmaps(fs_)) return fail(e);
        saved_state_ = fs_->super->s_state;
        fs_->super->s_state |= EXT2_ERROR_FS | jbd2::fc::ext4_state_fc_replay;
        ext2fs_mark_super_dirty(fs_);
        (void)ext2fs_flush(fs_); // e2fsck does not look at the result
        return errc::ok;
    }

    [[nodiscard]] errc apply(const jbd2::fc::tag_view& t) noexcept {
        using jbd2::fc::tag;
        switch (static_cast<tag>(t.type)) {
        case tag::creat:
        case tag::link: return link(t);
        case tag::unlink: return unlink(t);
        case tag::add_range: return add_range(t.value);
        case tag::del_range: return del_range(t.value);
        case tag::inode: return inode(t.value);
        case tag::tail: flush_extents(0); return errc::ok;
        case tag::pad:
        case tag::head: return errc::ok;
        }
        return errc::corrupted; // not a tag the scan counts
    }

    [[nodiscard]] errc finish() noexcept {
        // e2fsck ignores every result here.
        (void)ext2fs_calculate_summary_stats(fs_, 0);
        (void)ext2fs_write_block_bitmap(fs_);
        (void)ext2fs_write_inode_bitmap(fs_);
        ext2fs_mark_super_dirty(fs_);
        ext2fs_set_gdt_csum(fs_);
        fs_->super->s_state = saved_state_;
        (void)ext2fs_flush(fs_);
        return errc::ok;
    }

    // The libext2fs error that ended the replay (0: none).
    [[nodiscard]] errcode_t last_error() const noexcept { return last_error_; }

private:
    // The extents of one inode being changed (e2fsck's extent list).
    struct extent_list {
        ext2_ino_t ino = 0;                 // 0: no list held
        ext2fs_extent* extents = nullptr;
        std::uint32_t count = 0;
        std::uint32_t size = 0;             // slots allocated
        std::uint64_t blocks_freed = 0;     // index blocks released when it was read
    };

    static constexpr const char* no_group_csum =
        "fast commits on a filesystem without group descriptor checksums: e2fsck's replay marks groups "
        "uninitialized and then repairs that with a full check";
    static constexpr const char* past_block = "a fast-commit tag's value runs past its block (e2fsck would read outside it)";
    static constexpr const char* short_dentry = "a fast-commit dentry tag shorter than its fixed part";
    static constexpr const char* big_inode = "inodes larger than 1024 bytes";

    errc refuse(const char* why) noexcept {
        why_ = why;
        return errc::not_supported;
    }

    errc fail(errcode_t e) noexcept {
        last_error_ = e;
        return errc::corrupted;
    }

    // 128 + i_extra_isize of a logged inode, 0 if the extra size is out of
    // range (e2fsck stops the replay on it).
    [[nodiscard]] std::uint32_t inode_length(const unsigned char* raw) const noexcept {
        const std::uint32_t isize = EXT2_INODE_SIZE(fs_->super);
        if (isize <= EXT2_GOOD_OLD_INODE_SIZE) return EXT2_GOOD_OLD_INODE_SIZE;
        const std::uint32_t extra = load_le<std::uint16_t>(raw + EXT2_GOOD_OLD_INODE_SIZE);
        if (extra < 4 || extra > isize - EXT2_GOOD_OLD_INODE_SIZE) return 0;
        return EXT2_GOOD_OLD_INODE_SIZE + extra;
    }

    errc room_for(std::uint32_t n) noexcept {
        if (n <= list_.size) return errc::ok;
        std::uint32_t want = list_.size ? list_.size : 341;
        while (want < n) want += 341;
        if (const errcode_t e = ext2fs_resize_mem(list_.size * sizeof(ext2fs_extent), want * sizeof(ext2fs_extent),
                                                  &list_.extents))
            return fail(e);
        list_.size = want;
        return errc::ok;
    }

    // Open a slot at i (the entries from i on move up one).
    errc insert_slot(std::uint32_t i) noexcept {
        if (const errc e = room_for(list_.count + 1); e != errc::ok) return e;
        std::memmove(list_.extents + i + 1, list_.extents + i, sizeof(ext2fs_extent) * (list_.count - i));
        ++list_.count;
        return errc::ok;
    }

    static blk64_t lend(const ext2fs_extent& x) noexcept { return x.e_lblk + x.e_len - 1; }
    static blk64_t pend(const ext2fs_extent& x) noexcept { return x.e_pblk + x.e_len - 1; }

    // e2fsck's two orders (qsort's result depends on them exactly, the first
    // being no strict order: the same comparisons give the same array).
    static int by_lblk(const void* a, const void* b) noexcept {
        const auto* x = static_cast<const ext2fs_extent*>(a);
        const auto* y = static_cast<const ext2fs_extent*>(b);
        if (x->e_lblk < y->e_lblk) return -1;
        if (x->e_lblk > y->e_lblk) return 1;
        return static_cast<int>(x->e_len - y->e_len);
    }
    static int by_len(const void* a, const void* b) noexcept {
        const auto* x = static_cast<const ext2fs_extent*>(a);
        const auto* y = static_cast<const ext2fs_extent*>(b);
        if (x->e_len < y->e_len) return 1;
        if (x->e_lblk > y->e_lblk) return -1;
        return 0;
    }

    // Drop empty extents, sort by logical block, merge neighbours that are
    // contiguous logically and physically with the same init state.
    void sort_and_merge() noexcept {
        ext2fs_extent* x = list_.extents;
        if (list_.count < 2) return;
        std::qsort(x, list_.count, sizeof *x, by_len);
        for (std::uint32_t i = 0; i < list_.count; ++i) {
            if (x[i].e_len == 0) {
                list_.count = i;
                break;
            }
        }
        if (list_.count == 0) return;
        std::qsort(x, list_.count, sizeof *x, by_lblk);
        for (std::uint32_t i = 0; i + 1 < list_.count;) {
            if (lend(x[i]) + 1 != x[i + 1].e_lblk || pend(x[i]) + 1 != x[i + 1].e_pblk ||
                (x[i].e_flags & EXT2_EXTENT_FLAGS_UNINIT) != (x[i + 1].e_flags & EXT2_EXTENT_FLAGS_UNINIT)) {
                ++i;
                continue;
            }
            x[i].e_len += x[i + 1].e_len;
            for (std::uint32_t j = i + 1; j + 1 < list_.count; ++j) x[j] = x[j + 1];
            --list_.count;
        }
    }

    // Punch the range of `ex` out of the list (its blocks released), add
    // `ex` unless deleting, then mark every listed block in use.
    errc modify(const ext2fs_extent& ex, bool del) noexcept {
        const ext2fs_extent add = ex;
        for (std::uint32_t i = 0; i < list_.count; ++i) {
            ext2fs_extent* x = list_.extents;
            if (lend(x[i]) < add.e_lblk) continue;
            if (x[i].e_lblk > lend(add)) break; // past the range
            ext2fs_unmark_block_bitmap_range2(fs_->block_map, x[i].e_pblk, x[i].e_len);
            if (x[i].e_lblk < add.e_lblk && lend(x[i]) > lend(add)) { // the range splits it
                if (const errc e = insert_slot(i + 1); e != errc::ok) return e;
                x = list_.extents;
                x[i + 1] = x[i];
                const int off = static_cast<int>(lend(add) + 1 - x[i].e_lblk);
                x[i + 1].e_lblk += static_cast<blk64_t>(off);
                x[i + 1].e_pblk += static_cast<blk64_t>(off);
                x[i + 1].e_len -= static_cast<__u32>(off);
                x[i].e_len = static_cast<__u32>(add.e_lblk - x[i].e_lblk);
                break;
            }
            if (add.e_lblk <= x[i].e_lblk && lend(x[i]) <= lend(add)) { // inside the range
                x[i].e_len = 0;
                continue;
            }
            if (lend(x[i]) > lend(add)) { // its head in the range
                const int off = static_cast<int>(lend(add) + 1 - x[i].e_lblk);
                x[i].e_lblk += static_cast<blk64_t>(off);
                x[i].e_pblk += static_cast<blk64_t>(off);
                x[i].e_len -= static_cast<__u32>(off);
                break;
            }
            if (lend(add) >= lend(x[i])) // its tail in the range
                x[i].e_len = add.e_lblk > x[i].e_lblk ? static_cast<__u32>(add.e_lblk - x[i].e_lblk) : 0;
        }
        if (add.e_len && !del) {
            if (const errc e = insert_slot(list_.count); e != errc::ok) return e;
            list_.extents[list_.count - 1] = add;
        }
        sort_and_merge();
        for (std::uint32_t i = 0; i < list_.count; ++i)
            ext2fs_mark_block_bitmap_range2(fs_->block_map, list_.extents[i].e_pblk, list_.extents[i].e_len);
        ext2fs_mark_bb_dirty(fs_);
        return errc::ok;
    }

    // The inode's leaf extents into the list (contiguous ones merged), its
    // index blocks released.
    errc read_extents(ext2_ino_t ino) noexcept {
        if (list_.ino == ino) return errc::ok;
        list_.ino = ino;
        list_.count = 0;
        list_.blocks_freed = 0;
        if (const errc e = room_for(341); e != errc::ok) return e;
        ext2_inode inode{};
        if (const errcode_t e = ext2fs_read_inode(fs_, ino, &inode)) return fail(e);
        ext2_extent_handle_t h = nullptr;
        if (const errcode_t e = ext2fs_extent_open(fs_, ino, &h)) return fail(e);
        ext2fs_extent x{};
        errcode_t r = ext2fs_extent_get(h, EXT2_EXTENT_ROOT, &x);
        while (r == 0) {
            if (!(x.e_flags & EXT2_EXTENT_FLAGS_SECOND_VISIT)) {
                if (!(x.e_flags & EXT2_EXTENT_FLAGS_LEAF)) {
                    ++list_.blocks_freed;
                    ext2fs_block_alloc_stats2(fs_, x.e_pblk, -1);
                } else if (!merge_into_last(x)) {
                    if (const errc e = room_for(list_.count + 1); e != errc::ok) {
                        ext2fs_extent_free(h);
                        return e;
                    }
                    list_.extents[list_.count++] = x;
                }
            }
            r = ext2fs_extent_get(h, EXT2_EXTENT_NEXT, &x);
        }
        ext2fs_extent_free(h);
        if (r != EXT2_ET_EXTENT_NO_NEXT) {
            list_.count = 0;
            return fail(r);
        }
        return errc::ok;
    }

    bool merge_into_last(const ext2fs_extent& x) noexcept {
        if (list_.count == 0) return false;
        ext2fs_extent& last = list_.extents[list_.count - 1];
        const std::uint64_t len = std::uint64_t{last.e_len} + x.e_len;
        if (last.e_pblk + last.e_len != x.e_pblk || last.e_lblk + last.e_len != x.e_lblk ||
            (last.e_flags & EXT2_EXTENT_FLAGS_UNINIT) != (x.e_flags & EXT2_EXTENT_FLAGS_UNINIT) || len >= (1ull << 32))
            return false;
        last.e_len += x.e_len;
        return true;
    }

    // Write the held list back as the inode's extent tree, unless the next
    // tag is for the same inode; the list is dropped either way. Errors are
    // not reported (as e2fsck).
    void flush_extents(ext2_ino_t next) noexcept {
        if (list_.ino == next || list_.ino == 0) return;
        (void)rewrite_tree();
        list_.ino = 0;
        list_.count = 0;
        list_.blocks_freed = 0;
    }

    errcode_t rewrite_tree() noexcept {
        ext2_inode_large in{};
        auto* small = reinterpret_cast<ext2_inode*>(&in);
        if (errcode_t e = ext2fs_read_inode_full(fs_, list_.ino, small, sizeof in)) return e;
        if (in.i_flags & EXT4_INLINE_DATA_FL) return 0;
        in.i_flags &= ~static_cast<__u32>(EXT4_EXTENTS_FL);
        std::memset(in.i_block, 0, sizeof in.i_block);
        if (errcode_t e = ext2fs_iblk_sub_blocks(fs_, small, list_.blocks_freed)) return e;
        ext2_extent_handle_t h = nullptr;
        if (errcode_t e = ext2fs_extent_open2(fs_, list_.ino, small, &h)) return e;
        errcode_t e = 0;
        for (std::uint32_t i = 0; i < list_.count && !e; ++i) {
            ext2fs_extent& src = list_.extents[i];
            while (src.e_len != 0 && !e) { // an extent too long for one entry goes in pieces
                ext2fs_extent x = src;
                x.e_flags &= EXT2_EXTENT_FLAGS_UNINIT;
                const __u32 max = (x.e_flags & EXT2_EXTENT_FLAGS_UNINIT) ? EXT_UNINIT_MAX_LEN : EXT_INIT_MAX_LEN;
                if (x.e_len > max) {
                    x.e_len = max;
                    src.e_pblk += max;
                    src.e_lblk += max;
                    src.e_len -= max;
                } else {
                    src.e_len = 0;
                }
                e = ext2fs_extent_insert(h, EXT2_EXTENT_INSERT_AFTER, &x);
                if (!e) e = ext2fs_extent_fix_parents(h);
            }
        }
        if (!e) e = ext2fs_write_inode(fs_, list_.ino, small);
        ext2fs_extent_free(h);
        if (e) return e;
        blk64_t blocks = 0;
        if ((e = ext2fs_count_blocks(fs_, list_.ino, small, &blocks))) return e;
        if ((e = ext2fs_iblk_set(fs_, small, blocks))) return e;
        return ext2fs_write_inode_full(fs_, list_.ino, small, sizeof in);
    }

    errc add_range(const unsigned char* v) noexcept {
        const ext2_ino_t ino = load_le<std::uint32_t>(v);
        flush_extents(ino);
        if (const errc e = read_extents(ino); e != errc::ok) return e;
        unsigned char raw[12];
        std::memcpy(raw, v + 4, sizeof raw);
        ext2fs_extent x{};
        if (const errcode_t e = ext2fs_decode_extent(&x, raw, sizeof raw)) return fail(e);
        return modify(x, false);
    }

    errc del_range(const unsigned char* v) noexcept {
        const ext2_ino_t ino = load_le<std::uint32_t>(v);
        flush_extents(ino);
        ext2fs_extent x{};
        x.e_lblk = load_le<std::uint32_t>(v + 4);
        x.e_len = load_le<std::uint32_t>(v + 8);
        if (const errc e = read_extents(ino); e != errc::ok) return e;
        return modify(x, true);
    }

    // The name of a dentry tag as a C string (cut at a NUL, as libext2fs
    // reads it).
    errc name_of(const jbd2::fc::tag_view& t, char*& out) noexcept {
        const std::uint32_t n = t.length - jbd2::fc::dentry_bytes;
        if (const errcode_t e = ext2fs_get_mem(n + 1, &out)) return fail(e);
        std::memcpy(out, t.value + jbd2::fc::dentry_bytes, n);
        out[n] = 0;
        return errc::ok;
    }

    errc unlink(const jbd2::fc::tag_view& t) noexcept {
        const ext2_ino_t parent = load_le<std::uint32_t>(t.value), ino = load_le<std::uint32_t>(t.value + 4);
        char* name = nullptr;
        if (const errc e = name_of(t, name); e != errc::ok) return e;
        flush_extents(ino);
        const errcode_t e = ext2fs_unlink(fs_, parent, name, ino, 0);
        ext2fs_free_mem(&name);
        return e ? fail(e) : errc::ok;
    }

    errc link(const jbd2::fc::tag_view& t) noexcept {
        const ext2_ino_t parent = load_le<std::uint32_t>(t.value), ino = load_le<std::uint32_t>(t.value + 4);
        char* name = nullptr;
        if (const errc e = name_of(t, name); e != errc::ok) return e;
        flush_extents(0);
        errc result = errc::ok;
        ext2_inode in{};
        if (const errcode_t e = ext2fs_read_inode(fs_, ino, &in)) {
            result = fail(e);
        } else {
            int type = -1;
            const unsigned mode = in.i_mode;
            if (LINUX_S_ISREG(mode)) type = EXT2_FT_REG_FILE;
            else if (LINUX_S_ISDIR(mode)) type = EXT2_FT_DIR;
            else if (LINUX_S_ISCHR(mode)) type = EXT2_FT_CHRDEV;
            else if (LINUX_S_ISBLK(mode)) type = EXT2_FT_BLKDEV;
            else if (LINUX_S_ISLNK(mode)) type = 0; // e2fsck links no symlink (and goes on)
            else if (LINUX_S_ISFIFO(mode)) type = EXT2_FT_FIFO;
            else if (LINUX_S_ISSOCK(mode)) type = EXT2_FT_SOCK;
            if (type < 0) {
                result = errc::invalid;
            } else if (type > 0) {
                (void)ext2fs_unlink(fs_, parent, name, ino, EXT2FS_UNLINK_FORCE); // any old entry of that name
                if (const errcode_t le = ext2fs_link(fs_, parent, name, ino, type)) result = fail(le);
            }
        }
        ext2fs_free_mem(&name);
        return result;
    }

    errc inode(const unsigned char* v) noexcept {
        const ext2_ino_t ino = load_le<std::uint32_t>(v);
        const unsigned char* raw = v + 4;
        const std::uint32_t len = inode_length(raw);
        if (len == 0) return errc::corrupted;
        if (len > max_inode_bytes) return errc::not_supported; // vetted out before
        alignas(8) unsigned char buf[max_inode_bytes] = {};
        auto& in = *reinterpret_cast<ext2_inode_large*>(buf);
        flush_extents(ino);
        auto* small = reinterpret_cast<ext2_inode*>(&in);
        if (const errcode_t e = ext2fs_read_inode_full(fs_, ino, small, static_cast<int>(len))) return fail(e);
        // The logged inode over the one read, but for i_block (40..99).
        unsigned char* bytes = buf;
        constexpr std::size_t block_at = offsetof(ext2_inode_large, i_block);
        constexpr std::size_t gen_at = offsetof(ext2_inode_large, i_generation);
        std::memcpy(bytes, raw, block_at);
        std::memcpy(bytes + gen_at, raw + gen_at, len - gen_at);
        if (in.i_flags & EXT4_EXTENTS_FL) {
            unsigned char* eh = reinterpret_cast<unsigned char*>(in.i_block);
            if (load_le<std::uint16_t>(eh) != EXT3_EXT_MAGIC) { // an empty extent root
                std::memset(eh, 0, 12);
                store_le<std::uint16_t>(eh, EXT3_EXT_MAGIC);
                store_le<std::uint16_t>(eh + 4, (sizeof in.i_block - 12) / 12);
            }
        } else if (in.i_flags & EXT4_INLINE_DATA_FL) {
            std::memcpy(in.i_block, raw + block_at, sizeof in.i_block);
        }
        blk64_t blocks = 0;
        if (const errcode_t e = ext2fs_count_blocks(fs_, ino, small, &blocks)) return fail(e);
        (void)ext2fs_iblk_set(fs_, small, blocks);
        // (The write computes the inode's checksum.)
        if (const errcode_t e = ext2fs_write_inode_full(fs_, ino, small, static_cast<int>(len))) return fail(e);
        if (in.i_links_count) ext2fs_mark_inode_bitmap2(fs_->inode_map, ino);
        else ext2fs_unmark_inode_bitmap2(fs_->inode_map, ino);
        ext2fs_mark_ib_dirty(fs_);
        return errc::ok;
    }

    static constexpr std::uint32_t max_inode_bytes = 1024; // larger inodes are refused (vet)

    ext2_filsys fs_;
    extent_list list_;
    __u16 saved_state_ = 0;     // s_state before begin(), restored by finish()
    errcode_t last_error_ = 0;
    const char* why_ = nullptr; // vet()'s refusal
};

} // namespace jbtree::ext2fs_adapter
