// SPDX-License-Identifier: MIT
// Shared helpers of the on-file benchmarks (bench_journal.cpp,
// bench_recovery.cpp, bench_e2fs.cpp; bench_btree.cpp for the clocks):
// clocks, I/O meters, the filesystem check, the memory a
// jbtree volume works in, and a little argument parsing.
//
//   proc_write_bytes()    write_bytes of /proc/self/io: bytes this process
//                         caused to be sent to the storage layer (counted when
//                         a page-cache page is dirtied, so rewriting a page
//                         that is still dirty counts once; -1 if unreadable)
//   disk_meter            sectors written to the block device holding a path
//                         (/sys/dev/block/MAJ:MIN/stat): every process's
//                         writes, the filesystem's own journal included
//   describe_fs(path)     filesystem type of a path and whether it is backed
//                         by a disk (tmpfs/overlay are not)
//   volume_mem            vectors behind a jbtree::volume_memory
//
// The syscall meter (syscall_meter.hpp, linked into one program only)
// counts the bytes the process hands to write(2)-family calls.
#pragma once

#include <jbtree/volume/volume.hpp>

#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

namespace benchio {

using clock_type = std::chrono::steady_clock;

inline double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// This thread's CPU time in seconds. On a shared machine it leaves out the
// time other processes hold the core (not their cache and memory traffic):
// JBTREE_BENCH_CLOCK=cpu (cpu_clock_requested()) selects it for timed
// regions that do no I/O.
inline double thread_cpu_seconds() noexcept {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}
inline bool cpu_clock_requested() noexcept {
    const char* c = std::getenv("JBTREE_BENCH_CLOCK");
    return c && std::strcmp(c, "cpu") == 0;
}
// Seconds on the clock a timed region uses: thread CPU time (cpu) or wall
// time (steady_clock); only differences between two readings mean anything.
inline double clock_seconds(bool cpu) noexcept {
    if (cpu) return thread_cpu_seconds();
    return std::chrono::duration<double>(clock_type::now().time_since_epoch()).count();
}

// write_bytes from /proc/self/io, or -1.
inline long long proc_write_bytes() {
    std::ifstream in("/proc/self/io");
    std::string key;
    long long v = 0;
    while (in >> key >> v)
        if (key == "write_bytes:") return v;
    return -1;
}

// Sectors (512 bytes) written to the whole block device under a path.
class disk_meter {
public:
    explicit disk_meter(const std::string& path) {
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0) return;
        char p[128];
        std::snprintf(p, sizeof p, "/sys/dev/block/%u:%u", ::major(st.st_dev), ::minor(st.st_dev));
        char real[4096];
        if (!::realpath(p, real)) return;
        std::string dir = real;
        // A partition's own stat exists too, but the whole disk is what the
        // filesystem's journal and metadata writes land on as well.
        if (::access((dir + "/partition").c_str(), F_OK) == 0) dir = dir.substr(0, dir.rfind('/'));
        stat_ = dir + "/stat";
        name_ = dir.substr(dir.rfind('/') + 1);
        if (sectors() < 0) stat_.clear();
    }
    bool ok() const { return !stat_.empty(); }
    const std::string& name() const { return name_; }
    // Bytes written to the device so far, or -1.
    long long bytes() const {
        const long long s = sectors();
        return s < 0 ? -1 : s * 512;
    }

private:
    long long sectors() const {
        if (stat_.empty()) return -1;
        std::ifstream in(stat_);
        long long f[7] = {};
        for (long long& x : f)
            if (!(in >> x)) return -1;
        return f[6]; // field 7: sectors written
    }
    std::string stat_, name_;
};

struct fs_info {
    std::string type;      // "ext4", "tmpfs", ...
    bool disk_backed = false;
};

inline fs_info describe_fs(const std::string& path) {
    struct statfs s {};
    fs_info r{"unknown", false};
    if (::statfs(path.c_str(), &s) != 0) return r;
    switch (static_cast<unsigned long>(s.f_type)) {
    case 0xEF53: r = {"ext2/3/4", true}; break;
    case 0x58465342: r = {"xfs", true}; break;
    case 0x9123683E: r = {"btrfs", true}; break;
    case 0xF2F52010: r = {"f2fs", true}; break;
    case 0x01021994: r = {"tmpfs", false}; break;
    case 0x794C7630: r = {"overlayfs", false}; break;
    case 0x65735546: r = {"fuse", false}; break;
    default: {
        char b[32];
        std::snprintf(b, sizeof b, "f_type 0x%lx", static_cast<unsigned long>(s.f_type));
        r = {b, false};
    }
    }
    return r;
}

// Writes 1 MiB to a scratch file in dir with fdatasync and tells whether
// /proc/self/io write_bytes moved by at least that much (it does not on
// tmpfs, and not at all without task I/O accounting).
inline bool write_bytes_meter_works(const std::string& dir, long long* seen = nullptr) {
    const std::string p = dir + "/.meter-probe";
    FILE* f = std::fopen(p.c_str(), "wb");
    if (!f) return false;
    std::vector<char> buf(1 << 20, 'x');
    const long long a = proc_write_bytes();
    const bool wrote = std::fwrite(buf.data(), 1, buf.size(), f) == buf.size() && std::fflush(f) == 0 &&
                       ::fdatasync(fileno(f)) == 0;
    const long long b = proc_write_bytes();
    std::fclose(f);
    std::remove(p.c_str());
    if (seen) *seen = b - a;
    return wrote && a >= 0 && b - a >= static_cast<long long>(buf.size());
}

// Nanoseconds since the epoch, for commit block timestamps.
inline std::uint64_t realtime_ns(void*) noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// The memory of one volume (or of a bare jbd2 journal: use .vm.journal).
struct volume_mem {
    std::vector<unsigned char> cache, staging, bitmap, dirty;
    std::vector<jbtree::jbd2::cache_slot> slots;
    std::vector<std::uint32_t> buckets, running;
    std::vector<std::uint64_t> revokes;
    std::vector<jbtree::jbd2::committed_tx> committed;
    std::vector<jbtree::jbd2::revoke_entry> rv;
    jbtree::volume_memory vm;

    // cache_blocks: buffer cache; max_tx: largest transaction (the journal
    // further caps it at a quarter of the log); committed: committed but not
    // checkpointed transactions remembered; staging: blocks per log write;
    // bitmap_blocks: volume bitmap blocks (0 for a bare journal).
    volume_mem(std::uint32_t bs, std::uint32_t cache_blocks, std::uint32_t max_tx, std::uint32_t committed_cap,
               std::uint32_t staging_blocks, std::uint32_t bitmap_blocks) {
        std::uint32_t nb = 1;
        while (nb < cache_blocks) nb <<= 1;
        cache.resize(std::size_t{bs} * cache_blocks);
        slots.resize(cache_blocks);
        buckets.resize(nb);
        running.resize(max_tx);
        revokes.resize(max_tx);
        committed.resize(committed_cap);
        staging.resize(std::size_t{bs} * (2 + staging_blocks));
        bitmap.resize(std::size_t{bs} * (bitmap_blocks ? bitmap_blocks : 1));
        dirty.resize(bitmap_blocks ? bitmap_blocks : 1);
        rv.resize(1 << 16);
        vm.journal = {cache.data(), slots.data(), cache_blocks, buckets.data(), nb, running.data(), revokes.data(),
                      max_tx, committed.data(), committed_cap, staging.data(), 2 + staging_blocks};
        vm.bitmap = bitmap.data();
        vm.bitmap_dirty = dirty.data();
        vm.bitmap_blocks = bitmap_blocks;
        vm.revokes = rv.data();
        vm.revoke_capacity = rv.size();
    }
};

// Bitmap blocks of a volume of n blocks of size bs.
inline std::uint32_t bitmap_blocks_for(std::uint64_t n, std::uint32_t bs) {
    const std::uint64_t bits = std::uint64_t{bs} * 8;
    return static_cast<std::uint32_t>((n + bits - 1) / bits);
}

// The same random keys for every contender: n distinct u64 from
// std::mt19937_64 (seed 42, as bench_btree.cpp), duplicates redrawn.
inline std::vector<std::uint64_t> random_keys(std::size_t n, std::uint64_t seed = 42) {
    std::mt19937_64 rng(seed);
    std::unordered_set<std::uint64_t> seen;
    seen.reserve(n * 2);
    std::vector<std::uint64_t> out;
    out.reserve(n);
    while (out.size() < n) {
        const std::uint64_t k = rng();
        if (seen.insert(k).second) out.push_back(k);
    }
    return out;
}

// "1e6", "1000000", "64Ki" style counts.
inline std::uint64_t parse_count(const char* s) {
    char* end = nullptr;
    const double d = std::strtod(s, &end);
    std::uint64_t v = static_cast<std::uint64_t>(d + 0.5);
    if (end && (*end == 'K' || *end == 'k')) v *= 1024;
    if (end && (*end == 'M' || *end == 'm')) v *= 1024 * 1024;
    return v;
}

inline std::vector<std::uint64_t> parse_list(const char* s) {
    std::vector<std::uint64_t> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(parse_count(item.c_str()));
    return out;
}

} // namespace benchio

