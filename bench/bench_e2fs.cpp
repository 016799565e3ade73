// SPDX-License-Identifier: MIT
// jbtree benchmark: the maps stored in an ext4 image against e2fsck and
// debugfs on the same image, in one run.
//
//  1. The image: a generated tree of --inodes files (directories of 100
//     entries; 60% empty files, 37% of 1-2 blocks, 3% of 8-32 blocks, 5%
//     extra hard links, 1% symlinks), made with `mkfs.ext4 -d` (4 KiB
//     blocks, -N inodes * 1.1). Cached in --dir (remade with --remake).
//  2. build against `e2fsck -fn`: build_stored_maps() (what `jbtree-e2fs
//     build` runs: scan, bulk-load, store through the image's journal) and
//     an e2fsck -fn child process, alternating, --reps times each, page
//     cache hot (one untimed run of each first). Median wall times, ratio.
//  3. Queries after the build, for --samples blocks (a random block of a
//     random inode's extent) and --samples inodes (random files with a
//     name): the owners of one block, every path of one inode. Timed:
//       jbtree query      owners_of / paths_of on maps opened once
//       jbtree one-shot   ext2fs_open2 + stored_maps::open + the query +
//                         close, as one `jbtree-e2fs owner` process does
//                         (without the exec)
//       debugfs           `debugfs -R "icheck B"` / `"ncheck I"` child process
//     Every debugfs answer must be among jbtree's (the bench stops if not).
//     Median of each, ratios debugfs / jbtree.
//
// Usage: jbtree-bench-e2fs [--inodes 200000] [--dir /var/tmp/jbtree-bench-e2fs]
//                          [--reps 3] [--samples 11] [--remake] [--image PATH]
// --image: measure on that image (e.g. bench/scale/run.sh's) instead of
// making one; it must be clean, and is written by the builds.
// JBTREE_BENCH_CLOCK=cpu: the in-process queries ("jbtree query") are
// timed in this thread's CPU time instead of wall time (they do no I/O
// once their blocks are cached; on a shared machine wall time counts
// whoever else held the core).
#include "bench_common.hpp"

#include <jbtree/ext2fs/stored_maps.hpp>

#include <et/com_err.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <sys/wait.h>
#include <vector>

using namespace jbtree;
namespace fs = std::filesystem;
using clk = std::chrono::steady_clock;

namespace {

using benchio::seconds_since; // steady_clock, as clk

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

int sh(const std::string& cmd) {
    const int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

std::string capture(const std::string& cmd) {
    std::string out;
    FILE* p = popen((cmd + " 2>/dev/null").c_str(), "r");
    if (!p) return out;
    char buf[4096];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
    return out;
}

[[noreturn]] void die(const std::string& why) {
    std::fprintf(stderr, "jbtree-bench-e2fs: %s\n", why.c_str());
    std::exit(1);
}

void make_image(const fs::path& dir, const fs::path& img, std::uint64_t n) {
    const fs::path tree = dir / "tree";
    fs::remove_all(tree);
    fs::create_directories(tree);
    std::mt19937_64 rng(42);
    std::vector<char> pattern(32 * 4096);
    for (std::size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<char>('a' + i % 23); // not zero: mkfs -d keeps zero blocks as holes
    std::vector<fs::path> files;
    fs::path d;
    const auto t0 = clk::now();
    for (std::uint64_t i = 0; i < n; ++i) {
        if (i % 100 == 0) {
            d = tree / ("d" + std::to_string(i / 10000)) / ("e" + std::to_string(i / 100));
            fs::create_directories(d);
        }
        const fs::path p = d / ("f" + std::to_string(i));
        const unsigned kind = static_cast<unsigned>(rng() % 100);
        if (kind < 5 && !files.empty()) {
            fs::create_hard_link(files[rng() % files.size()], p);
            continue;
        }
        if (kind < 6) {
            fs::create_symlink("../e0/f1", p);
            continue;
        }
        std::ofstream f(p, std::ios::binary);
        std::size_t blocks = kind < 66 ? 0 : kind < 97 ? 1 + rng() % 2 : 8 + rng() % 25;
        if (blocks) f.write(pattern.data(), static_cast<std::streamsize>(blocks * 4096 - rng() % 4096));
        files.push_back(p);
    }
    std::printf("tree: %" PRIu64 " entries generated in %.1f s\n", n, seconds_since(t0));
    const auto t1 = clk::now();
    const std::uint64_t inodes = n + n / 10 + 1024;
    fs::remove(img);
    if (sh("mkfs.ext4 -q -F -b 4096 -N " + std::to_string(inodes) + " -d " + quote(tree.string()) + " " +
           quote(img.string()) + " 4G") != 0)
        die("mkfs.ext4 -d failed");
    std::printf("image: mkfs.ext4 -d in %.1f s\n", seconds_since(t1));
    fs::remove_all(tree);
}

struct one_shot_result {
    double seconds = 0;
    std::size_t answers = 0;
};

} // namespace

int main(int argc, char** argv) {
    initialize_ext2_error_table();
    std::uint64_t n = 200000;
    int reps = 3, samples = 11;
    bool remake = false;
    fs::path dir = "/var/tmp/jbtree-bench-e2fs", given;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) die("missing value after " + a);
            return argv[++i];
        };
        if (a == "--inodes") n = static_cast<std::uint64_t>(std::stod(next()));
        else if (a == "--dir") dir = next();
        else if (a == "--reps") reps = std::stoi(next());
        else if (a == "--samples") samples = std::stoi(next());
        else if (a == "--remake") remake = true;
        else if (a == "--image") given = next();
        else die("unknown argument " + a);
    }
    const fs::path img = given.empty() ? dir / ("image-" + std::to_string(n) + ".img") : given;
    if (given.empty()) {
        fs::create_directories(dir);
        if (remake || !fs::exists(img)) make_image(dir, img, n);
    } else if (!fs::exists(img))
        die("no such image: " + img.string());
    const std::string simg = img.string();
    std::printf("image %s: %s", simg.c_str(), capture("dumpe2fs -h " + quote(simg) + " | grep -E '^(Inode count|Free inodes|Block count|Free blocks):' | tr '\\n' ' '").c_str());
    std::printf("\n");

    // ---- build against e2fsck -fn -------------------------------------------------
    std::vector<double> t_build, t_fsck;
    ext2fs_adapter::build_report rep{};
    std::string why;
    for (int r = -1; r < reps; ++r) { // r = -1: warm the page cache
        for (int k = 0; k < 2; ++k) {
            const bool jb = ((r + k) & 1) == 0; // alternate who goes first
            const auto t = clk::now();
            if (jb) {
                if (ext2fs_adapter::build_stored_maps(simg.c_str(), rep, why) != errc::ok) die("build: " + why);
                if (r >= 0) t_build.push_back(seconds_since(t));
            } else {
                if (sh("e2fsck -fn " + quote(simg) + " >/dev/null 2>&1") != 0) die("e2fsck -fn does not find the image clean");
                if (r >= 0) t_fsck.push_back(seconds_since(t));
            }
        }
    }
    std::printf("maps: %" PRIu64 " inodes, %" PRIu64 " rmap, %" PRIu64 " refcount, %" PRIu64
                " parent pointer records in %" PRIu64 " tree blocks\n",
                rep.inodes, rep.rmap_records, rep.refcount_records, rep.parent_records, rep.nodes);
    std::printf("last build: open %.3f s, scan %.3f s, build in memory %.3f s, write and commit %.3f s\n",
                rep.open_seconds, rep.scan_seconds, rep.load_seconds, rep.store_seconds);
    const double mb = median(t_build), mf = median(t_fsck);
    std::printf("build        median %8.3f s  (reps %d)\n", mb, reps);
    std::printf("e2fsck -fn   median %8.3f s\n", mf);
    std::printf("build / e2fsck -fn = %.2f (target <= 1)\n\n", mb / mf);

    // ---- queries ------------------------------------------------------------------------
    ext2_filsys fsys = nullptr;
    if (errcode_t e = ext2fs_open2(simg.c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fsys))
        die(std::string("open: ") + error_message(e));
    ext2fs_adapter::stored_maps sm;
    if (sm.open(fsys, why) != errc::ok || sm.stale()) die("stored maps: " + (why.empty() ? "stale" : why));
    // Samples: data extents of inodes, and inodes with a name (from the maps).
    std::vector<rmap_record> data;
    if (sm.rm().for_each([&](const rmap_record& x) {
            if (rmap_owner::is_inode(x.owner) && !(x.flags & (rmap_flags::bmbt | rmap_flags::xattr))) data.push_back(x);
            return true;
        }) != errc::ok)
        die("rmap walk");
    std::mt19937_64 rng(7);
    std::vector<std::uint64_t> blocks, inodes;
    for (int i = 0; i < samples; ++i) {
        const rmap_record& x = data[rng() % data.size()];
        blocks.push_back(x.start + rng() % x.length);
        inodes.push_back(data[rng() % data.size()].owner);
    }
    std::vector<unsigned char> pbuf(ext2fs_adapter::stored_maps::parent_map_type::path_buffer_size(256));
    auto owners = [&](ext2fs_adapter::stored_maps& m, std::uint64_t b) {
        std::set<std::string> s;
        if (m.rm().owners_of(b, [&](const rmap_record& x) {
                s.insert(std::to_string(x.owner));
                return true;
            }) != errc::ok)
            die("owners_of");
        return s;
    };
    auto paths = [&](ext2fs_adapter::stored_maps& m, std::uint64_t ino) {
        std::set<std::string> s;
        auto r = m.pm().paths_of(ino, EXT2_ROOT_INO, 256, pbuf.data(), pbuf.size(), [&](const path_event& e) {
            if (e.kind == path_kind::complete) s.emplace(reinterpret_cast<const char*>(e.path), e.size);
        });
        if (!r) die("paths_of");
        return s;
    };
    auto one_shot = [&](bool owner_query, std::uint64_t x) {
        const auto t = clk::now();
        ext2_filsys f = nullptr;
        if (ext2fs_open2(simg.c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &f)) die("open");
        std::size_t answers = 0;
        {
            ext2fs_adapter::stored_maps m;
            std::string w;
            if (m.open(f, w) != errc::ok) die("one-shot open: " + w);
            answers = owner_query ? owners(m, x).size() : paths(m, x).size();
        }
        ext2fs_close_free(&f);
        return one_shot_result{seconds_since(t), answers};
    };
    std::vector<double> q_owner, q_paths, s_owner, s_paths, d_owner, d_paths;
    const bool cpu_clock = benchio::cpu_clock_requested();
    auto query_clock = [cpu_clock] { return benchio::clock_seconds(cpu_clock); };
    for (int i = 0; i < samples; ++i) {
        const std::uint64_t b = blocks[static_cast<std::size_t>(i)], ino = inodes[static_cast<std::size_t>(i)];
        // In-process, maps open: many repetitions for a stable figure.
        constexpr int inner = 200;
        double q0 = query_clock();
        std::set<std::string> ow;
        for (int k = 0; k < inner; ++k) ow = owners(sm, b);
        q_owner.push_back((query_clock() - q0) / inner);
        q0 = query_clock();
        std::set<std::string> pa;
        for (int k = 0; k < inner; ++k) pa = paths(sm, ino);
        q_paths.push_back((query_clock() - q0) / inner);
        s_owner.push_back(one_shot(true, b).seconds);
        s_paths.push_back(one_shot(false, ino).seconds);
        // debugfs, and its answer must be among jbtree's.
        auto t = clk::now();
        const std::string ic = capture("debugfs -R " + quote("icheck " + std::to_string(b)) + " " + quote(simg));
        d_owner.push_back(seconds_since(t));
        t = clk::now();
        const std::string nc = capture("debugfs -R " + quote("ncheck " + std::to_string(ino)) + " " + quote(simg));
        d_paths.push_back(seconds_since(t));
        const auto tab = ic.rfind('\t');
        const std::string icheck_owner = tab == std::string::npos ? "" : ic.substr(tab + 1, ic.find('\n', tab) - tab - 1);
        if (!ow.count(icheck_owner)) die("block " + std::to_string(b) + ": debugfs says " + icheck_owner);
        std::size_t nlines = 0;
        for (std::size_t p = nc.find('\n'); p != std::string::npos && p + 1 < nc.size(); p = nc.find('\n', p + 1)) ++nlines;
        if (nlines != pa.size()) die("inode " + std::to_string(ino) + ": debugfs names " + std::to_string(nlines) + " paths, jbtree " + std::to_string(pa.size()));
    }
    ext2fs_close_free(&fsys);
    const double qo = median(q_owner), qp = median(q_paths), so = median(s_owner), sp = median(s_paths),
                 dow = median(d_owner), dp = median(d_paths);
    std::printf("queries (%d samples each, medians; answers checked against debugfs; jbtree query in %s):\n", samples,
                cpu_clock ? "thread CPU time" : "wall time");
    std::printf("  owner of a block:   jbtree %9.2f us | one-shot %9.2f ms | debugfs icheck %9.1f ms\n", qo * 1e6, so * 1e3, dow * 1e3);
    std::printf("  paths of an inode:  jbtree %9.2f us | one-shot %9.2f ms | debugfs ncheck %9.1f ms\n", qp * 1e6, sp * 1e3, dp * 1e3);
    std::printf("  debugfs / jbtree query:    owner %.0fx, paths %.0fx (target >= 1000x)\n", dow / qo, dp / qp);
    std::printf("  debugfs / jbtree one-shot: owner %.0fx, paths %.0fx\n", dow / so, dp / sp);
    return 0;
}
