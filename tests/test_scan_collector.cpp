// SPDX-License-Identifier: MIT
// scan_collector (what e2fsck's passes hand over through jbt_e2fs_scan_*)
// gives exactly the records scan_filesystem() gives: the same rmap records
// and the same parent links, on generated images of every shape the scan
// handles (4 KiB and 1 KiB blocks, extents and block maps, deep extent
// trees, xattr blocks, hard links, sparse and unwritten files, a stored map
// file) and on every clean image of ../shared/corpus/ext4/. The collector
// is fed as e2fsck feeds it: inodes in table order, blocks piece by piece
// (single blocks of block-mapped files, indirect blocks before or after
// their data, extents whole), entries per directory.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"
#include "ext4_image.hpp"

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "jbtree/ext2fs/scan.hpp"
#include "jbtree/ext2fs/scan_collector.hpp"

namespace fs = std::filesystem;
using namespace jbtree;
using namespace jbtree::ext2fs_adapter;
using ext4img::run_command;
using ext4img::shell_quote;

namespace {

const fs::path corpus = fs::path(JBTREE_SOURCE_ROOT) / ".." / "shared" / "corpus" / "ext4";

bool have(const char* tool) { return run_command(std::string("command -v ") + tool + " >/dev/null 2>&1").exit_code == 0; }

struct feed_block_ctx {
    scan_collector* c;
    ext2_ino_t ino;
    bool bad = false;
};

int feed_block(ext2_filsys, blk64_t* blocknr, e2_blkcnt_t cnt, blk64_t, int, void* priv) {
    auto* f = static_cast<feed_block_ctx*>(priv);
    const errc e = cnt < 0 ? f->c->add_blocks(f->ino, 0, *blocknr, 1, scan_collector::tree)
                           : f->c->add_blocks(f->ino, static_cast<std::uint64_t>(cnt), *blocknr, 1, 0);
    if (e != errc::ok) f->bad = true;
    return 0;
}

struct feed_entry_ctx {
    scan_collector* c;
    ext2_ino_t dir;
};

int feed_entry(ext2_ino_t, int entry, ext2_dir_entry* de, int, int, char*, void* priv) {
    auto* f = static_cast<feed_entry_ctx*>(priv);
    const int len = ext2fs_dirent_name_len(de);
    if (entry == DIRENT_DOT_FILE || entry == DIRENT_DOT_DOT_FILE || de->inode == 0 || len <= 0) return 0;
    CHECK(f->c->add_link(f->dir, de->inode, de->name, static_cast<std::size_t>(len)) == errc::ok);
    return 0;
}

// Walk `fs` as e2fsck's pass 1 and 2 do and hand everything to a collector.
scan_result collect(ext2_filsys fs) {
    scan_collector c(fs);
    REQUIRE(ext2fs_read_bitmaps(fs) == 0);
    ext2_inode_scan is = nullptr;
    REQUIRE(ext2fs_open_inode_scan(fs, 0, &is) == 0);
    ext2_ino_t ino = 0;
    ext2_inode inode{};
    std::vector<ext2_ino_t> dirs;
    while (ext2fs_get_next_inode(is, &ino, &inode) == 0 && ino != 0) {
        if (!ext2fs_test_inode_bitmap2(fs->inode_map, ino)) continue;
        if (!c.add_inode(ino, inode)) continue;
        if (LINUX_S_ISDIR(inode.i_mode)) dirs.push_back(ino);
        if (ext2fs_inode_has_valid_blocks2(fs, &inode) || ino == EXT2_BAD_INO) { // as e2fsck: the bad-blocks inode has mode 0
            if (inode.i_flags & EXT4_EXTENTS_FL) {
                ext2_extent_handle_t h = nullptr;
                REQUIRE(ext2fs_extent_open2(fs, ino, &inode, &h) == 0);
                ext2fs_extent x{};
                for (errcode_t e = ext2fs_extent_get(h, EXT2_EXTENT_ROOT, &x); e == 0;
                     e = ext2fs_extent_get(h, EXT2_EXTENT_NEXT, &x)) {
                    if (x.e_flags & EXT2_EXTENT_FLAGS_SECOND_VISIT) continue;
                    if (!(x.e_flags & EXT2_EXTENT_FLAGS_LEAF)) CHECK(c.add_blocks(ino, 0, x.e_pblk, 1, scan_collector::tree) == errc::ok);
                    else if (x.e_len)
                        CHECK(c.add_blocks(ino, x.e_lblk, x.e_pblk, x.e_len,
                                           (x.e_flags & EXT2_EXTENT_FLAGS_UNINIT) ? scan_collector::unwritten : 0) == errc::ok);
                }
                ext2fs_extent_free(h);
            } else {
                feed_block_ctx f{&c, ino};
                REQUIRE(ext2fs_block_iterate3(fs, ino, BLOCK_FLAG_READ_ONLY, nullptr, feed_block, &f) == 0);
                CHECK(!f.bad);
            }
        }
        if (const blk64_t acl = ext2fs_file_acl_block(fs, &inode)) CHECK(c.add_blocks(ino, 0, acl, 1, scan_collector::xattr) == errc::ok);
    }
    ext2fs_close_inode_scan(is);
    for (ext2_ino_t d : dirs) {
        feed_entry_ctx f{&c, d};
        REQUIRE(ext2fs_dir_iterate2(fs, d, 0, nullptr, feed_entry, &f) == 0);
    }
    scan_result r;
    c.finish(r);
    return r;
}

using link_tuple = std::tuple<std::uint64_t, std::uint64_t, std::uint32_t, std::string>;
std::vector<link_tuple> sorted_links(const scan_result& r) {
    std::vector<link_tuple> v;
    for (const scan_link& l : r.links) v.emplace_back(l.child, l.parent, l.parent_gen, l.name);
    std::sort(v.begin(), v.end());
    return v;
}

bool same_record(const rmap_record& a, const rmap_record& b) {
    return a.start == b.start && a.length == b.length && a.owner == b.owner && a.offset == b.offset && a.flags == b.flags;
}

// Both ways of scanning `img` agree exactly. Returns the records compared;
// `flags_seen` gets the union of their flags.
std::size_t compare_scans(const fs::path& img, std::uint32_t* flags_seen = nullptr, std::uint64_t* unknown_blocks = nullptr) {
    ext2_filsys fs = nullptr;
    REQUIRE(ext2fs_open2(img.c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs) == 0);
    scan_result want;
    REQUIRE(scan_filesystem(fs, want, [](std::uint64_t, std::uint64_t) {}) == errc::ok);
    const scan_result got = collect(fs);
    ext2fs_close_free(&fs);
    CHECK(got.inodes == want.inodes);
    CHECK(got.directories == want.directories);
    CHECK(got.blocks_owned == want.blocks_owned);
    REQUIRE(got.rmap.size() == want.rmap.size());
    std::size_t differ = 0;
    for (std::size_t i = 0; i < want.rmap.size(); ++i) {
        if (same_record(got.rmap[i], want.rmap[i])) continue;
        if (differ++ < 3)
            FAIL_CHECK("record " << i << ": collected " << got.rmap[i].start << "+" << got.rmap[i].length << " owner "
                                 << got.rmap[i].owner << " offset " << got.rmap[i].offset << " flags " << got.rmap[i].flags
                                 << ", scanned " << want.rmap[i].start << "+" << want.rmap[i].length << " owner "
                                 << want.rmap[i].owner << " offset " << want.rmap[i].offset << " flags " << want.rmap[i].flags);
    }
    CHECK(differ == 0);
    CHECK(sorted_links(got) == sorted_links(want));
    for (const rmap_record& x : want.rmap) {
        if (flags_seen) *flags_seen |= x.flags;
        if (unknown_blocks && x.owner == rmap_owner::unknown) *unknown_blocks += x.length;
    }
    return want.rmap.size();
}

} // namespace

TEST_CASE("canonicalize: the one-sort path merges exactly what the general path merges") {
    std::mt19937_64 rng(42);
    for (int round = 0; round < 300; ++round) {
        CAPTURE(round);
        // Pieces of a few owners over a block range, no block twice: split
        // extents, some contiguous on disk and in the file, some not.
        std::vector<rmap_record> pieces;
        std::uint64_t b = 1 + rng() % 10;
        const int n = 1 + static_cast<int>(rng() % (round % 10 == 0 ? 6000 : 200)); // large ones: the radix sort
        for (int i = 0; i < n; ++i) {
            const std::uint64_t len = 1 + rng() % 4;
            const std::uint64_t owner = rng() % 5 == 0 ? rmap_owner::fs - rng() % 3 : 10 + rng() % 4;
            const std::uint32_t flags = rmap_owner::is_special(owner) ? 0 : static_cast<std::uint32_t>(rng() % 3 == 0 ? rmap_flags::bmbt : 0);
            const std::uint64_t offset = rmap_offsetless(owner, flags) ? 0 : (b + (rng() % 4 == 0 ? 7 : 0)) % 50;
            pieces.push_back(rmap_record{b, len, owner, offset, flags});
            b += len + (rng() % 3 == 0 ? rng() % 3 : 0);
        }
        if (round % 2) { // a few sorted runs out of order, or
            std::vector<std::vector<rmap_record>> runs(1 + rng() % 7);
            for (const rmap_record& x : pieces) runs[rng() % runs.size()].push_back(x);
            std::shuffle(runs.begin(), runs.end(), rng);
            pieces.clear();
            for (const auto& run : runs) pieces.insert(pieces.end(), run.begin(), run.end());
        } else { // no order at all
            std::shuffle(pieces.begin(), pieces.end(), rng);
        }
        std::vector<rmap_record> fast = pieces, general = pieces;
        ext2fs_adapter::detail::canonicalize(fast);
        ext2fs_adapter::detail::canonicalize_by_owner(general);
        REQUIRE(fast.size() == general.size());
        for (std::size_t i = 0; i < fast.size(); ++i) CHECK(same_record(fast[i], general[i]));
    }
}

TEST_CASE("radix_sort: in place, the order std::sort gives, for spread, clustered, equal and huge keys") {
    struct item {
        std::uint64_t k;
        std::uint32_t tie;
        std::uint32_t id;
    };
    auto less = [](const item& a, const item& b) { return std::tie(a.k, a.tie) < std::tie(b.k, b.tie); };
    std::mt19937_64 rng(5);
    for (int shape = 0; shape < 6; ++shape) {
        CAPTURE(shape);
        for (const std::size_t n : {std::size_t{10}, std::size_t{5000}, std::size_t{200000}}) {
            CAPTURE(n);
            std::vector<item> v(n);
            for (std::size_t i = 0; i < n; ++i) {
                std::uint64_t k = 0;
                switch (shape) {
                case 0: k = rng(); break;                                // the whole 64-bit range
                case 1: k = rng() % 1000; break;                         // many equal keys
                case 2: k = 7; break;                                    // all equal
                case 3: k = (rng() % 2) ? rng() % 100 : ~0ull - rng() % 100; break; // two clusters far apart
                case 4: k = 1000000 + i; break;                          // sorted already
                case 5: k = (1ull << 40) - i; break;                     // reversed
                }
                v[i] = item{k, static_cast<std::uint32_t>(rng() % 3), static_cast<std::uint32_t>(i)};
            }
            std::vector<item> want = v;
            std::sort(want.begin(), want.end(), less);
            hosted::radix_sort(v, [](const item& x) { return x.k; }, less);
            bool same = true;
            for (std::size_t i = 0; i < n && same; ++i) same = v[i].k == want[i].k && v[i].tie == want[i].tie;
            CHECK(same);
            std::vector<bool> seen(n); // a permutation: every element once
            for (const item& x : v) seen[x.id] = true;
            CHECK(std::count(seen.begin(), seen.end(), true) == static_cast<std::ptrdiff_t>(n));
        }
    }
}

TEST_CASE("scan_collector: fed as e2fsck walks, it gives scan_filesystem()'s records on generated images") {
    if (!have("mkfs.ext4") || !have("debugfs")) {
        MESSAGE("SKIP: mkfs.ext4 or debugfs not installed");
        return;
    }
    ext4img::temp_dir tmp("jbtree-collector");
    REQUIRE(!tmp.path().empty());
    const fs::path tree = tmp.path() / "tree";
    // Dirs, hard links, a sparse file, many small files, a fragmented file
    // (written interleaved with others, so that its extent tree gets deep).
    const std::string t = shell_quote(tree.string());
    REQUIRE(run_command("set -e; mkdir -p " + t + "/a/b " + t + "/c; head -c 300000 /dev/urandom > " + t +
                        "/a/big; ln " + t + "/a/big " + t + "/c/big-link; truncate -s 4M " + t +
                        "/sparse; printf x | dd of=" + t + "/sparse bs=1 seek=3000000 conv=notrunc status=none; " +
                        "for i in $(seq 1 150); do echo $i > " + t + "/a/b/f$i; done; ln -s a/big " + t + "/sym")
                .exit_code == 0);
    struct shape {
        const char* name;
        const char* mkfs;
    };
    const shape shapes[] = {
        {"4k extents, bad blocks", "-b 4096 -l BADBLOCKS"},
        {"1k extents", "-b 1024"},
        {"1k block maps (ext3)", "-b 1024 -O ^extents,^64bit,^metadata_csum,^flex_bg,^huge_file,^dir_nlink,^extra_isize"},
        {"4k block maps", "-b 4096 -O ^extents,^64bit"},
        {"4k bigalloc, 16k clusters", "-b 4096 -O bigalloc -C 16384"},
    };
    for (const shape& s : shapes) {
        CAPTURE(s.name);
        const fs::path img = tmp.path() / "img";
        const std::string i = shell_quote(img.string());
        // A bad-blocks list for the shapes that ask for one (mkfs -l):
        // the bad-blocks inode maps those blocks (and an indirect block).
        const fs::path bad = tmp.path() / "badblocks";
        std::string bad_list;
        for (int k = 0; k < 20; ++k) bad_list += std::to_string(9000 + 3 * k) + "\n";
        REQUIRE(ext4img::write_file(bad, std::vector<unsigned char>(bad_list.begin(), bad_list.end())));
        std::string mkfs = s.mkfs;
        if (const auto at = mkfs.find("BADBLOCKS"); at != std::string::npos) mkfs.replace(at, 9, shell_quote(bad.string()));
        REQUIRE(run_command("mkfs.ext4 -q -F " + mkfs + " -I 256 -d " + t + " " + i + " 48M").exit_code == 0);
        // What mkfs -d cannot make: an xattr block, an unwritten extent, a
        // fragmented file (an extent tree with a leaf block).
        const fs::path value = tmp.path() / "xattr-value";
        REQUIRE(run_command("head -c 700 /dev/urandom > " + shell_quote(value.string())).exit_code == 0);
        std::string cmds = "ea_set -f " + value.string() + " /a/big user.big_one\n";
        if (std::string(s.mkfs).find("^extents") == std::string::npos) cmds += "fallocate /a/b/f1 0 40\n";
        for (int k = 1; k < 60; k += 2) cmds += "punch /a/big " + std::to_string(k) + " " + std::to_string(k) + "\n"; // 30 holes: an extent tree of depth 1
        const fs::path script = tmp.path() / "cmds";
        REQUIRE(ext4img::write_file(script, std::vector<unsigned char>(cmds.begin(), cmds.end())));
        REQUIRE(run_command("debugfs -w -f " + shell_quote(script.string()) + " " + i + " >/dev/null 2>&1").exit_code == 0);
        REQUIRE(run_command("e2fsck -fy " + i + " >/dev/null 2>&1").exit_code <= 1);
        std::uint32_t flags = 0;
        std::uint64_t unknown = 0;
        CHECK(compare_scans(img, &flags, &unknown) > 20);
        if (std::string(s.mkfs).find("BADBLOCKS") != std::string::npos) CHECK(unknown >= 20); // the bad blocks, owned
        CHECK((flags & rmap_flags::xattr) != 0); // the shapes were made: an xattr block,
        CHECK((flags & rmap_flags::bmbt) != 0);  // tree or indirect blocks,
        if (std::string(s.mkfs).find("^extents") == std::string::npos) CHECK((flags & rmap_flags::unwritten) != 0); // an unwritten extent
    }
}

TEST_CASE("scan_collector: gives scan_filesystem()'s records on every clean corpus image") {
    if (!fs::exists(corpus) || !have("e2fsck")) {
        MESSAGE("SKIP: corpus not found at " << corpus.string() << " (or no e2fsck)");
        return;
    }
    ext4img::temp_dir tmp("jbtree-collector");
    REQUIRE(!tmp.path().empty());
    int compared = 0;
    for (const auto& entry : fs::directory_iterator(corpus)) {
        const std::string name = entry.path().filename().string();
        if (name.size() < 7 || name.substr(name.size() - 7) != ".img.gz") continue;
        CAPTURE(name);
        const fs::path img = tmp.path() / "img";
        REQUIRE(run_command("gzip -dc " + shell_quote(entry.path().string()) + " > " + shell_quote(img.string())).exit_code == 0);
        if (run_command("e2fsck -fn " + shell_quote(img.string()) + " >/dev/null 2>&1").exit_code != 0) continue; // damaged
        compare_scans(img);
        ++compared;
    }
    MESSAGE(compared << " clean corpus images compared");
    CHECK(compared >= 10);
}
