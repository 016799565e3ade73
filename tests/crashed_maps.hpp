// SPDX-License-Identifier: MIT
// Test support: an ext4 image with stored maps left as the patched kernel
// leaves it when it crashes (hosted: std::, libext2fs, jbtree's jbd2 writer).
//
//   stamp_now            the image's state as a full stamp, and its map file
//   write_stamp          the maps' volume superblock given a stamp
//   log_one_transaction  one committed, unreplayed transaction in the
//                        image's own journal (needs_recovery set)
//   make_orphan          a linked file cut short and put on the orphan list,
//                        as a crash during a truncate leaves it
//
// Used by test_e2fs_tool.cpp and make_crashed_image.cpp (for the patched
// e2fsck's tests in check_e2fsprogs.sh). Nothing here throws.
#pragma once

#include "ext4_image.hpp"

#include <jbtree/ext2fs/map_file.hpp>
#include <jbtree/hosted/owned_memory.hpp>
#include <jbtree/journal/jbd2_journal.hpp>
#include <jbtree/volume/volume.hpp>

#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace crashed_maps {
namespace fs = std::filesystem;
namespace xa = jbtree::ext2fs_adapter;

// The image's state as a full stamp, and its map file's first block.
inline bool stamp_now(const fs::path& img, xa::map_stamp& now, std::uint64_t& first) {
    ext2_filsys fsys = nullptr;
    if (ext2fs_open(img.c_str(), 0, 0, 0, unix_io_manager, &fsys) != 0) return false;
    xa::map_file mf;
    const bool ok = xa::locate_map_file(fsys, mf) == jbtree::errc::ok && mf.state == xa::map_file_state::present;
    now = xa::stamp_of(fsys);
    first = mf.first;
    ext2fs_close_free(&fsys);
    return ok;
}

// The maps' volume superblock given `st` as owner_data (checksum resealed),
// written in place as the patched kernel's journal would leave it.
inline bool write_stamp(const fs::path& img, const xa::map_stamp& st) {
    ext2_filsys fsys = nullptr;
    if (ext2fs_open(img.c_str(), EXT2_FLAG_RW, 0, 0, unix_io_manager, &fsys) != 0) return false;
    xa::map_file mf;
    bool ok = xa::locate_map_file(fsys, mf) == jbtree::errc::ok && mf.state == xa::map_file_state::present;
    std::vector<unsigned char> blk(fsys->blocksize);
    ok = ok && io_channel_read_blk64(fsys->io, mf.first, 1, blk.data()) == 0;
    if (ok) {
        auto* sb = reinterpret_cast<jbtree::volume_superblock*>(blk.data());
        std::memcpy(sb->owner_data, &st, sizeof st);
        sb->checksum.set(jbtree::volume_sb_checksum(blk.data()));
        ok = io_channel_write_blk64(fsys->io, mf.first, 1, blk.data()) == 0;
    }
    ext2fs_close_free(&fsys); // writes nothing else: the filesystem is unchanged
    return ok;
}

// A crash after one committed transaction: four free blocks logged through
// jbtree's jbd2 writer over the image's own journal (needs_recovery set by
// the writer, written in place as the kernel writes it, s_wtime and
// s_kbytes_written untouched), nothing checkpointed. A replay then writes
// them home (free blocks: nothing else changes) and counts their bytes.
inline std::string log_one_transaction(const fs::path& img) {
    ext4img::image_info info;
    std::string err;
    std::vector<std::uint64_t> free_blocks;
    if (!ext4img::read_image_info(img, info, err) || !ext4img::find_free_blocks(img, 4, free_blocks, err)) return err;
    auto f = ext4img::open_image_device(img, info.block_size);
    if (!f) return "cannot open the image";
    jbtree::hosted::file_device file = std::move(f.value());
    std::vector<jbtree::jbd2::log_extent> ext;
    for (const auto& e : info.journal_extents) ext.push_back({e.physical, static_cast<std::uint32_t>(e.count)});
    jbtree::hosted::journal_sizes z;
    z.block_size = info.block_size;
    z.max_transaction_blocks = 64;
    z.cache_blocks = 256; // at least the largest transaction and the cache's free minimum
    z.committed_capacity = 8;
    z.staging_blocks = 16;
    z.revoke_capacity = 64;
    jbtree::hosted::owned_memory mem(z);
    ext4img::recover_flag<jbtree::hosted::file_device> flag{&file, std::vector<unsigned char>(info.block_size)};
    std::optional<jbtree::jbd2::journal<jbtree::hosted::file_device>> j;
    j.emplace(file, ext.data(), static_cast<std::uint32_t>(ext.size()), mem.journal());
    jbtree::jbd2::journal_options o;
    o.log_state = &ext4img::recover_flag<jbtree::hosted::file_device>::update;
    o.log_state_ctx = &flag;
    jbtree::jbd2::sb_problem why = jbtree::jbd2::sb_problem::none;
    if (const jbtree::errc e = j->open(o, &why); e != jbtree::errc::ok)
        return std::string("journal open: ") + jbtree::describe(e) + " (" + jbtree::jbd2::describe(why) + ")";
    auto h = j->start(5);
    if (!h.ok()) return std::string("start: ") + jbtree::describe(h.error());
    for (std::uint64_t blk : free_blocks) {
        auto b = j->read(blk);
        if (!b.ok()) return std::string("read: ") + jbtree::describe(b.error());
        if (const jbtree::errc e = j->get_write_access(*h, *b); e != jbtree::errc::ok)
            return std::string("get_write_access: ") + jbtree::describe(e);
        std::memset(b->data(), 0x5A, info.block_size);
        if (const jbtree::errc e = j->dirty_metadata(*h, *b); e != jbtree::errc::ok)
            return std::string("dirty_metadata: ") + jbtree::describe(e);
    }
    if (const jbtree::errc e = j->stop(*h); e != jbtree::errc::ok) return std::string("stop: ") + jbtree::describe(e);
    if (const jbtree::errc e = j->commit(); e != jbtree::errc::ok) return std::string("commit: ") + jbtree::describe(e);
    j.reset(); // crash: nothing checkpointed
    return flag.sets > 0 ? std::string() : std::string("needs_recovery was not set");
}

// A regular file of at least two blocks, still linked, with i_size cut to
// its first block and put at the head of the orphan list (s_last_orphan,
// the previous head in i_dtime): what a crash in the middle of a truncate
// leaves. e2fsck (or the next mount) then frees the blocks past i_size.
// The superblock is written: take the stamp after this. Returns the
// inode number, 0 on failure (`err` says why).
inline ext2_ino_t make_orphan(const fs::path& img, const char* path, std::string& err) {
    ext2_filsys fsys = nullptr;
    if (ext2fs_open(img.c_str(), EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fsys) != 0) {
        err = "cannot open " + img.string();
        return 0;
    }
    ext2_ino_t ino = 0;
    ext2_inode inode{};
    if (ext2fs_namei(fsys, EXT2_ROOT_INO, EXT2_ROOT_INO, path, &ino) != 0 || ext2fs_read_inode(fsys, ino, &inode) != 0) {
        err = std::string("no inode at ") + path;
    } else if (!LINUX_S_ISREG(inode.i_mode) || EXT2_I_SIZE(&inode) <= fsys->blocksize) {
        err = std::string(path) + " is not a regular file of two blocks or more";
    } else {
        inode.i_size = fsys->blocksize;
        inode.i_size_high = 0;
        inode.i_dtime = fsys->super->s_last_orphan;
        fsys->super->s_last_orphan = ino;
        ext2fs_mark_super_dirty(fsys);
        if (ext2fs_write_inode(fsys, ino, &inode) != 0) err = "writing the inode";
    }
    if (ext2fs_close_free(&fsys) != 0 && err.empty()) err = "writing the superblock";
    return err.empty() ? ino : 0;
}

} // namespace crashed_maps
