// SPDX-License-Identifier: MIT
// jbtree-gen-ext4: fill a freshly made ext4 image with millions of files,
// fast enough for the scale benchmark (bench/scale/run.sh): inodes,
// extents and directory blocks are written straight through libext2fs's
// I/O channel, a block group's inode table at a time; file data blocks
// are allocated but never written (the image stays sparse).
//
//   jbtree-gen-ext4 IMAGE --files N [--per-dir K] [--link-every L]
//                   [--max-extent B] [--seed S]
//
// The tree: /scale holds ceil(N / K) directories d0000000, d0000001, ...
// each with K files f0000000, ... . Every L-th file of a directory also
// has a hard link l<index> in the next directory. A file has 1 to 3
// extents of 1 to B blocks (a free block left between them, so they stay
// separate), every 16th extent unwritten. Inodes are numbered in the order
// they are made (the /scale directory, then each directory followed by its
// files), so everything is written in one pass in inode order.
//
// The image must be fresh from mkfs.ext4 (extents; 256-byte inodes are
// the default) with enough inodes (-N) and blocks; the generator refuses
// otherwise and writes nothing. e2fsck -fn finds the result clean.
#include "jbtree/ext2fs/libext2fs.hpp"
#include "jbtree/ext2fs/map_file.hpp"

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

namespace {

struct options {
    const char* image = nullptr;
    std::uint64_t files = 0;
    std::uint64_t per_dir = 1000;
    std::uint64_t link_every = 10;
    std::uint64_t max_extent = 64;
    std::uint64_t seed = 1;
};

int usage(const char* why) {
    std::fprintf(stderr,
                 "jbtree-gen-ext4: %s\n"
                 "usage: jbtree-gen-ext4 IMAGE --files N [--per-dir K] [--link-every L] [--max-extent B] [--seed S]\n",
                 why);
    return 2;
}

bool parse_u64(const char* s, std::uint64_t& v) {
    if (!s || !*s) return false;
    char* end = nullptr;
    errno = 0;
    v = std::strtoull(s, &end, 10);
    return errno == 0 && *end == 0 && s[0] != '-';
}

void put16(unsigned char* p, std::uint32_t v) {
    p[0] = static_cast<unsigned char>(v);
    p[1] = static_cast<unsigned char>(v >> 8);
}
void put32(unsigned char* p, std::uint32_t v) {
    put16(p, v & 0xFFFF);
    put16(p + 2, v >> 16);
}

// An inode-order writer of inode tables: holds one group's table, read
// first (so the inodes mkfs made stay), written back when the next inode
// lies in another group, and at the end.
class inode_table_writer {
public:
    explicit inode_table_writer(ext2_filsys fs) : fs_(fs) {}
    errcode_t put(ext2_ino_t ino, const unsigned char* raw) {
        const dgrp_t g = static_cast<dgrp_t>((ino - 1) / fs_->super->s_inodes_per_group);
        if (!loaded_ || g != group_) {
            if (errcode_t e = flush()) return e;
            buf_.resize(std::size_t{fs_->inode_blocks_per_group} * fs_->blocksize);
            if (errcode_t e = io_channel_read_blk64(fs_->io, ext2fs_inode_table_loc(fs_, g),
                                                    static_cast<int>(fs_->inode_blocks_per_group), buf_.data()))
                return e;
            group_ = g;
            loaded_ = true;
        }
        const std::size_t isz = EXT2_INODE_SIZE(fs_->super);
        std::memcpy(buf_.data() + ((ino - 1) % fs_->super->s_inodes_per_group) * isz, raw, isz);
        return 0;
    }
    errcode_t flush() {
        if (!loaded_) return 0;
        loaded_ = false;
        return io_channel_write_blk64(fs_->io, ext2fs_inode_table_loc(fs_, group_),
                                      static_cast<int>(fs_->inode_blocks_per_group), buf_.data());
    }

private:
    ext2_filsys fs_;
    std::vector<unsigned char> buf_;
    dgrp_t group_ = 0;
    bool loaded_ = false;
};

// Free blocks in order from a cursor: each take() is the next free run,
// cut to `want` blocks, marked in use (bitmap and counts).
class block_cursor {
public:
    explicit block_cursor(ext2_filsys fs) : fs_(fs), next_(fs->super->s_first_data_block), end_(ext2fs_blocks_count(fs->super)) {}
    // 0 when the filesystem is full.
    std::uint64_t take(std::uint64_t want, std::uint64_t& got) {
        blk64_t z = 0, s = 0;
        if (next_ >= end_ || ext2fs_find_first_zero_block_bitmap2(fs_->block_map, next_, end_ - 1, &z)) return 0;
        if (ext2fs_find_first_set_block_bitmap2(fs_->block_map, z, end_ - 1, &s)) s = end_;
        got = std::min<std::uint64_t>(want, s - z);
        ext2fs_block_alloc_stats_range(fs_, z, static_cast<blk_t>(got), +1);
        next_ = z + got;
        return z;
    }
    void skip(std::uint64_t n) { next_ += n; }

private:
    ext2_filsys fs_;
    std::uint64_t next_, end_;
};

using extent = jbtree::ext2fs_adapter::extent_entry;

// One directory's blocks: entries appended in order, each block closed
// with the checksum tail under metadata_csum.
class dir_builder {
public:
    dir_builder(ext2_filsys fs, ext2_ino_t ino, std::uint32_t gen) : fs_(fs), ino_(ino), gen_(gen) {
        csum_ = ext2fs_has_feature_metadata_csum(fs->super);
        room_ = fs->blocksize - (csum_ ? 12 : 0);
    }
    // Bytes one entry with a name of `len` takes.
    static std::uint32_t entry_size(std::size_t len) { return static_cast<std::uint32_t>((8 + len + 3) & ~std::size_t{3}); }
    // Blocks the entries of these name lengths fill.
    static std::uint64_t blocks_for(ext2_filsys fs, const std::vector<std::size_t>& lens) {
        const std::uint32_t room = fs->blocksize - (ext2fs_has_feature_metadata_csum(fs->super) ? 12 : 0);
        std::uint64_t blocks = 1, used = 0;
        for (std::size_t l : lens) {
            if (used + entry_size(l) > room) ++blocks, used = 0;
            used += entry_size(l);
        }
        return blocks;
    }
    void add(ext2_ino_t ino, const std::string& name, int type) {
        const std::uint32_t sz = entry_size(name.size());
        if (blocks_.empty() || used_ + sz > room_) {
            close_block();
            blocks_.resize(blocks_.size() + fs_->blocksize, 0);
            used_ = 0;
            last_ = 0;
        }
        unsigned char* b = blocks_.data() + blocks_.size() - fs_->blocksize;
        unsigned char* p = b + used_;
        put32(p, ino);
        put16(p + 4, sz);
        p[6] = static_cast<unsigned char>(name.size());
        p[7] = static_cast<unsigned char>(type);
        std::memcpy(p + 8, name.data(), name.size());
        last_ = used_;
        used_ += sz;
    }
    // The finished blocks.
    std::vector<unsigned char>& finish() {
        close_block();
        return blocks_;
    }

private:
    void close_block() {
        if (blocks_.empty() || closed_ == blocks_.size()) return;
        unsigned char* b = blocks_.data() + blocks_.size() - fs_->blocksize;
        put16(b + last_ + 4, room_ - last_); // the last entry reaches the tail
        if (csum_) {
            unsigned char* t = b + room_; // inode 0, rec_len 12, name_len 0, type 0xDE, checksum
            put32(t, 0);
            put16(t + 4, 12);
            t[6] = 0;
            t[7] = 0xDE;
            std::uint32_t ino_le = 0, gen_le = 0;
            put32(reinterpret_cast<unsigned char*>(&ino_le), ino_);
            put32(reinterpret_cast<unsigned char*>(&gen_le), gen_);
            std::uint32_t c = ext2fs_crc32c_le(fs_->csum_seed, reinterpret_cast<unsigned char*>(&ino_le), 4);
            c = ext2fs_crc32c_le(c, reinterpret_cast<unsigned char*>(&gen_le), 4);
            c = ext2fs_crc32c_le(c, b, room_);
            put32(t + 8, c);
        }
        closed_ = blocks_.size();
    }
    ext2_filsys fs_;
    ext2_ino_t ino_;
    std::uint32_t gen_;
    bool csum_;
    std::uint32_t room_;
    std::vector<unsigned char> blocks_;
    std::size_t closed_ = 0;
    std::uint32_t used_ = 0, last_ = 0;
};

std::string numbered(char prefix, std::uint64_t n) {
    char s[24];
    std::snprintf(s, sizeof s, "%c%07" PRIu64, prefix, n);
    return s;
}

struct generator {
    ext2_filsys fs;
    options opt;
    inode_table_writer tables;
    block_cursor blocks;
    std::mt19937_64 rng;
    std::uint32_t now = static_cast<std::uint32_t>(std::time(nullptr));
    std::uint64_t extents_made = 0, blocks_used = 0;

    generator(ext2_filsys f, const options& o) : fs(f), opt(o), tables(f), blocks(f), rng(o.seed) {}

    // Write inode `ino`: mode, links, size, and extents in the inode
    // (depth 0, at most 4).
    errcode_t write_inode(ext2_ino_t ino, std::uint16_t mode, std::uint16_t links, std::uint64_t size,
                          const std::vector<extent>& ext, std::uint32_t gen, bool is_dir) {
        std::vector<unsigned char> raw(EXT2_INODE_SIZE(fs->super), 0);
        auto* in = reinterpret_cast<ext2_inode_large*>(raw.data());
        in->i_mode = mode;
        in->i_links_count = links;
        in->i_size = static_cast<std::uint32_t>(size);
        in->i_size_high = static_cast<std::uint32_t>(size >> 32);
        in->i_atime = in->i_ctime = in->i_mtime = now;
        in->i_generation = gen;
        in->i_flags = EXT4_EXTENTS_FL;
        std::uint64_t nblocks = 0;
        for (const extent& x : ext) nblocks += x.len;
        if (errcode_t e = ext2fs_iblk_set(fs, reinterpret_cast<ext2_inode*>(in), nblocks)) return e;
        if (raw.size() > EXT2_GOOD_OLD_INODE_SIZE) in->i_extra_isize = sizeof(ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
        jbtree::ext2fs_adapter::store_extent_node(reinterpret_cast<unsigned char*>(in->i_block), ext.data(), ext.size(),
                                                  jbtree::ext2fs_adapter::extents_in_inode, 0);
        if (errcode_t e = ext2fs_inode_csum_set(fs, ino, in)) return e;
        ext2fs_inode_alloc_stats2(fs, ino, +1, is_dir ? 1 : 0);
        return tables.put(ino, raw.data());
    }

    // `count` blocks as extents of at most `max_len`, a free block skipped
    // between them; false when the filesystem is full.
    bool allocate(std::uint64_t count, std::uint64_t max_len, std::vector<extent>& out, bool may_be_unwritten) {
        out.clear();
        std::uint64_t l = 0;
        while (l < count && out.size() < 4) { // the inode holds 4 extents: a file may come out shorter
            std::uint64_t got = 0;
            const std::uint64_t p = blocks.take(std::min(count - l, max_len), got);
            if (!p) return false;
            const bool unwritten = may_be_unwritten && extents_made % 16 == 15;
            ++extents_made;
            out.push_back({l, p, got, unwritten});
            l += got;
            blocks_used += got;
            blocks.skip(1);
        }
        return true;
    }

    // A directory at `ino` with `entries` (inode, name, type) after . and ..
    errcode_t make_dir(ext2_ino_t ino, ext2_ino_t parent, std::uint16_t links,
                       const std::vector<std::pair<ext2_ino_t, std::string>>& entries, const std::vector<int>& types) {
        std::vector<std::size_t> lens{1, 2};
        for (const auto& e : entries) lens.push_back(e.second.size());
        const std::uint64_t n = dir_builder::blocks_for(fs, lens);
        std::vector<extent> ext;
        if (!allocate(n, 32768, ext, false)) return EXT2_ET_BLOCK_ALLOC_FAIL;
        std::uint64_t got = 0;
        for (const extent& x : ext) got += x.len;
        if (got != n) return EXT2_ET_BLOCK_ALLOC_FAIL; // free space too fragmented for 4 extents
        const auto gen = static_cast<std::uint32_t>(rng());
        dir_builder d(fs, ino, gen);
        d.add(ino, ".", EXT2_FT_DIR);
        d.add(parent, "..", EXT2_FT_DIR);
        for (std::size_t i = 0; i < entries.size(); ++i) d.add(entries[i].first, entries[i].second, types[i]);
        std::vector<unsigned char>& data = d.finish();
        if (data.size() != n * fs->blocksize) return EXT2_ET_DIR_CORRUPTED; // blocks_for() and add() disagree
        std::uint64_t off = 0;
        for (const extent& x : ext) {
            if (errcode_t e = io_channel_write_blk64(fs->io, x.pblk, static_cast<int>(x.len), data.data() + off)) return e;
            off += x.len * fs->blocksize;
        }
        return write_inode(ino, LINUX_S_IFDIR | 0755, links, n * fs->blocksize, ext, gen, true);
    }

    errcode_t run(ext2_ino_t base, std::uint64_t dirs) {
        const std::uint64_t K = opt.per_dir;
        auto dir_ino = [&](std::uint64_t d) { return static_cast<ext2_ino_t>(base + 1 + d * (K + 1)); };
        auto files_in = [&](std::uint64_t d) { return d + 1 < dirs ? K : opt.files - d * K; };
        // /scale
        std::vector<std::pair<ext2_ino_t, std::string>> entries;
        std::vector<int> types;
        for (std::uint64_t d = 0; d < dirs; ++d) {
            entries.emplace_back(dir_ino(d), numbered('d', d));
            types.push_back(EXT2_FT_DIR);
        }
        const std::uint64_t top_links = 2 + dirs;
        if (errcode_t e = make_dir(base, EXT2_ROOT_INO, static_cast<std::uint16_t>(top_links < 65000 ? top_links : 1), entries, types))
            return e;
        std::vector<extent> ext;
        for (std::uint64_t d = 0; d < dirs; ++d) {
            if (d % 1000 == 0) std::fprintf(stderr, "\rjbtree-gen-ext4: directory %" PRIu64 " of %" PRIu64, d, dirs);
            entries.clear();
            types.clear();
            const std::uint64_t n = files_in(d);
            for (std::uint64_t f = 0; f < n; ++f) {
                entries.emplace_back(dir_ino(d) + 1 + static_cast<ext2_ino_t>(f), numbered('f', f));
                types.push_back(EXT2_FT_REG_FILE);
            }
            if (d > 0 && opt.link_every) // the previous directory's linked files
                for (std::uint64_t f = 0; f < files_in(d - 1); f += opt.link_every) {
                    entries.emplace_back(dir_ino(d - 1) + 1 + static_cast<ext2_ino_t>(f), numbered('l', f));
                    types.push_back(EXT2_FT_REG_FILE);
                }
            if (errcode_t e = make_dir(dir_ino(d), base, 2, entries, types)) return e;
            for (std::uint64_t f = 0; f < n; ++f) {
                const bool linked = opt.link_every && f % opt.link_every == 0 && d + 1 < dirs;
                const std::uint64_t count = 1 + rng() % (opt.max_extent * (1 + rng() % 3));
                if (!allocate(count, opt.max_extent, ext, true)) return EXT2_ET_BLOCK_ALLOC_FAIL;
                std::uint64_t size = 0;
                for (const extent& x : ext) size += x.len;
                if (errcode_t e = write_inode(dir_ino(d) + 1 + static_cast<ext2_ino_t>(f), LINUX_S_IFREG | 0644,
                                              linked ? 2 : 1, size * fs->blocksize, ext, static_cast<std::uint32_t>(rng()), false))
                    return e;
            }
        }
        std::fprintf(stderr, "\rjbtree-gen-ext4: %" PRIu64 " directories written\n", dirs);
        return tables.flush();
    }
};

} // namespace

int main(int argc, char** argv) {
    options opt;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        std::uint64_t* v = a == "--files" ? &opt.files : a == "--per-dir" ? &opt.per_dir : a == "--link-every" ? &opt.link_every
                           : a == "--max-extent" ? &opt.max_extent : a == "--seed" ? &opt.seed : nullptr;
        if (v) {
            if (i + 1 == argc || !parse_u64(argv[i + 1], *v)) return usage(("bad value for " + a).c_str());
            ++i;
        } else if (a.rfind("--", 0) == 0) return usage(("unknown option " + a).c_str());
        else if (!opt.image) opt.image = argv[i];
        else return usage("one IMAGE only");
    }
    if (!opt.image || opt.files == 0) return usage("need IMAGE and --files N");
    if (opt.per_dir == 0 || opt.max_extent == 0 || opt.max_extent > 32768) return usage("--per-dir and --max-extent must be 1..32768");
    add_error_table(&et_ext2_error_table);
    ext2_filsys fs = nullptr;
    if (errcode_t e = ext2fs_open2(opt.image, nullptr, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs)) {
        std::fprintf(stderr, "jbtree-gen-ext4: %s: cannot open: %s\n", opt.image, error_message(e));
        return 1;
    }
    auto refuse = [&](const std::string& why) {
        std::fprintf(stderr, "jbtree-gen-ext4: %s: %s; nothing written\n", opt.image, why.c_str());
        ext2fs_close_free(&fs);
        return 1;
    };
    if (!ext2fs_has_feature_extents(fs->super)) return refuse("the extents feature is needed");
    if (ext2fs_has_feature_bigalloc(fs->super)) return refuse("bigalloc is not supported");
    if (errcode_t e = ext2fs_read_bitmaps(fs)) return refuse(std::string("reading the bitmaps: ") + error_message(e));
    const std::uint64_t dirs = (opt.files + opt.per_dir - 1) / opt.per_dir;
    const std::uint64_t inodes = 1 + dirs + opt.files;
    const ext2_ino_t base = static_cast<ext2_ino_t>(EXT2_FIRST_INO(fs->super) + 1); // after lost+found
    if (inodes > fs->super->s_inodes_count - base + 1)
        return refuse("needs " + std::to_string(inodes) + " inodes, the filesystem has " + std::to_string(fs->super->s_inodes_count));
    ext2_ino_t used = 0;
    if (ext2fs_find_first_set_inode_bitmap2(fs->inode_map, base, fs->super->s_inodes_count, &used) == 0)
        return refuse("inode " + std::to_string(used) + " is in use: the image is not fresh from mkfs.ext4");
    // One of the last things: the directory /scale in the root.
    generator g(fs, opt);
    const std::time_t t0 = std::time(nullptr);
    if (errcode_t e = g.run(base, dirs)) {
        std::fprintf(stderr, "jbtree-gen-ext4: %s: %s (the image is left half written)\n", opt.image, error_message(e));
        return 1;
    }
    if (errcode_t e = ext2fs_link(fs, EXT2_ROOT_INO, "scale", base, EXT2_FT_DIR)) {
        std::fprintf(stderr, "jbtree-gen-ext4: linking /scale: %s\n", error_message(e));
        return 1;
    }
    ext2_inode root{};
    if (ext2fs_read_inode(fs, EXT2_ROOT_INO, &root) == 0) {
        ++root.i_links_count;
        (void)ext2fs_write_inode(fs, EXT2_ROOT_INO, &root);
    }
    ext2fs_mark_super_dirty(fs);
    ext2fs_mark_bb_dirty(fs);
    ext2fs_mark_ib_dirty(fs);
    if (errcode_t e = ext2fs_close_free(&fs)) {
        std::fprintf(stderr, "jbtree-gen-ext4: writing the bitmaps and superblock: %s\n", error_message(e));
        return 1;
    }
    std::printf("%s: %" PRIu64 " files in %" PRIu64 " directories, %" PRIu64 " inodes, %" PRIu64
                " data blocks in %" PRIu64 " extents, %ld s\n",
                opt.image, opt.files, dirs, inodes, g.blocks_used, g.extents_made, static_cast<long>(std::time(nullptr) - t0));
    return 0;
}
