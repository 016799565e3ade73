// SPDX-License-Identifier: MIT
// jbtree benchmark: durable transactions on a file, jbtree vs LMDB.
//
// Both sides insert the same n random u64 -> u64 records (std::mt19937_64,
// seed 42, as bench_btree.cpp) into an empty store on a file, in
// transactions of `txn` inserts, each ended by a durable commit:
//
//   jbtree  volume<hosted::file_device> on a sparse file (ftruncate), one
//           btree<u64_map_traits> in it, node checksums on, jbd2 journal
//           with 64-bit tags and checksum v3. Per insert: v.start(credits),
//           insert, set_anchor, stop; every txn inserts v.commit() (log
//           blocks, fdatasync, commit block, fdatasync). The run ends with
//           v.close(), which checkpoints every block still only in the log.
//   LMDB    mdb_env with MDB_NOSUBDIR on a file in the same directory,
//           default durability (no MDB_NOSYNC / MDB_NOMETASYNC / WRITEMAP),
//           the main DB with MDB_INTEGERKEY, one write txn per txn inserts
//           ended by mdb_txn_commit, then mdb_env_close.
//
// This is a plain program, not Google Benchmark: one run is a single
// multi-second pass with real fdatasyncs and a file that must start empty,
// so an iteration model brings nothing; instead every repetition runs each
// contender once, alternating the order between repetitions, and the
// summary takes medians.
//
// Measured per run:
//   inserts/s    n / wall time from creating the file to the end of the last
//                commit (jbtree: and the same including close()).
//   bytes/insert /proc/self/io write_bytes delta over the whole run (file
//                creation to close) / n: the same meter for both sides.
//                jbtree's own file_device byte counter is printed as a
//                cross-check, and the sectors written to the whole disk
//                (/sys/dev/block/.../stat, every process, the host
//                filesystem's journal included) as a third view.
//
// Usage:
//   jbtree-bench-journal [--n 1e6] [--txn 1000] [--reps 3]
//       [--journal 8192,32768,131072] [--dir /var/tmp/jbtree-bench]
//       [--volume-blocks 262144] [--cache 32768] [--max-tx 8192]
//       [--only jbtree|lmdb] [--no-verify]
// --journal takes journal sizes in 4 KiB blocks; each is one jbtree contender.

#include "bench_common.hpp"
#include "syscall_meter.hpp"

#include <jbtree/engine/btree.hpp>
#include <jbtree/hosted/file_device.hpp>
#include <jbtree/records/basic.hpp>
#include <jbtree/volume/volume.hpp>

#include <lmdb.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace jbtree;
using benchio::clock_type;
using benchio::seconds_since;

namespace {

using Dev = hosted::file_device;
using V = volume<Dev>;
using T = btree<u64_map_traits, V::storage, V::journal_type>;

constexpr std::uint32_t bs = 4096;

// One jbtree configuration.
struct variant {
    std::uint64_t journal = 32768; // journal blocks
    bool node_checksums = true;    // volume_geometry::node_checksums
    int journal_csum = 3;          // 3: csum v3 (default), 2: csum v2, 0: none
    unsigned checkpoint_at = 0;    // 0: the journal's own checkpointing; p: also
                                   // checkpoint() after a commit that leaves the
                                   // log at least p% full

    std::string name() const {
        std::string s = "jbtree j=" + std::to_string(journal);
        if (!node_checksums) s += " ck=0";
        if (journal_csum != 3) s += " jc=" + std::string(journal_csum == 2 ? "v2" : "none");
        if (checkpoint_at) s += " cp=" + std::to_string(checkpoint_at);
        return s;
    }
};

// "j=32768,ck=0,jc=none,cp=50"
bool parse_variant(const std::string& spec, variant& v) {
    std::stringstream ss(spec);
    std::string item;
    while (std::getline(ss, item, ',')) {
        const auto eq = item.find('=');
        if (eq == std::string::npos) return false;
        const std::string k = item.substr(0, eq), val = item.substr(eq + 1);
        if (k == "j") v.journal = benchio::parse_count(val.c_str());
        else if (k == "ck") v.node_checksums = val != "0";
        else if (k == "jc") v.journal_csum = val == "v2" ? 2 : val == "none" || val == "0" ? 0 : 3;
        else if (k == "cp") v.checkpoint_at = static_cast<unsigned>(benchio::parse_count(val.c_str()));
        else return false;
    }
    return v.journal >= 64;
}

struct options {
    std::uint64_t n = 1000000;
    std::uint64_t txn = 1000;
    unsigned reps = 3;
    std::vector<variant> variants; // default: j=8192, 32768, 131072 with the library's defaults
    std::string dir = "/var/tmp/jbtree-bench";
    std::uint64_t volume_blocks = 262144; // 1 GiB
    std::uint32_t cache = 32768;
    std::uint32_t max_tx = 8192;
    bool run_jbtree = true, run_lmdb = true, verify = true;
};

struct run_result {
    std::string name;
    bool ok = false;
    std::string error;
    double t_inserts = 0; // create .. last commit
    double t_close = 0;   // close() / mdb_env_close
    long long proc_bytes = -1, disk_bytes = -1;
    std::uint64_t sc_bytes = 0, sc_calls = 0, sc_syncs = 0; // syscall meter
    std::uint64_t dev_bytes = 0, dev_flushes = 0, dev_writes = 0;
    std::uint64_t file_bytes = 0; // allocated size of the file(s) afterwards
    jbd2::journal_stats before_close{}, after_close{};
    std::uint32_t max_tx = 0;
    std::string detail;
};

std::uint64_t allocated_bytes(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_blocks) * 512 : 0;
}

run_result fail(run_result r, std::string why) {
    r.ok = false;
    r.error = std::move(why);
    return r;
}

// ---------------------------------------------------------------- jbtree

run_result run_jbtree(const options& o, const variant& var, const std::vector<std::uint64_t>& keys,
                      const benchio::disk_meter& disk) {
    run_result r;
    r.name = var.name();
    const std::string path = o.dir + "/jbtree.vol";
    ::unlink(path.c_str());
    ::sync();
    benchio::volume_mem m(bs, o.cache, o.max_tx, 1024, 256, benchio::bitmap_blocks_for(o.volume_blocks, bs));
    std::vector<unsigned char> scratch(bs);
    jbd2::journal_options jopt;
    jopt.clock_ns = benchio::realtime_ns;

    const long long io0 = benchio::proc_write_bytes(), d0 = disk.bytes();
    const std::uint64_t sb0 = syscall_meter::bytes, sk0 = syscall_meter::calls, ss0 = syscall_meter::syncs;
    const auto t0 = clock_type::now();
    int os_errno = 0;
    auto dev = Dev::create(path.c_str(), bs, o.volume_blocks, &os_errno);
    if (!dev) return fail(r, "file_device::create: " + std::string(std::strerror(os_errno)));
    volume_geometry g;
    g.journal_blocks = static_cast<std::uint32_t>(var.journal);
    g.node_checksums = var.node_checksums;
    g.journal.csum_v3 = var.journal_csum == 3;
    g.journal.csum_v2 = var.journal_csum == 2;
    for (int i = 0; i < 16; ++i) g.uuid[i] = static_cast<unsigned char>(0x40 + i);
    volume_problem why{};
    if (errc e = V::create(*dev, g, scratch.data(), &why); e != errc::ok)
        return fail(r, std::string("volume create: ") + describe(e) + " / " + describe(why));
    {
        V v(*dev, m.vm);
        if (errc e = v.open(jopt, &why); e != errc::ok)
            return fail(r, std::string("volume open: ") + describe(e) + " / " + describe(why));
        r.max_tx = v.journal().max_transaction_blocks();
        auto t = T::create(v.store(), v.journal(), 1);
        if (!t) return fail(r, std::string("tree create: ") + describe(t.error()));
        for (std::uint64_t i = 0; i < keys.size(); ++i) {
            auto h = v.start(t->insert_credits());
            if (!h) return fail(r, std::string("start: ") + describe(h.error()));
            const errc ie = t->insert(*h, keys[i], i);
            const errc ae = v.set_anchor(0, t->anchor());
            const errc se = v.stop(*h);
            if (ie != errc::ok || ae != errc::ok || se != errc::ok)
                return fail(r, std::string("insert: ") + describe(ie) + " " + describe(ae) + " " + describe(se));
            if ((i + 1) % o.txn == 0 || i + 1 == keys.size()) {
                if (errc e = v.commit(); e != errc::ok) return fail(r, std::string("commit: ") + describe(e));
                if (var.checkpoint_at &&
                    std::uint64_t{v.journal().log_used()} * 100 >= std::uint64_t{var.checkpoint_at} * (var.journal - 1)) {
                    if (errc e = v.journal().checkpoint(); e != errc::ok)
                        return fail(r, std::string("checkpoint: ") + describe(e));
                }
            }
        }
        r.t_inserts = seconds_since(t0);
        r.before_close = v.journal().stats();
        char buf[256];
        if (o.verify) {
            auto rep = t->verify();
            if (rep.problem_count != 0 || t->size() != keys.size())
                return fail(r, "verify: " + std::to_string(rep.problem_count) + " problems, " +
                                   std::to_string(t->size()) + " records");
        }
        std::snprintf(buf, sizeof buf, "height %u, max_tx %u", t->height(), r.max_tx);
        r.detail = buf;
        const auto t1 = clock_type::now();
        if (errc e = v.close(); e != errc::ok) return fail(r, std::string("close: ") + describe(e));
        r.t_close = seconds_since(t1);
        r.after_close = v.journal().stats();
    }
    const long long io1 = benchio::proc_write_bytes(), d1 = disk.bytes();
    r.proc_bytes = io0 >= 0 && io1 >= 0 ? io1 - io0 : -1;
    r.disk_bytes = d0 >= 0 && d1 >= 0 ? d1 - d0 : -1;
    r.sc_bytes = syscall_meter::bytes - sb0;
    r.sc_calls = syscall_meter::calls - sk0;
    r.sc_syncs = syscall_meter::syncs - ss0;
    r.dev_bytes = dev->bytes_written();
    r.dev_flushes = dev->flushes();
    r.dev_writes = dev->write_calls();
    if (dev->close() != errc::ok) return fail(r, "close(2) failed");
    r.file_bytes = allocated_bytes(path);

    if (o.verify) { // reopen: the closed volume holds every record
        auto d2 = Dev::open(path.c_str(), bs);
        if (!d2) return fail(r, "reopen: file_device::open");
        V v(*d2, m.vm);
        jbd2::recovery_info ri;
        if (errc e = v.open(jopt, &why, &ri); e != errc::ok) return fail(r, std::string("reopen: ") + describe(e));
        if (!ri.nothing_to_do) return fail(r, "reopen: the journal was not empty after close()");
        auto a = v.anchor(0);
        if (!a) return fail(r, "reopen: no anchor");
        auto t = T::open(v.store(), v.journal(), *a);
        if (!t || t->size() != keys.size() || t->verify().problem_count != 0) return fail(r, "reopen: bad tree");
        for (std::size_t i = 0; i < keys.size(); i += keys.size() / 97 + 1) {
            auto f = t->find(keys[i]);
            if (!f || *f != i) return fail(r, "reopen: record missing");
        }
        (void)v.close();
    }
    ::unlink(path.c_str());
    r.ok = true;
    return r;
}

// ---------------------------------------------------------------- LMDB

run_result run_lmdb(const options& o, const std::vector<std::uint64_t>& keys, const benchio::disk_meter& disk) {
    run_result r;
    r.name = "lmdb";
    const std::string path = o.dir + "/lmdb.mdb", lock = path + "-lock";
    ::unlink(path.c_str());
    ::unlink(lock.c_str());
    ::sync();
    auto check = [&](int rc, const char* what) {
        if (rc == MDB_SUCCESS) return true;
        r.error = std::string(what) + ": " + mdb_strerror(rc);
        return false;
    };

    const long long io0 = benchio::proc_write_bytes(), d0 = disk.bytes();
    const std::uint64_t sb0 = syscall_meter::bytes, sk0 = syscall_meter::calls, ss0 = syscall_meter::syncs;
    const auto t0 = clock_type::now();
    MDB_env* env = nullptr;
    if (!check(mdb_env_create(&env), "mdb_env_create")) return r;
    if (!check(mdb_env_set_mapsize(env, std::size_t{8} << 30), "mdb_env_set_mapsize") ||
        !check(mdb_env_open(env, path.c_str(), MDB_NOSUBDIR, 0644), "mdb_env_open")) {
        mdb_env_close(env);
        return r;
    }
    MDB_dbi dbi = 0;
    bool ok = true;
    for (std::uint64_t i = 0; ok && i < keys.size();) {
        MDB_txn* txn = nullptr;
        ok = check(mdb_txn_begin(env, nullptr, 0, &txn), "mdb_txn_begin");
        if (ok && i == 0) ok = check(mdb_dbi_open(txn, nullptr, MDB_INTEGERKEY, &dbi), "mdb_dbi_open");
        const std::uint64_t end = std::min<std::uint64_t>(keys.size(), i + o.txn);
        for (; ok && i < end; ++i) {
            std::uint64_t k = keys[i], v = i;
            MDB_val mk{sizeof k, &k}, mv{sizeof v, &v};
            ok = check(mdb_put(txn, dbi, &mk, &mv, 0), "mdb_put");
        }
        if (ok) ok = check(mdb_txn_commit(txn), "mdb_txn_commit");
        else if (txn) mdb_txn_abort(txn);
    }
    r.t_inserts = seconds_since(t0);
    if (ok) {
        MDB_stat st{};
        MDB_envinfo info{};
        mdb_env_stat(env, &st);
        mdb_env_info(env, &info);
        char buf[256];
        std::snprintf(buf, sizeof buf, "depth %u, branch %zu, leaf %zu, overflow %zu pages, last_pgno %zu, entries %zu",
                      st.ms_depth, st.ms_branch_pages, st.ms_leaf_pages, st.ms_overflow_pages, info.me_last_pgno,
                      st.ms_entries);
        r.detail = buf;
        if (o.verify && st.ms_entries != keys.size()) {
            ok = false;
            r.error = "entries " + std::to_string(st.ms_entries) + " != " + std::to_string(keys.size());
        }
    }
    const auto t1 = clock_type::now();
    mdb_env_close(env);
    r.t_close = seconds_since(t1);
    const long long io1 = benchio::proc_write_bytes(), d1 = disk.bytes();
    r.proc_bytes = io0 >= 0 && io1 >= 0 ? io1 - io0 : -1;
    r.disk_bytes = d0 >= 0 && d1 >= 0 ? d1 - d0 : -1;
    r.sc_bytes = syscall_meter::bytes - sb0;
    r.sc_calls = syscall_meter::calls - sk0;
    r.sc_syncs = syscall_meter::syncs - ss0;
    r.file_bytes = allocated_bytes(path) + allocated_bytes(lock);
    if (ok && o.verify) { // reopen read-only and look some records up
        MDB_env* e2 = nullptr;
        MDB_txn* txn = nullptr;
        ok = check(mdb_env_create(&e2), "reopen") && check(mdb_env_set_mapsize(e2, std::size_t{8} << 30), "reopen") &&
             check(mdb_env_open(e2, path.c_str(), MDB_NOSUBDIR | MDB_RDONLY, 0644), "reopen") &&
             check(mdb_txn_begin(e2, nullptr, MDB_RDONLY, &txn), "reopen") &&
             check(mdb_dbi_open(txn, nullptr, MDB_INTEGERKEY, &dbi), "reopen");
        for (std::size_t i = 0; ok && i < keys.size(); i += keys.size() / 97 + 1) {
            std::uint64_t k = keys[i];
            MDB_val mk{sizeof k, &k}, mv{};
            ok = check(mdb_get(txn, dbi, &mk, &mv), "reopen: mdb_get") && mv.mv_size == 8 &&
                 std::memcmp(mv.mv_data, &i, 8) == 0;
        }
        if (txn) mdb_txn_abort(txn);
        if (e2) mdb_env_close(e2);
        if (!ok && r.error.empty()) r.error = "reopen: wrong value";
    }
    ::unlink(path.c_str());
    ::unlink(lock.c_str());
    r.ok = ok;
    return r;
}

// ---------------------------------------------------------------- report

double per_insert(long long b, std::uint64_t n) { return b < 0 ? -1 : static_cast<double>(b) / static_cast<double>(n); }

void print_run(const run_result& r, std::uint64_t n) {
    if (!r.ok) {
        std::printf("  %-16s FAILED: %s\n", r.name.c_str(), r.error.c_str());
        return;
    }
    std::printf("  %-16s %7.2f s + close %6.3f s = %9.0f inserts/s (%9.0f before close)\n", r.name.c_str(),
                r.t_inserts, r.t_close, n / (r.t_inserts + r.t_close), n / r.t_inserts);
    std::printf("    bytes/insert: syscalls %.1f, write_bytes %.1f, disk sectors %.1f", per_insert(static_cast<long long>(r.sc_bytes), n),
                per_insert(r.proc_bytes, n), per_insert(r.disk_bytes, n));
    if (r.dev_bytes) std::printf(", file_device counter %.1f", per_insert(static_cast<long long>(r.dev_bytes), n));
    std::printf("; %" PRIu64 " write calls, %" PRIu64 " f(data)syncs\n", r.sc_calls, r.sc_syncs);
    std::printf("    %s; file %.1f MiB allocated\n", r.detail.c_str(), r.file_bytes / 1048576.0);
    if (r.dev_bytes) {
        const auto& a = r.before_close;
        const auto& b = r.after_close;
        std::printf("    journal before close: commits %" PRIu64 " log_blocks %" PRIu64 " logged %" PRIu64
                    " home_writes %" PRIu64 " checkpoints %" PRIu64 " flushes %" PRIu64 " evictions %" PRIu64 "\n",
                    a.commits, a.log_blocks, a.logged_blocks, a.home_writes, a.checkpoints, a.flushes, a.evictions);
        std::printf("    journal after close:  commits %" PRIu64 " log_blocks %" PRIu64 " logged %" PRIu64
                    " home_writes %" PRIu64 " checkpoints %" PRIu64 " flushes %" PRIu64
                    "; device: %" PRIu64 " write calls, %" PRIu64 " fdatasyncs, %" PRIu64 " bytes\n",
                    b.commits, b.log_blocks, b.logged_blocks, b.home_writes, b.checkpoints, b.flushes, r.dev_writes,
                    r.dev_flushes, r.dev_bytes);
    }
    std::fflush(stdout);
}

double median(std::vector<double> v) {
    if (v.empty()) return -1;
    std::sort(v.begin(), v.end());
    const std::size_t k = v.size() / 2;
    return v.size() % 2 ? v[k] : (v[k - 1] + v[k]) / 2;
}

} // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--n") o.n = benchio::parse_count(next());
        else if (a == "--txn") o.txn = benchio::parse_count(next());
        else if (a == "--reps") o.reps = static_cast<unsigned>(benchio::parse_count(next()));
        else if (a == "--journal") {
            for (std::uint64_t j : benchio::parse_list(next())) {
                variant v;
                v.journal = j;
                o.variants.push_back(v);
            }
        } else if (a == "--variant") {
            variant v;
            if (!parse_variant(next(), v)) {
                std::fprintf(stderr, "bad --variant (want e.g. j=32768,ck=0,jc=none,cp=50)\n");
                return 2;
            }
            o.variants.push_back(v);
        }
        else if (a == "--dir") o.dir = next();
        else if (a == "--volume-blocks") o.volume_blocks = benchio::parse_count(next());
        else if (a == "--cache") o.cache = static_cast<std::uint32_t>(benchio::parse_count(next()));
        else if (a == "--max-tx") o.max_tx = static_cast<std::uint32_t>(benchio::parse_count(next()));
        else if (a == "--only") {
            const std::string w = next();
            o.run_jbtree = w == "jbtree";
            o.run_lmdb = w == "lmdb";
        } else if (a == "--no-verify") o.verify = false;
        else {
            std::fprintf(stderr, "usage: %s [--n N] [--txn T] [--reps R] [--journal B1,B2,..] [--variant SPEC]... [--dir DIR]\n"
                                 "       [--volume-blocks N] [--cache N] [--max-tx N] [--only jbtree|lmdb] [--no-verify]\n",
                         argv[0]);
            return 2;
        }
    }
    if (o.n == 0 || o.txn == 0 || o.reps == 0) return 2;
    if (o.variants.empty())
        for (std::uint64_t j : {8192, 32768, 131072}) {
            variant v;
            v.journal = j;
            o.variants.push_back(v);
        }
    std::string mk = "mkdir -p '" + o.dir + "'";
    if (std::system(mk.c_str()) != 0) return 1;

    const benchio::fs_info fs = benchio::describe_fs(o.dir);
    long long probe = 0;
    const bool meter_ok = benchio::write_bytes_meter_works(o.dir, &probe);
    const benchio::disk_meter disk(o.dir);
    std::printf("dir %s: %s (%s); /proc/self/io write_bytes %s (1 MiB probe counted %lld bytes); disk meter: %s\n",
                o.dir.c_str(), fs.type.c_str(), fs.disk_backed ? "disk-backed" : "NOT disk-backed",
                meter_ok ? "works" : "DOES NOT COUNT here", probe, disk.ok() ? disk.name().c_str() : "unavailable");
    std::printf("n %" PRIu64 ", %" PRIu64 " inserts per transaction, %u repetitions, volume %" PRIu64
                " blocks of %u, cache %u blocks, max_tx %u; LMDB %s\n",
                o.n, o.txn, o.reps, o.volume_blocks, bs, o.cache, o.max_tx, MDB_VERSION_STRING);
    std::fflush(stdout);

    const std::vector<std::uint64_t> keys = benchio::random_keys(o.n);

    // One contender per journal size, plus LMDB.
    struct contender {
        std::string name;
        bool lmdb;
        variant var;
        std::vector<run_result> runs;
    };
    std::vector<contender> cs;
    if (o.run_jbtree)
        for (const variant& v : o.variants) cs.push_back({v.name(), false, v, {}});
    if (o.run_lmdb) cs.push_back({"lmdb", true, {}, {}});

    for (unsigned rep = 0; rep < o.reps; ++rep) {
        std::printf("repetition %u\n", rep + 1);
        std::vector<std::size_t> order(cs.size());
        for (std::size_t i = 0; i < cs.size(); ++i) order[i] = rep % 2 ? cs.size() - 1 - i : i;
        for (std::size_t i : order) {
            contender& c = cs[i];
            run_result r = c.lmdb ? run_lmdb(o, keys, disk) : run_jbtree(o, c.var, keys, disk);
            print_run(r, o.n);
            c.runs.push_back(std::move(r));
        }
    }

    // Summary: medians over the repetitions.
    struct summary {
        double ips = -1, ips_before_close = -1, sc = -1, wb = -1, disk = -1, dev = -1;
    };
    auto summarize = [&](const contender& c) {
        std::vector<double> a, b, sc, w, k, d;
        for (const run_result& r : c.runs) {
            if (!r.ok) continue;
            a.push_back(o.n / (r.t_inserts + r.t_close));
            b.push_back(o.n / r.t_inserts);
            sc.push_back(per_insert(static_cast<long long>(r.sc_bytes), o.n));
            w.push_back(per_insert(r.proc_bytes, o.n));
            k.push_back(per_insert(r.disk_bytes, o.n));
            if (r.dev_bytes) d.push_back(per_insert(static_cast<long long>(r.dev_bytes), o.n));
        }
        return summary{median(a), median(b), median(sc), median(w), median(k), median(d)};
    };
    summary lm;
    for (const contender& c : cs)
        if (c.lmdb) lm = summarize(c);
    auto ratio = [](double x, double y) { return x > 0 && y > 0 ? x / y : -1.0; };
    std::printf("\nbytes/insert: syscalls = bytes passed to write/pwrite/writev (exact); write_bytes = /proc/self/io; "
                "disk = sectors written to %s (all processes)\n",
                disk.ok() ? disk.name().c_str() : "?");
    std::printf("| contender | inserts/s | inserts/s before close | syscall B/insert | write_bytes B/insert | "
                "disk B/insert | file_device B/insert | inserts/s jbtree/LMDB | syscall bytes jbtree/LMDB | "
                "write_bytes jbtree/LMDB | disk bytes jbtree/LMDB |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const contender& c : cs) {
        const summary s = summarize(c);
        std::printf("| %s | %.0f | %.0f | %.1f | %.1f | %.1f | ", c.name.c_str(), s.ips, s.ips_before_close, s.sc,
                    s.wb, s.disk);
        if (s.dev >= 0) std::printf("%.1f", s.dev);
        else std::printf("-");
        if (!c.lmdb && lm.ips > 0)
            std::printf(" | %.2f | %.2f | %.2f | %.2f |\n", ratio(s.ips, lm.ips), ratio(s.sc, lm.sc), ratio(s.wb, lm.wb),
                        ratio(s.disk, lm.disk));
        else std::printf(" | - | - | - | - |\n");
    }
    std::printf("(medians of %u repetitions; inserts/s includes jbtree's close() and LMDB's mdb_env_close; "
                "ratios > 1 for inserts/s and < 1 for bytes favour jbtree)\n",
                o.reps);
    bool all_ok = true;
    for (const contender& c : cs)
        for (const run_result& r : c.runs) all_ok = all_ok && r.ok;
    return all_ok ? 0 : 1;
}
