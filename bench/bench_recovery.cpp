// SPDX-License-Identifier: MIT
// jbtree benchmark: journal recovery speed, jbtree vs e2fsck.
//
// Two crashed stores are built once with the same workload (n random u64
// inserts, std::mt19937_64 seed 42, a durable commit every txn inserts) and
// "crashed" at the end: the objects are dropped without close(), so the
// journal holds every committed transaction not yet checkpointed (all
// written, none lost: this is the replay workload, not a torn-write test).
//
//  1. volume   a jbtree::volume<hosted::file_device> on a sparse file with
//              a journal of J blocks; recovery = volume::open() (which runs
//              jbd2::recover over the volume's log_area, then loads the bitmap).
//  2. ext4     an ext4 image from mkfs.ext4 -J size=J*4K, its journal given
//              the features the kernel adds at mount (64bit, csum_v3), and a
//              jbtree::jbd2::journal<hosted::file_device> opened over the
//              journal inode's extents (libext2fs). The same btree runs over
//              a storage that allocates from the largest free run of the
//              image, plus one "anchor" block per commit (as the volume
//              logs its superblock); the journal's log_state callback sets
//              the ext4 needs_recovery flag, as the kernel does.
//              Recovery of copies of this one image, timed:
//                jbtree  jbd2::recover over the image's journal extents, then
//                        clearing needs_recovery (what e2fsck also does)
//                e2fsck  `e2fsck -E journal_only -y image` (wall time of the
//                        child process, startup included)
//              The two replayed images are compared (all bytes but the
//              fields e2fsck stamps: s_wtime, s_kbytes_written, checksum).
//
// MB/s = bytes of live log (committed transactions from s_start to the end
// of the log, known exactly from journal::log_used() at the crash) / wall
// time, MB = 10^6 bytes. Each repetition copies the crashed file (cp
// --sparse=always), syncs, optionally drops the page cache (--cold: echo 3
// > /proc/sys/vm/drop_caches, root only), then times one recovery; the
// order of jbtree and e2fsck alternates between repetitions.
//
// Usage:
//   jbtree-bench-recovery [--n 1e6] [--txn 1000] [--journal 65536]
//       [--reps 3] [--dir /var/tmp/jbtree-bench] [--cold] [--hot]
//       [--fs-blocks 262144] [--node-checksums 0|1]
// --cold and --hot choose the page-cache states measured (default: both).

#include "bench_common.hpp"

#include <jbtree/engine/btree.hpp>
#include <jbtree/ext2fs/journal_extents.hpp>
#include <jbtree/hosted/file_device.hpp>
#include <jbtree/journal/jbd2_journal.hpp>
#include <jbtree/journal/jbd2_log_area.hpp>
#include <jbtree/journal/jbd2_recovery.hpp>
#include <jbtree/records/basic.hpp>
#include <jbtree/volume/volume.hpp>

#include "jbtree/ext2fs/libext2fs.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

extern char** environ;

using namespace jbtree;
using benchio::clock_type;
using benchio::seconds_since;

namespace {

using Dev = hosted::file_device;
using V = volume<Dev>;
using J = jbd2::journal<Dev>;
constexpr std::uint32_t bs = 4096;

struct options {
    std::uint64_t n = 1000000;
    std::uint64_t txn = 1000;
    std::uint32_t journal = 65536; // 256 MiB
    unsigned reps = 3;
    std::string dir = "/var/tmp/jbtree-bench";
    std::uint64_t volume_blocks = 262144;
    std::uint64_t fs_blocks = 262144; // 1 GiB ext4 image
    bool cold = true, hot = true;
    bool node_checksums = true;
    std::uint32_t cache = 32768, max_tx = 8192;
};

[[noreturn]] void die(const std::string& why) {
    std::fprintf(stderr, "jbtree-bench-recovery: %s\n", why.c_str());
    std::exit(1);
}
void check(errc e, const char* what) {
    if (e != errc::ok) die(std::string(what) + ": " + describe(e));
}

int sh(const std::string& cmd) {
    const int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
std::string q(const std::string& s) { return "'" + s + "'"; }

void drop_caches() {
    ::sync();
    FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w");
    if (!f) die("--cold needs root (cannot write /proc/sys/vm/drop_caches); use --hot");
    std::fputs("3\n", f);
    std::fclose(f);
}

void copy_file(const std::string& from, const std::string& to) {
    if (sh("cp --sparse=always " + q(from) + " " + q(to)) != 0) die("cp " + from + " failed");
}

// ---------------------------------------------------------------- the workload

// A BlockStorage over a bare jbd2 journal: nodes in [lo, hi) of the device
// (a free run of the ext4 image), allocated upwards, freed blocks reused.
struct region_storage {
    using buffer = J::buffer;
    J* j = nullptr;
    std::uint64_t lo = 0, hi = 0, next = 0;
    std::vector<std::uint64_t> freed; // reserved up front: push_back never allocates
    bool ck = true;
    std::uint32_t seed = 0;

    std::uint32_t block_size() const noexcept { return bs; }
    bool checksums() const noexcept { return ck; }
    std::uint32_t checksum_seed() const noexcept { return seed; }
    result<buffer> read(std::uint64_t b) noexcept {
        if (b < lo || b >= hi) return errc::range;
        return j->read(b);
    }
    result<buffer> allocate() noexcept {
        std::uint64_t b;
        if (!freed.empty()) {
            b = freed.back();
            freed.pop_back();
        } else {
            if (next >= hi) return errc::no_space;
            b = next++;
        }
        return j->read_new(b);
    }
    errc free(std::uint64_t b) noexcept {
        if (freed.size() == freed.capacity()) return errc::no_memory;
        freed.push_back(b);
        return errc::ok;
    }
    errc write(buffer&) noexcept { return errc::ok; }
    errc flush() noexcept { return j->commit(); }
};
static_assert(BlockStorage<region_storage>);

struct crash_report {
    std::uint64_t log_blocks_live = 0; // journal::log_used() at the crash
    jbd2::journal_stats stats{};
    std::uint32_t next_tid = 0;
    double seconds = 0;
};

template <class Start, class Commit, class Tree, class Anchor>
void run_inserts(const options& o, const std::vector<std::uint64_t>& keys, Tree& t, Start start, Anchor anchor,
                 Commit commit) {
    for (std::uint64_t i = 0; i < keys.size(); ++i) {
        auto h = start(t.insert_credits());
        if (!h) die(std::string("start: ") + describe(h.error()));
        check(t.insert(*h, keys[i], i), "insert");
        anchor(*h);
        if ((i + 1) % o.txn == 0 || i + 1 == keys.size()) commit();
    }
}

// The crashed volume file.
crash_report make_volume(const options& o, const std::string& path, const std::vector<std::uint64_t>& keys) {
    using T = btree<u64_map_traits, V::storage, V::journal_type>;
    crash_report cr;
    const auto t0 = clock_type::now();
    auto dev = Dev::create(path.c_str(), bs, o.volume_blocks);
    if (!dev) die("create " + path);
    std::vector<unsigned char> scratch(bs);
    volume_geometry g;
    g.journal_blocks = o.journal;
    g.node_checksums = o.node_checksums;
    for (int i = 0; i < 16; ++i) g.uuid[i] = static_cast<unsigned char>(0x40 + i);
    check(V::create(*dev, g, scratch.data()), "volume create");
    benchio::volume_mem m(bs, o.cache, o.max_tx, 1024, 256, benchio::bitmap_blocks_for(o.volume_blocks, bs));
    jbd2::journal_options jopt;
    jopt.clock_ns = benchio::realtime_ns;
    V v(*dev, m.vm);
    check(v.open(jopt), "volume open");
    auto t = T::create(v.store(), v.journal(), 1);
    if (!t) die("tree create");
    run_inserts(
        o, keys, *t, [&](std::uint32_t c) { return v.start(c); },
        [&](V::handle& h) {
            check(v.set_anchor(0, t->anchor()), "set_anchor");
            check(v.stop(h), "stop");
        },
        [&] { check(v.commit(), "commit"); });
    cr.log_blocks_live = v.journal().log_used();
    cr.stats = v.journal().stats();
    cr.next_tid = v.journal().next_tid();
    cr.seconds = seconds_since(t0);
    return cr; // crash: v and dev are dropped without close()
}

// ---------------------------------------------------------------- the ext4 image

struct ext4_layout {
    std::vector<jbd2::log_extent> journal; // journal inode, logical order
    std::uint64_t free_lo = 0, free_hi = 0; // largest run of free blocks
    std::uint64_t blocks = 0;
};

ext4_layout read_layout(const std::string& img) {
    ext4_layout out;
    ext2_filsys fs = nullptr;
    if (ext2fs_open2(img.c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs)) die("ext2fs_open2 " + img);
    if (fs->blocksize != bs) die("image block size is not 4096");
    out.blocks = ext2fs_blocks_count(fs->super);
    std::uint32_t n = 0;
    out.journal.resize(64);
    if (const errc e = ext2fs_adapter::journal_extents(fs, out.journal.data(), 64, n); e != errc::ok)
        die(std::string("journal inode: ") + describe(e));
    out.journal.resize(n);
    if (ext2fs_read_block_bitmap(fs)) die("cannot read the block bitmap");
    std::uint64_t run_start = 0, best_lo = 0, best_len = 0;
    bool in_run = false;
    for (std::uint64_t b = fs->super->s_first_data_block; b <= out.blocks; ++b) {
        const bool is_free = b < out.blocks && !ext2fs_test_block_bitmap2(fs->block_map, b);
        if (is_free && !in_run) run_start = b, in_run = true;
        if (!is_free && in_run) {
            in_run = false;
            if (b - run_start > best_len) best_lo = run_start, best_len = b - run_start;
        }
    }
    out.free_lo = best_lo;
    out.free_hi = best_lo + best_len;
    ext2fs_close_free(&fs);
    return out;
}

// ext4 superblock: bytes 1024..2047 of the image.
constexpr std::size_t sb_incompat = 0x60, sb_ro_compat = 0x64, sb_checksum = 0x3FC;
constexpr std::uint32_t incompat_recover = 0x4, ro_compat_metadata_csum = 0x400;

errc set_needs_recovery(Dev& d, bool on) noexcept {
    unsigned char blk[bs];
    JBTREE_TRY(d.read_blocks(0, 1, blk)); // block 0 holds bytes 1024..2047 with 4 KiB blocks
    unsigned char* sb = blk + 1024;
    std::uint32_t inc = load_le<std::uint32_t>(sb + sb_incompat);
    inc = on ? inc | incompat_recover : inc & ~incompat_recover;
    store_le<std::uint32_t>(sb + sb_incompat, inc);
    if (load_le<std::uint32_t>(sb + sb_ro_compat) & ro_compat_metadata_csum)
        store_le<std::uint32_t>(sb + sb_checksum, crc32c_raw(~0u, sb, sb_checksum));
    JBTREE_TRY(d.write_blocks(0, 1, blk));
    return d.flush();
}

errc log_state_cb(void* ctx, bool live) noexcept { return set_needs_recovery(*static_cast<Dev*>(ctx), live); }

// The crashed ext4 image.
crash_report make_ext4(const options& o, const std::string& img, const std::vector<std::uint64_t>& keys,
                       ext4_layout& lay) {
    using T = btree<u64_map_traits, region_storage, J>;
    crash_report cr;
    ::unlink(img.c_str());
    const std::string mk = "mkfs.ext4 -q -F -b 4096 -J size=" + std::to_string(std::uint64_t{o.journal} * bs >> 20) +
                           " " + q(img) + " " + std::to_string(o.fs_blocks * bs / 1024) + "k >/dev/null";
    if (sh(mk) != 0) die(mk + " failed");
    lay = read_layout(img);
    auto dev = Dev::open(img.c_str(), bs);
    if (!dev) die("open " + img);
    { // what the kernel does to the journal superblock at mount: 64bit, csum v3
        std::vector<unsigned char> blk(bs);
        check(dev->read_blocks(lay.journal[0].start, 1, blk.data()), "read journal sb");
        auto* s = reinterpret_cast<jbd2::superblock*>(blk.data());
        s->s_feature_incompat.set(s->s_feature_incompat.get() | jbd2::incompat_64bit | jbd2::incompat_csum_v3);
        s->s_checksum_type = jbd2::checksum_type_crc32c;
        s->s_checksum.set(jbd2::superblock_checksum(blk.data()));
        check(dev->write_blocks(lay.journal[0].start, 1, blk.data()), "write journal sb");
        check(dev->flush(), "flush");
    }
    const auto t0 = clock_type::now();
    benchio::volume_mem m(bs, o.cache, o.max_tx, 1024, 256, 0);
    J j(*dev, lay.journal.data(), static_cast<std::uint32_t>(lay.journal.size()), m.vm.journal);
    jbd2::journal_options jopt;
    jopt.clock_ns = benchio::realtime_ns;
    jopt.log_state = log_state_cb;
    jopt.log_state_ctx = &*dev;
    jbd2::sb_problem why{};
    if (errc e = j.open(jopt, &why); e != errc::ok)
        die(std::string("journal open: ") + describe(e) + " / " + jbd2::describe(why));
    region_storage st;
    st.j = &j;
    st.lo = lay.free_lo + 1; // free_lo: the anchor block
    st.hi = lay.free_hi;
    st.next = st.lo;
    st.freed.reserve(1 << 20);
    st.ck = o.node_checksums;
    st.seed = 0x12345678u;
    auto t = T::create(st, j, 1);
    if (!t) die("tree create");
    run_inserts(
        o, keys, *t, [&](std::uint32_t c) { return j.start(c); }, [&](J::handle& h) { check(j.stop(h), "stop"); },
        [&] {
            // The anchor block, as the volume logs its superblock each commit.
            auto h = j.start(1);
            if (!h) die("start anchor");
            auto b = j.read(lay.free_lo);
            if (!b) die("read anchor");
            check(j.get_write_access(*h, *b), "anchor access");
            const tree_anchor& a = t->anchor();
            store_le<std::uint64_t>(b->data(), a.root);
            store_le<std::uint64_t>(b->data() + 8, a.records);
            store_le<std::uint32_t>(b->data() + 16, a.height);
            check(j.dirty_metadata(*h, *b), "anchor dirty");
            b->reset();
            check(j.stop(*h), "anchor stop");
            check(j.commit(), "commit");
        });
    cr.log_blocks_live = j.log_used();
    cr.stats = j.stats();
    cr.next_tid = j.next_tid();
    cr.seconds = seconds_since(t0);
    return cr; // crash: dropped without close()
}

// ---------------------------------------------------------------- timed recoveries

struct timing {
    double seconds = 0;
    double child_user = 0, child_sys = 0;
    jbd2::recovery_info ri{};
    int exit_code = 0;
};

timing recover_volume(const options& o, const std::string& path) {
    timing r;
    benchio::volume_mem m(bs, o.cache, o.max_tx, 1024, 256, benchio::bitmap_blocks_for(o.volume_blocks, bs));
    const auto t0 = clock_type::now();
    auto dev = Dev::open(path.c_str(), bs);
    if (!dev) die("open " + path);
    V v(*dev, m.vm);
    volume_problem why{};
    if (errc e = v.open({}, &why, &r.ri); e != errc::ok)
        die(std::string("volume recovery: ") + describe(e) + " / " + describe(why));
    r.seconds = seconds_since(t0);
    return r;
}

timing recover_ext4_jbtree(const std::string& img, const ext4_layout& lay) {
    timing r;
    std::vector<unsigned char> a(bs), b(bs);
    std::vector<jbd2::revoke_entry> slots(1 << 16);
    const auto t0 = clock_type::now();
    auto dev = Dev::open(img.c_str(), bs);
    if (!dev) die("open " + img);
    jbd2::log_area<Dev> log(*dev, lay.journal.data(), static_cast<std::uint32_t>(lay.journal.size()));
    check(jbd2::recover(log, {a.data(), b.data(), slots.data(), slots.size()}, r.ri), "jbtree recover");
    check(set_needs_recovery(*dev, false), "clear needs_recovery");
    r.seconds = seconds_since(t0);
    return r;
}

timing recover_ext4_e2fsck(const std::string& img) {
    timing r;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    std::string a0 = "e2fsck", a1 = "-E", a2 = "journal_only", a3 = "-y", a4 = img;
    char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data(), nullptr};
    const auto t0 = clock_type::now();
    pid_t pid = 0;
    if (posix_spawnp(&pid, "e2fsck", &fa, nullptr, argv, environ) != 0) die("cannot run e2fsck");
    int st = 0;
    struct rusage ru {};
    if (::wait4(pid, &st, 0, &ru) != pid) die("wait4 e2fsck");
    r.seconds = seconds_since(t0);
    posix_spawn_file_actions_destroy(&fa);
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.child_user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    r.child_sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    if (r.exit_code != 0 && r.exit_code != 1) die("e2fsck exit " + std::to_string(r.exit_code));
    return r;
}

// First differing byte of two replayed images, ignoring what e2fsck stamps
// in the ext4 superblock (s_wtime, s_kbytes_written, s_checksum); -1: same.
long long compare_images(const std::string& x, const std::string& y) {
    FILE* a = std::fopen(x.c_str(), "rb");
    FILE* b = std::fopen(y.c_str(), "rb");
    if (!a || !b) die("compare: open");
    std::vector<unsigned char> ba(1 << 20), bb(1 << 20);
    long long off = 0, diff = -1;
    for (;;) {
        const std::size_t na = std::fread(ba.data(), 1, ba.size(), a), nb = std::fread(bb.data(), 1, bb.size(), b);
        if (na != nb) {
            diff = off + static_cast<long long>(std::min(na, nb));
            break;
        }
        if (na == 0) break;
        if (off == 0) {
            const std::size_t stamped[] = {0x30, 0x31, 0x32, 0x33, 0x3FC, 0x3FD, 0x3FE, 0x3FF,
                                           0x178, 0x179, 0x17A, 0x17B, 0x17C, 0x17D, 0x17E, 0x17F};
            for (std::size_t s : stamped) ba[1024 + s] = bb[1024 + s] = 0;
        }
        if (std::memcmp(ba.data(), bb.data(), na) != 0) {
            diff = off + (std::mismatch(ba.begin(), ba.begin() + static_cast<long>(na), bb.begin()).first - ba.begin());
            break;
        }
        off += static_cast<long long>(na);
    }
    std::fclose(a);
    std::fclose(b);
    return diff;
}

double median(std::vector<double> v) {
    if (v.empty()) return -1;
    std::sort(v.begin(), v.end());
    const std::size_t k = v.size() / 2;
    return v.size() % 2 ? v[k] : (v[k - 1] + v[k]) / 2;
}

void print_crash(const char* what, const crash_report& c) {
    std::printf("%s: built in %.1f s; live log at the crash %" PRIu64 " blocks (%.1f MB); commits %" PRIu64
                ", log_blocks %" PRIu64 ", logged %" PRIu64 ", home_writes %" PRIu64 ", checkpoints %" PRIu64
                ", next tid %u\n",
                what, c.seconds, c.log_blocks_live, c.log_blocks_live * double{bs} / 1e6, c.stats.commits,
                c.stats.log_blocks, c.stats.logged_blocks, c.stats.home_writes, c.stats.checkpoints, c.next_tid);
}

} // namespace

int main(int argc, char** argv) {
    options o;
    bool cold_set = false, hot_set = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) die(a + " needs a value");
            return argv[++i];
        };
        if (a == "--n") o.n = benchio::parse_count(next());
        else if (a == "--txn") o.txn = benchio::parse_count(next());
        else if (a == "--journal") o.journal = static_cast<std::uint32_t>(benchio::parse_count(next()));
        else if (a == "--reps") o.reps = static_cast<unsigned>(benchio::parse_count(next()));
        else if (a == "--dir") o.dir = next();
        else if (a == "--fs-blocks") o.fs_blocks = benchio::parse_count(next());
        else if (a == "--node-checksums") o.node_checksums = std::string(next()) != "0";
        else if (a == "--cold") cold_set = true;
        else if (a == "--hot") hot_set = true;
        else {
            std::fprintf(stderr, "usage: %s [--n N] [--txn T] [--journal BLOCKS] [--reps R] [--dir DIR] [--cold] [--hot]\n"
                                 "       [--fs-blocks N] [--node-checksums 0|1]\n",
                         argv[0]);
            return 2;
        }
    }
    if (cold_set || hot_set) o.cold = cold_set, o.hot = hot_set;
    if (sh("mkdir -p " + q(o.dir)) != 0) return 1;
    if (sh("e2fsck -V >/dev/null 2>&1") != 0) die("e2fsck not found");
    const benchio::fs_info fs = benchio::describe_fs(o.dir);
    std::printf("dir %s: %s (%s); n %" PRIu64 ", %" PRIu64 " inserts per commit, journal %u blocks (%u MiB)\n",
                o.dir.c_str(), fs.type.c_str(), fs.disk_backed ? "disk-backed" : "NOT disk-backed", o.n, o.txn,
                o.journal, o.journal / 256);
    std::fflush(stdout);

    const std::vector<std::uint64_t> keys = benchio::random_keys(o.n);
    const std::string vol = o.dir + "/crashed.vol", img = o.dir + "/crashed.ext4";
    const std::string vol_copy = o.dir + "/replay.vol", img_j = o.dir + "/replay-jbtree.ext4",
                      img_e = o.dir + "/replay-e2fsck.ext4";
    ::unlink(vol.c_str());
    const crash_report cv = make_volume(o, vol, keys);
    print_crash("volume", cv);
    ext4_layout lay;
    const crash_report ce = make_ext4(o, img, keys, lay);
    std::printf("ext4 image: %" PRIu64 " blocks, journal in %zu extent(s), nodes in free run [%" PRIu64 ", %" PRIu64
                ")\n",
                lay.blocks, lay.journal.size(), lay.free_lo, lay.free_hi);
    print_crash("ext4 journal", ce);
    std::fflush(stdout);

    struct series {
        std::vector<double> vol, jb, e2;
    };
    series hot, cold;
    bool compared = false;
    for (int pass = 0; pass < 2; ++pass) {
        const bool is_cold = pass == 1;
        if ((is_cold && !o.cold) || (!is_cold && !o.hot)) continue;
        series& s = is_cold ? cold : hot;
        for (unsigned rep = 0; rep < o.reps; ++rep) {
            copy_file(vol, vol_copy);
            copy_file(img, img_j);
            copy_file(img, img_e);
            ::sync();
            auto prepare = [&] {
                if (is_cold) drop_caches();
            };
            prepare();
            const timing tv = recover_volume(o, vol_copy);
            s.vol.push_back(tv.seconds);
            timing tj, te;
            if (rep % 2 == 0) {
                prepare();
                tj = recover_ext4_jbtree(img_j, lay);
                prepare();
                te = recover_ext4_e2fsck(img_e);
            } else {
                prepare();
                te = recover_ext4_e2fsck(img_e);
                prepare();
                tj = recover_ext4_jbtree(img_j, lay);
            }
            s.jb.push_back(tj.seconds);
            s.e2.push_back(te.seconds);
            std::printf("%s rep %u: volume::open %.3f s (%" PRIu64 " transactions, %" PRIu64
                        " blocks replayed); ext4: jbtree recover %.3f s (%" PRIu64 " transactions, %" PRIu64
                        " blocks replayed), e2fsck %.3f s (exit %d, user %.2f s, sys %.2f s)\n",
                        is_cold ? "cold" : "hot", rep + 1, tv.seconds, tv.ri.transactions, tv.ri.replayed, tj.seconds,
                        tj.ri.transactions, tj.ri.replayed, te.seconds, te.exit_code, te.child_user, te.child_sys);
            if (!compared) {
                const long long d = compare_images(img_j, img_e);
                if (d < 0) std::printf("  replayed images identical (but for e2fsck's superblock stamps)\n");
                else std::printf("  REPLAYED IMAGES DIFFER at byte %lld (block %lld)\n", d, d / bs);
                compared = true;
            }
            std::fflush(stdout);
            ::unlink(vol_copy.c_str());
            ::unlink(img_j.c_str());
            ::unlink(img_e.c_str());
        }
    }
    const double mb_v = cv.log_blocks_live * double{bs} / 1e6, mb_e = ce.log_blocks_live * double{bs} / 1e6;
    std::printf("\n| page cache | volume::open s | volume MB/s | ext4: jbtree recover s | jbtree MB/s | e2fsck s | "
                "e2fsck MB/s | jbtree/e2fsck speed |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int pass = 0; pass < 2; ++pass) {
        const series& s = pass ? cold : hot;
        if (s.jb.empty()) continue;
        const double v = median(s.vol), j = median(s.jb), e = median(s.e2);
        std::printf("| %s | %.3f | %.0f | %.3f | %.0f | %.3f | %.0f | %.2f |\n", pass ? "cold" : "hot", v, mb_v / v, j,
                    mb_e / j, e, mb_e / e, e / j);
    }
    std::printf("(medians of %u; MB = 10^6 bytes of live log: volume %.1f MB, ext4 %.1f MB; speed ratio > 1: jbtree "
                "faster)\n",
                o.reps, mb_v, mb_e);
    ::unlink(vol.c_str());
    ::unlink(img.c_str());
    return 0;
}
