// Test support for interop with real ext4 images (hosted: std::, POSIX,
// libext2fs, and the e2fsprogs and util-linux command-line tools).
//
//   test_image         an image made by mkfs.ext4 -d from a generated directory
//                      holding "victim", a file of a few blocks with a known
//                      pattern; lives in a temp dir removed by the destructor
//   read_image_info    libext2fs: block size and count, the journal inode as
//                      extents in journal-logical order, the journal superblock,
//                      the physical blocks of the victim file
//   find_free_blocks   blocks the block bitmaps mark free (scratch blocks)
//   set_needs_recovery the ext4 superblock's RECOVER flag, with its checksum
//   run_e2fsck         e2fsck -fy / -fn with exit code and output
//   loop_mount         mount -o loop into a temp dir, umount in the destructor;
//                      loop_mount_skip_reason() says why it cannot be used here
//   open_image_device  the image file as a jbtree::BlockDevice (hosted::file_device)
//   image_log_device   the image's journal as a jbtree::jbd2::LogDevice
//
// Nothing here throws: failures are reported as bool / error strings, so the
// helpers work in the -fno-exceptions build of the tests too. Tests must not
// REQUIRE while a loop_mount is live: in that build a failed REQUIRE
// terminates the program and would leave the mount behind.
#pragma once

#include <jbtree/base/crc32c.hpp>
#include <jbtree/base/endian.hpp>
#include <jbtree/base/errc.hpp>
#include <jbtree/hosted/file_device.hpp>
#include <jbtree/journal/jbd2_format.hpp>
#include <jbtree/journal/jbd2_recovery.hpp>
#include <jbtree/policy/block_device.hpp>

#include "jbtree/ext2fs/libext2fs.hpp"

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace ext4img {

// ---------------------------------------------------------------- processes

struct command_result {
    int exit_code = -1; // -1: did not run or was killed by a signal
    std::string output; // stdout and stderr together
};

// Single-quote a string for /bin/sh.
inline std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) {
        if (c == '\'') q += "'\\''";
        else q += c;
    }
    return q + "'";
}

// Runs `cmd` through /bin/sh with stderr folded into stdout.
inline command_result run_command(const std::string& cmd) {
    command_result r;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (!p) {
        r.output = std::string("popen failed: ") + std::strerror(errno);
        return r;
    }
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    const int st = ::pclose(p);
    r.exit_code = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    return r;
}

// ---------------------------------------------------------------- temp dirs

// A directory under $TMPDIR (or /tmp), removed with its contents on
// destruction.
class temp_dir {
public:
    explicit temp_dir(const std::string& prefix = "jbtree-ext4") {
        const char* t = std::getenv("TMPDIR");
        std::string tmpl = std::string(t && *t ? t : "/tmp") + "/" + prefix + "-XXXXXX";
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (::mkdtemp(buf.data())) path_ = buf.data();
    }
    ~temp_dir() { remove(); }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    bool ok() const noexcept { return !path_.empty(); }
    const std::filesystem::path& path() const noexcept { return path_; }
    // Forget the directory without removing it (a mount is still on it).
    void release() noexcept { path_.clear(); }
    void remove() noexcept {
        if (path_.empty()) return;
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
        path_.clear();
    }

private:
    std::filesystem::path path_;
};

// ---------------------------------------------------------------- raw file I/O

inline bool read_file(const std::filesystem::path& p, std::vector<unsigned char>& out) {
    std::ifstream in(p, std::ios::binary);
    if (!in) return false;
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return !in.bad();
}

inline bool write_file(const std::filesystem::path& p, const std::vector<unsigned char>& data) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    if (!out) return false;
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    return static_cast<bool>(out.flush());
}

// `n` bytes at byte offset `off` of a file.
inline bool pread_file(const std::filesystem::path& p, std::uint64_t off, std::size_t n, unsigned char* out) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::pread(fd, out, n, static_cast<off_t>(off)) == static_cast<ssize_t>(n);
    ::close(fd);
    return ok;
}

inline bool pwrite_file(const std::filesystem::path& p, std::uint64_t off, std::size_t n, const unsigned char* in) {
    const int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = ::pwrite(fd, in, n, static_cast<off_t>(off)) == static_cast<ssize_t>(n);
    ok = (::fsync(fd) == 0) && ok;
    ::close(fd);
    return ok;
}

// Blocks [blk, blk + n) of an image with block size bs.
inline std::vector<unsigned char> read_image_blocks(const std::filesystem::path& img, std::uint32_t bs,
                                                    std::uint64_t blk, std::uint32_t n = 1) {
    std::vector<unsigned char> out(static_cast<std::size_t>(bs) * n);
    if (!pread_file(img, blk * bs, out.size(), out.data())) out.clear();
    return out;
}

// ---------------------------------------------------------------- configurations

// One mkfs.ext4 configuration of the interop tests.
struct config {
    std::uint32_t block_size = 4096;
    bool metadata_csum = true;

    std::string features() const { return metadata_csum ? "has_journal,metadata_csum" : "has_journal,^metadata_csum"; }
    std::string name() const {
        return std::to_string(block_size) + (metadata_csum ? "/metadata_csum" : "/no-metadata_csum");
    }
};

// metadata_csum on/off x 4 KiB/1 KiB blocks.
inline const std::array<config, 4> all_configs = {{{4096, true}, {4096, false}, {1024, true}, {1024, false}}};

// ---------------------------------------------------------------- the victim file

// The regular file the tests may overwrite harmlessly: created by mkfs -d,
// victim_blocks blocks long, byte i of block b = victim_byte(b, i).
inline constexpr const char* victim_name = "victim";
inline constexpr std::uint32_t victim_blocks = 4;

constexpr unsigned char victim_byte(std::uint32_t block, std::uint32_t i) noexcept {
    return static_cast<unsigned char>((i * 7u + block * 31u + (i >> 8) + 0x5Au) & 0xFFu);
}

inline std::vector<unsigned char> victim_pattern(std::uint32_t bs) {
    std::vector<unsigned char> v(static_cast<std::size_t>(bs) * victim_blocks);
    for (std::uint32_t b = 0; b < victim_blocks; ++b)
        for (std::uint32_t i = 0; i < bs; ++i) v[static_cast<std::size_t>(b) * bs + i] = victim_byte(b, i);
    return v;
}

// ---------------------------------------------------------------- making images

// An ext4 image made by
//   mkfs.ext4 -q -F -b <bs> -O <features> -d <dir> <img> <size>
// where <dir> holds the victim file. The image and its directory live in a
// temp dir that the destructor removes.
class test_image {
public:
    explicit test_image(const config& c, std::uint64_t fs_bytes = 8u << 20, const std::string& extra_mkfs_args = "")
        : cfg_(c), dir_("jbtree-ext4") {
        if (!dir_.ok()) {
            error_ = "mkdtemp failed";
            return;
        }
        const auto root = dir_.path() / "root";
        std::error_code ec;
        std::filesystem::create_directory(root, ec);
        if (ec || !write_file(root / victim_name, victim_pattern(c.block_size))) {
            error_ = "cannot create the mkfs -d directory";
            return;
        }
        img_ = dir_.path() / "fs.img";
        const std::string cmd = "mkfs.ext4 -q -F -b " + std::to_string(c.block_size) + " -O " + c.features() +
                                (extra_mkfs_args.empty() ? "" : " " + extra_mkfs_args) + " -d " +
                                shell_quote(root.string()) + " " + shell_quote(img_.string()) + " " +
                                std::to_string(fs_bytes / 1024) + "k";
        const command_result r = run_command(cmd);
        mkfs_output_ = r.output;
        if (r.exit_code != 0) error_ = cmd + " failed (exit " + std::to_string(r.exit_code) + "): " + r.output;
    }
    test_image(const test_image&) = delete;
    test_image& operator=(const test_image&) = delete;

    bool ok() const noexcept { return error_.empty(); }
    const std::string& error() const noexcept { return error_; }
    const config& cfg() const noexcept { return cfg_; }
    const std::filesystem::path& path() const noexcept { return img_; }   // the image file
    const std::filesystem::path& dir() const noexcept { return dir_.path(); } // scratch space
    const std::string& mkfs_output() const noexcept { return mkfs_output_; }

    // A copy of the image in the scratch dir (for one scenario each).
    std::filesystem::path copy(const std::string& name) const {
        const auto p = dir_.path() / name;
        std::error_code ec;
        std::filesystem::copy_file(img_, p, std::filesystem::copy_options::overwrite_existing, ec);
        return ec ? std::filesystem::path() : p;
    }

private:
    config cfg_;
    temp_dir dir_;
    std::filesystem::path img_;
    std::string error_;
    std::string mkfs_output_;
};

// ---------------------------------------------------------------- the ext4 superblock

// Byte offsets in the ext4 superblock (which starts at byte 1024 of the image).
inline constexpr std::uint64_t ext4_sb_offset = 1024;
inline constexpr std::size_t ext4_sb_size = 1024;
inline constexpr std::size_t ext4_sb_state = 0x3A;            // le16 s_state
inline constexpr std::size_t ext4_sb_feature_incompat = 0x60; // le32
inline constexpr std::size_t ext4_sb_feature_ro_compat = 0x64;
inline constexpr std::size_t ext4_sb_checksum = 0x3FC;        // le32 s_checksum
inline constexpr std::uint32_t ext4_incompat_recover = 0x4;   // EXT3_FEATURE_INCOMPAT_RECOVER (needs_recovery)
inline constexpr std::uint32_t ext4_ro_compat_metadata_csum = 0x400;

// crc32c_raw(~0, superblock bytes before s_checksum), not seeded.
inline std::uint32_t ext4_sb_checksum_of(const unsigned char* sb) noexcept {
    return jbtree::crc32c_raw(~0u, sb, ext4_sb_checksum);
}

// Recompute s_checksum if the superblock has metadata_csum (else leave it).
inline void ext4_sb_update_checksum(unsigned char* sb) noexcept {
    if (jbtree::load_le<std::uint32_t>(sb + ext4_sb_feature_ro_compat) & ext4_ro_compat_metadata_csum)
        jbtree::store_le<std::uint32_t>(sb + ext4_sb_checksum, ext4_sb_checksum_of(sb));
}

inline bool read_ext4_sb(const std::filesystem::path& img, unsigned char (&sb)[ext4_sb_size]) {
    return pread_file(img, ext4_sb_offset, ext4_sb_size, sb);
}

inline bool write_ext4_sb(const std::filesystem::path& img, const unsigned char (&sb)[ext4_sb_size]) {
    return pwrite_file(img, ext4_sb_offset, ext4_sb_size, sb);
}

// Set or clear needs_recovery in the primary superblock, fixing its checksum
// (what the kernel does when a journaled fs is mounted / cleanly unmounted).
inline bool set_needs_recovery(const std::filesystem::path& img, bool on) {
    unsigned char sb[ext4_sb_size];
    if (!read_ext4_sb(img, sb)) return false;
    std::uint32_t inc = jbtree::load_le<std::uint32_t>(sb + ext4_sb_feature_incompat);
    inc = on ? (inc | ext4_incompat_recover) : (inc & ~ext4_incompat_recover);
    jbtree::store_le<std::uint32_t>(sb + ext4_sb_feature_incompat, inc);
    ext4_sb_update_checksum(sb);
    return write_ext4_sb(img, sb);
}

// A jbd2 journal's log_state callback for an ext4 image: sets (live) or
// clears needs_recovery in the superblock through the journal's own device
// (a BlockDevice of the image's blocks), checksum fixed, and flushes, so
// the flag is durable before the log goes live and cleared only after the
// log was emptied, as the kernel orders it. Counts both.
template <class Device>
struct recover_flag {
    Device* dev = nullptr;
    std::vector<unsigned char> buf; // one filesystem block
    int sets = 0, clears = 0;

    static jbtree::errc update(void* ctx, bool live) noexcept {
        auto* self = static_cast<recover_flag*>(ctx);
        Device& d = *self->dev;
        const std::uint32_t bs = d.block_size();
        const std::uint64_t blk = ext4_sb_offset / bs; // block 1 with 1 KiB blocks, else 0
        unsigned char* sb = self->buf.data() + ext4_sb_offset % bs;
        JBTREE_TRY(d.read_blocks(blk, 1, self->buf.data()));
        std::uint32_t inc = jbtree::load_le<std::uint32_t>(sb + ext4_sb_feature_incompat);
        inc = live ? (inc | ext4_incompat_recover) : (inc & ~ext4_incompat_recover);
        jbtree::store_le<std::uint32_t>(sb + ext4_sb_feature_incompat, inc);
        ext4_sb_update_checksum(sb);
        JBTREE_TRY(d.write_blocks(blk, 1, self->buf.data()));
        JBTREE_TRY(d.flush());
        ++(live ? self->sets : self->clears);
        return jbtree::errc::ok;
    }
};

// 1 = set, 0 = clear, -1 = cannot read.
inline int needs_recovery(const std::filesystem::path& img) {
    unsigned char sb[ext4_sb_size];
    if (!read_ext4_sb(img, sb)) return -1;
    return (jbtree::load_le<std::uint32_t>(sb + ext4_sb_feature_incompat) & ext4_incompat_recover) ? 1 : 0;
}

// Whether s_checksum is right (true when there is no metadata_csum).
inline bool ext4_sb_checksum_ok(const std::filesystem::path& img) {
    unsigned char sb[ext4_sb_size];
    if (!read_ext4_sb(img, sb)) return false;
    if (!(jbtree::load_le<std::uint32_t>(sb + ext4_sb_feature_ro_compat) & ext4_ro_compat_metadata_csum)) return true;
    return jbtree::load_le<std::uint32_t>(sb + ext4_sb_checksum) == ext4_sb_checksum_of(sb);
}

// ---------------------------------------------------------------- image layout (libext2fs)

struct extent {
    std::uint64_t physical = 0; // first fs block
    std::uint64_t count = 0;    // blocks
};

// Fields of the journal superblock (journal block 0).
struct journal_sb_info {
    std::uint32_t blocktype = 0;
    std::uint32_t blocksize = 0;
    std::uint32_t maxlen = 0;
    std::uint32_t first = 0;
    std::uint32_t sequence = 0;
    std::uint32_t start = 0;
    std::uint32_t errno_ = 0;
    std::uint32_t compat = 0;
    std::uint32_t incompat = 0;
    std::uint32_t ro_compat = 0;
    std::uint32_t nr_users = 0;
    std::uint32_t num_fc_blks = 0;
    unsigned char checksum_type = 0;
    unsigned char uuid[16] = {};

    bool has_64bit() const noexcept { return incompat & jbtree::jbd2::incompat_64bit; }
    bool csum_v2() const noexcept { return incompat & jbtree::jbd2::incompat_csum_v2; }
    bool csum_v3() const noexcept { return incompat & jbtree::jbd2::incompat_csum_v3; }
    // The block formats these features imply (tag size, tails, checksum seed).
    jbtree::jbd2::format format() const noexcept {
        jbtree::jbd2::format f;
        f.block_size = blocksize;
        f.compat = compat;
        f.incompat = incompat;
        if (csum_v2() || csum_v3()) f.csum_seed = jbtree::crc32c_raw(~0u, uuid, 16);
        return f;
    }
    // "64bit csum_v3 revoke" style summary; "(none)" when no feature is set.
    std::string features() const {
        std::string s;
        auto add = [&](bool on, const char* n) {
            if (!on) return;
            if (!s.empty()) s += ' ';
            s += n;
        };
        add(compat & jbtree::jbd2::compat_checksum, "checksum_v1");
        add(incompat & jbtree::jbd2::incompat_revoke, "revoke");
        add(has_64bit(), "64bit");
        add(incompat & jbtree::jbd2::incompat_async_commit, "async_commit");
        add(csum_v2(), "csum_v2");
        add(csum_v3(), "csum_v3");
        add(incompat & jbtree::jbd2::incompat_fast_commit, "fast_commit");
        return s.empty() ? "(none)" : s;
    }
};

inline journal_sb_info parse_journal_sb(const unsigned char* blk) noexcept {
    const auto* s = reinterpret_cast<const jbtree::jbd2::superblock*>(blk);
    journal_sb_info j;
    j.blocktype = s->s_header.h_blocktype.get();
    j.blocksize = s->s_blocksize.get();
    j.maxlen = s->s_maxlen.get();
    j.first = s->s_first.get();
    j.sequence = s->s_sequence.get();
    j.start = s->s_start.get();
    j.errno_ = s->s_errno.get();
    j.compat = s->s_feature_compat.get();
    j.incompat = s->s_feature_incompat.get();
    j.ro_compat = s->s_feature_ro_compat.get();
    j.nr_users = s->s_nr_users.get();
    j.num_fc_blks = s->s_num_fc_blks.get();
    j.checksum_type = s->s_checksum_type;
    std::memcpy(j.uuid, s->s_uuid, 16);
    return j;
}

// What a test needs to know about an image.
struct image_info {
    std::uint32_t block_size = 0;
    std::uint64_t blocks_count = 0;
    bool metadata_csum = false;  // ext4 RO_COMPAT_METADATA_CSUM
    bool fs_64bit = false;       // ext4 INCOMPAT_64BIT
    bool needs_recovery = false; // ext4 INCOMPAT_RECOVER

    std::uint32_t journal_inum = 0;
    std::uint64_t journal_size = 0;      // i_size of the journal inode, bytes
    std::vector<extent> journal_extents; // journal-logical order, consecutive blocks merged
    std::uint32_t journal_magic = 0;     // be32 at the start of journal block 0
    journal_sb_info journal;             // journal superblock (valid when journal_magic == jbd2::magic)

    std::uint64_t victim_size = 0;
    std::vector<std::uint64_t> victim_blocks; // physical block of each victim block, file order

    std::uint64_t journal_blocks() const noexcept {
        std::uint64_t n = 0;
        for (const auto& e : journal_extents) n += e.count;
        return n;
    }
    // Physical block of journal block j, 0 if j is outside the journal.
    std::uint64_t journal_physical(std::uint64_t j) const noexcept {
        for (const auto& e : journal_extents) {
            if (j < e.count) return e.physical + j;
            j -= e.count;
        }
        return 0;
    }
};

// Appends physical block p to an extent list, merging with the last extent.
inline void append_block(std::vector<extent>& ext, std::uint64_t p) {
    if (!ext.empty() && ext.back().physical + ext.back().count == p) ++ext.back().count;
    else ext.push_back({p, 1});
}

namespace detail {

// Physical blocks of logical blocks [0, n) of an inode; false on a hole.
inline bool map_inode(ext2_filsys fs, ext2_ino_t ino, ext2_inode& inode, std::uint64_t n,
                      std::vector<std::uint64_t>& out) {
    out.clear();
    for (std::uint64_t l = 0; l < n; ++l) {
        blk64_t p = 0;
        if (ext2fs_bmap2(fs, ino, &inode, nullptr, 0, l, nullptr, &p) || p == 0) return false;
        out.push_back(p);
    }
    return true;
}

} // namespace detail

// Reads the layout of an image with libext2fs (read-only) and its journal
// superblock from the file. On failure returns false with `err` set.
inline bool read_image_info(const std::filesystem::path& img, image_info& out, std::string& err) {
    out = image_info{};
    ext2_filsys fs = nullptr;
    if (errcode_t e = ext2fs_open2(img.c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs)) {
        err = "ext2fs_open2 failed: " + std::to_string(e);
        return false;
    }
    bool ok = true;
    out.block_size = fs->blocksize;
    out.blocks_count = ext2fs_blocks_count(fs->super);
    out.metadata_csum = fs->super->s_feature_ro_compat & EXT4_FEATURE_RO_COMPAT_METADATA_CSUM;
    out.fs_64bit = fs->super->s_feature_incompat & EXT4_FEATURE_INCOMPAT_64BIT;
    out.needs_recovery = fs->super->s_feature_incompat & EXT3_FEATURE_INCOMPAT_RECOVER;
    out.journal_inum = fs->super->s_journal_inum;

    ext2_inode inode{};
    std::vector<std::uint64_t> blocks;
    if (!out.journal_inum || ext2fs_read_inode(fs, out.journal_inum, &inode)) {
        err = "no journal inode";
        ok = false;
    } else {
        out.journal_size = EXT2_I_SIZE(&inode);
        if (!detail::map_inode(fs, out.journal_inum, inode, out.journal_size / out.block_size, blocks)) {
            err = "journal inode has a hole or cannot be mapped";
            ok = false;
        }
        for (std::uint64_t p : blocks) append_block(out.journal_extents, p);
    }

    ext2_ino_t vino = 0;
    if (ok && ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, victim_name, &vino) == 0 && vino &&
        ext2fs_read_inode(fs, vino, &inode) == 0) {
        out.victim_size = EXT2_I_SIZE(&inode);
        if (!detail::map_inode(fs, vino, inode, (out.victim_size + out.block_size - 1) / out.block_size,
                               out.victim_blocks)) {
            err = "victim file has a hole";
            ok = false;
        }
    } // an image without the victim file leaves victim_blocks empty
    ext2fs_close_free(&fs);
    if (!ok) return false;

    const std::uint64_t j0 = out.journal_physical(0);
    std::vector<unsigned char> blk = read_image_blocks(img, out.block_size, j0);
    if (j0 == 0 || blk.size() != out.block_size) {
        err = "cannot read the journal superblock";
        return false;
    }
    out.journal_magic = jbtree::load_be<std::uint32_t>(blk.data());
    out.journal = parse_journal_sb(blk.data());
    return true;
}

// `n` blocks that the image's block bitmaps mark free (so neither e2fsck nor
// the kernel cares what they hold), the highest-numbered first. Scratch
// blocks for writer tests beside the victim file's. False with `err` set when
// the bitmaps cannot be read or fewer than n blocks are free.
inline bool find_free_blocks(const std::filesystem::path& img, std::uint32_t n, std::vector<std::uint64_t>& out,
                             std::string& err) {
    out.clear();
    ext2_filsys fs = nullptr;
    if (errcode_t e = ext2fs_open2(img.c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs)) {
        err = "ext2fs_open2 failed: " + std::to_string(e);
        return false;
    }
    if (errcode_t e = ext2fs_read_bitmaps(fs)) {
        err = "ext2fs_read_bitmaps failed: " + std::to_string(e);
        ext2fs_close_free(&fs);
        return false;
    }
    const blk64_t first = fs->super->s_first_data_block;
    for (blk64_t b = ext2fs_blocks_count(fs->super); b-- > first && out.size() < n;)
        if (!ext2fs_test_block_bitmap2(fs->block_map, b)) out.push_back(b);
    ext2fs_close_free(&fs);
    if (out.size() < n) {
        err = "only " + std::to_string(out.size()) + " free blocks";
        return false;
    }
    return true;
}

// ---------------------------------------------------------------- the journal superblock

// Reads (the whole first block of) the journal superblock.
inline bool read_journal_sb(const std::filesystem::path& img, const image_info& info, std::vector<unsigned char>& blk) {
    blk = read_image_blocks(img, info.block_size, info.journal_physical(0));
    return blk.size() == info.block_size;
}

// Writes it back, recomputing s_checksum when the journal has csum v2/v3.
inline bool write_journal_sb(const std::filesystem::path& img, const image_info& info,
                             std::vector<unsigned char>& blk) {
    auto* s = reinterpret_cast<jbtree::jbd2::superblock*>(blk.data());
    if (s->s_feature_incompat.get() & (jbtree::jbd2::incompat_csum_v2 | jbtree::jbd2::incompat_csum_v3))
        s->s_checksum.set(jbtree::jbd2::superblock_checksum(blk.data()));
    return blk.size() == info.block_size &&
           pwrite_file(img, info.journal_physical(0) * info.block_size, blk.size(), blk.data());
}

// Adds incompat features to an empty journal (s_start == 0), as the kernel
// does at mount (64bit, csum_v3 with metadata_csum) and debugfs `jo -c`
// does: checksum type crc32c when a checksum version is set, superblock
// checksum recomputed. Refuses a journal with transactions in it.
inline bool add_journal_features(const std::filesystem::path& img, image_info& info, std::uint32_t incompat,
                                 std::string& err) {
    std::vector<unsigned char> blk;
    if (!read_journal_sb(img, info, blk)) {
        err = "cannot read the journal superblock";
        return false;
    }
    auto* s = reinterpret_cast<jbtree::jbd2::superblock*>(blk.data());
    if (s->s_start.get() != 0) {
        err = "journal is not empty";
        return false;
    }
    if (s->s_header.h_blocktype.get() != static_cast<std::uint32_t>(jbtree::jbd2::block_type::superblock_v2)) {
        err = "features need a v2 journal superblock";
        return false;
    }
    const std::uint32_t inc = s->s_feature_incompat.get() | incompat;
    s->s_feature_incompat.set(inc);
    if (inc & (jbtree::jbd2::incompat_csum_v2 | jbtree::jbd2::incompat_csum_v3))
        s->s_checksum_type = jbtree::jbd2::checksum_type_crc32c;
    if (!write_journal_sb(img, info, blk)) {
        err = "cannot write the journal superblock";
        return false;
    }
    info.journal = parse_journal_sb(blk.data());
    return true;
}

// ---------------------------------------------------------------- e2fsck

struct fsck_result {
    int exit_code = -1;
    std::string output;
    // 0: no errors; 1: errors corrected (a replayed journal counts as that).
    bool clean_or_fixed() const noexcept { return exit_code == 0 || exit_code == 1; }
    bool clean() const noexcept { return exit_code == 0; }
};

// `e2fsck -fy img` when fix, else `e2fsck -fn img` (a read-only check).
inline fsck_result run_e2fsck(const std::filesystem::path& img, bool fix) {
    const command_result r = run_command(std::string("e2fsck ") + (fix ? "-fy " : "-fn ") + shell_quote(img.string()));
    return {r.exit_code, r.output};
}

// ---------------------------------------------------------------- loop mounts

// Empty when `mount -o loop` of an ext4 image works here, else why not (for
// a "SKIP: reason" message). Probes once, with a real mount of a tiny
// journal-less image, and caches the answer.
inline std::string loop_mount_skip_reason() {
    static const std::string reason = [] () -> std::string {
        if (::geteuid() != 0) return "not root";
        if (run_command("command -v mount && command -v umount && command -v losetup").exit_code != 0)
            return "mount, umount or losetup not installed";
        const command_result lf = run_command("losetup -f");
        if (lf.exit_code != 0) return "no free loop device (losetup -f: " + lf.output + ")";
        temp_dir d("jbtree-loopprobe");
        if (!d.ok()) return "mkdtemp failed";
        const auto img = d.path() / "probe.img", mnt = d.path() / "mnt";
        std::error_code ec;
        std::filesystem::create_directory(mnt, ec);
        if (run_command("mkfs.ext4 -q -F -O ^has_journal " + shell_quote(img.string()) + " 1M").exit_code != 0)
            return "mkfs.ext4 failed for the probe image";
        const command_result m =
            run_command("mount -t ext4 -o loop,ro " + shell_quote(img.string()) + " " + shell_quote(mnt.string()));
        if (m.exit_code != 0) return "mount -o loop failed: " + m.output;
        run_command("umount " + shell_quote(mnt.string()));
        return "";
    }();
    return reason;
}

// The short name of the loop device mounted at dir ("loop3"), or "".
inline std::string mount_source_name(const std::filesystem::path& dir) {
    command_result r = run_command("findmnt -n -o SOURCE --mountpoint " + shell_quote(dir.string()));
    if (r.exit_code != 0) return "";
    std::string s = r.output;
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    const auto slash = s.rfind('/');
    return slash == std::string::npos ? s : s.substr(slash + 1);
}

// mount -t ext4 -o loop[,options] img <temp dir>; umount in the destructor.
// kernel_log() holds the kernel's messages about this mount (lines naming
// its loop device, or JBD2, after a marker this class writes to /dev/kmsg).
class loop_mount {
public:
    explicit loop_mount(const std::filesystem::path& img, const std::string& options = "") : dir_("jbtree-mnt") {
        if (!dir_.ok()) {
            error_ = "mkdtemp failed";
            return;
        }
        marker_ = "jbtree-ext4-test: mount " + img.string() + " at " + dir_.path().string();
        if (FILE* k = std::fopen("/dev/kmsg", "w")) {
            std::fputs(marker_.c_str(), k);
            std::fclose(k);
        }
        const command_result r = run_command("mount -t ext4 -o loop" + (options.empty() ? "" : "," + options) + " " +
                                             shell_quote(img.string()) + " " + shell_quote(dir_.path().string()));
        if (r.exit_code != 0) {
            error_ = "mount failed (exit " + std::to_string(r.exit_code) + "): " + r.output;
            collect_log("loop");
            return;
        }
        mounted_ = true;
        collect_log(mount_source_name(dir_.path()));
    }
    ~loop_mount() {
        if (!unmount()) dir_.release(); // never remove_all through a live mount
    }
    loop_mount(const loop_mount&) = delete;
    loop_mount& operator=(const loop_mount&) = delete;

    bool ok() const noexcept { return mounted_; }
    const std::string& error() const noexcept { return error_; }
    const std::filesystem::path& mount_point() const noexcept { return dir_.path(); }
    const std::string& kernel_log() const noexcept { return log_; }

    // Contents of a file of the mounted fs (path relative to its root).
    bool read(const std::string& rel, std::vector<unsigned char>& out) const {
        return mounted_ && read_file(dir_.path() / rel, out);
    }

    // umount (retrying, then lazily, if busy). True when nothing is left mounted.
    bool unmount() {
        if (!mounted_) return true;
        const std::string q = shell_quote(dir_.path().string());
        for (int i = 0; i < 5 && mounted_; ++i) {
            if (run_command("umount " + q).exit_code == 0) mounted_ = false;
            else ::usleep(200 * 1000);
        }
        if (mounted_ && run_command("umount -l " + q).exit_code == 0) mounted_ = false;
        if (mounted_) return false;
        dir_.remove();
        return true;
    }

private:
    void collect_log(const std::string& dev) {
        const command_result r = run_command("dmesg 2>/dev/null");
        if (r.exit_code != 0) return;
        const auto at = r.output.rfind(marker_);
        if (at == std::string::npos) return;
        std::size_t pos = r.output.find('\n', at);
        while (pos != std::string::npos && pos + 1 < r.output.size()) {
            const std::size_t end = r.output.find('\n', pos + 1);
            const std::string line =
                r.output.substr(pos + 1, end == std::string::npos ? std::string::npos : end - pos - 1);
            if ((!dev.empty() && line.find(dev) != std::string::npos) || line.find("JBD2") != std::string::npos)
                log_ += line + "\n";
            pos = end;
        }
    }

    temp_dir dir_;
    bool mounted_ = false;
    std::string error_;
    std::string marker_;
    std::string log_;
};

// ---------------------------------------------------------------- BlockDevice over the image

// The image file as a jbtree::BlockDevice of the fs block size (read-write;
// jbtree::hosted::file_device: pread/pwrite, fdatasync for flush).
using image_device = jbtree::hosted::file_device;

inline jbtree::result<image_device> open_image_device(const std::filesystem::path& img, std::uint32_t block_size) {
    return image_device::open(img.c_str(), block_size);
}

// The image's own journal as a jbtree::jbd2::LogDevice (for jbtree's
// recovery, and a writer test's own checks): journal block j is the fs block
// info.journal_physical(j); home blocks are fs blocks; I/O through
// open_image_device.
class image_log_device {
public:
    bool open(const std::filesystem::path& img, const image_info& info) {
        auto d = open_image_device(img, info.block_size);
        if (!d.ok() || info.journal_blocks() > 0xFFFFFFFFu) return false;
        dev_ = std::move(d.value());
        extents_ = info.journal_extents;
        blocks_ = static_cast<std::uint32_t>(info.journal_blocks());
        return true;
    }

    std::uint32_t block_size() const noexcept { return dev_.block_size(); }
    std::uint32_t journal_blocks() const noexcept { return blocks_; }
    jbtree::errc read_log(std::uint32_t j, unsigned char* out) noexcept {
        const std::uint64_t p = physical(j);
        return p ? dev_.read_blocks(p, 1, out) : jbtree::errc::range;
    }
    jbtree::errc write_log(std::uint32_t j, const unsigned char* in) noexcept {
        const std::uint64_t p = physical(j);
        return p ? dev_.write_blocks(p, 1, in) : jbtree::errc::range;
    }
    jbtree::errc write_home(std::uint64_t blk, const unsigned char* in) noexcept {
        return dev_.write_blocks(blk, 1, in);
    }
    jbtree::errc flush() noexcept { return dev_.flush(); }

    image_device& device() noexcept { return dev_; }

private:
    std::uint64_t physical(std::uint64_t j) const noexcept {
        for (const extent& e : extents_) {
            if (j < e.count) return e.physical + j;
            j -= e.count;
        }
        return 0;
    }

    image_device dev_;
    std::vector<extent> extents_;
    std::uint32_t blocks_ = 0;
};
static_assert(jbtree::jbd2::LogDevice<image_log_device>);

} // namespace ext4img
