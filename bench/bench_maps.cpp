// SPDX-License-Identifier: MIT
// jbtree benchmark: the filesystem maps against a linear scan of the same data.
//
// For n records (default 1e6 and 1e7), in memory (memory_storage, 4 KiB
// nodes, checksums off, null journal: the maps' own cost, no I/O):
//
//   owners   rmap::owners_of(b) for random blocks b, against a linear scan
//            of the same records (a vector of rmap_record in key order: the
//            "no back pointers" baseline, as debugfs icheck scans every
//            inode's block map) and against a full walk of the tree itself.
//   paths    parent_map::paths_of(ino) for random files, against the same
//            links as a directory-entry list (parent, child, name) searched
//            by linear scans, one per step up (as debugfs ncheck scans every
//            directory).
//   map/unmap, adjust
//            rmap map + unmap of a new owner on random ranges, and
//            refcount adjust +1 then -1 on random ranges: operations per second.
//   rebuild  refcount_map::rebuild_from_rmap over the whole rmap.
//   bytes    node bytes per record of each tree (stats()).
//
// The data: a synthetic filesystem. rmap: extents of 1..32 blocks laid out
// back to back, owners random among n/2 inodes, 10% of the extents shared
// by 2..4 owners (reflink). Parent pointers: a random recursive directory
// tree of n/16 directories (each under a random earlier one), the rest of
// the n links are files, 10% of them with a second hard link. Each tree is
// bulk-loaded at 90% fill (the refcount rebuild at its default 75%).
//
// Usage: jbtree-bench-maps [--n 1e6,1e7] [--queries 20000] [--scan-queries 10]
//        [--seed 42]
// Output: one table per n and a summary of ratios (scan time / jbtree time).

#include <jbtree/journal/null_journal.hpp>
#include <jbtree/maps/parent_map.hpp>
#include <jbtree/maps/refcount_map.hpp>
#include <jbtree/maps/rmap.hpp>
#include <jbtree/storage/memory_storage.hpp>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

using namespace jbtree;

namespace {

using S = memory_storage<>;
using J = null_journal<S>;
using rmap_t = rmap<S, J>;
using rc_t = refcount_map<S, J>;
using pm_t = parent_map<S, J>;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

[[noreturn]] void die(const char* what, errc e) {
    std::fprintf(stderr, "error: %s: %s\n", what, describe(e));
    std::exit(1);
}
void must(errc e, const char* what) {
    if (e != errc::ok) die(what, e);
}

std::vector<std::uint64_t> parse_list(const char* s) {
    std::vector<std::uint64_t> v;
    std::string x(s);
    std::size_t p = 0;
    while (p <= x.size()) {
        const std::size_t c = x.find(',', p);
        const std::string item = x.substr(p, c == std::string::npos ? std::string::npos : c - p);
        v.push_back(static_cast<std::uint64_t>(std::strtod(item.c_str(), nullptr)));
        if (c == std::string::npos) break;
        p = c + 1;
    }
    return v;
}

// ---- the rmap data --------------------------------------------------------------

std::vector<rmap_record> make_rmap_records(std::uint64_t n, std::mt19937_64& rng, std::uint64_t& blocks) {
    std::vector<rmap_record> v;
    v.reserve(n);
    const std::uint64_t inodes = n / 2 + 1;
    std::uint64_t p = 1000;
    while (v.size() < n) {
        const std::uint64_t len = 1 + rng() % 32;
        const unsigned owners = rng() % 10 == 0 ? 2 + static_cast<unsigned>(rng() % 3) : 1;
        std::uint64_t picked[4] = {};
        for (unsigned k = 0; k < owners && v.size() < n; ++k) {
            std::uint64_t o = 12 + rng() % inodes;
            bool dup = false;
            for (unsigned q = 0; q < k; ++q) dup = dup || picked[q] == o;
            if (dup) continue;
            picked[k] = o;
            v.push_back(rmap_record{p, len, o, rng() % 1000000, 0});
        }
        p += len;
    }
    std::sort(v.begin(), v.end(), [](const rmap_record& a, const rmap_record& b) {
        return rmap_traits::compare(a.key(), b.key()) < 0;
    });
    blocks = p;
    return v;
}

// ---- the parent pointer data ------------------------------------------------------

// "d12", "f7": built with snprintf (operator+ on std::string trips GCC 12's
// -Wrestrict false positive, bug 105651).
std::string tagged(char tag, std::uint64_t x) {
    char b[24];
    const int n = std::snprintf(b, sizeof b, "%c%" PRIu64, tag, x);
    return std::string(b, static_cast<std::size_t>(n));
}

struct link_rec {
    std::uint64_t child, parent;
    std::uint32_t hash, index;
    std::string name;
};

std::vector<link_rec> make_links(std::uint64_t n, std::mt19937_64& rng, std::uint64_t& dirs_out,
                                 std::uint64_t& first_file) {
    std::vector<link_rec> v;
    v.reserve(n);
    const std::uint64_t root = 2, dirs = std::max<std::uint64_t>(n / 16, 2);
    // Directories 100 .. 100+dirs-1 (100 is under the root).
    for (std::uint64_t i = 0; i < dirs && v.size() < n; ++i) {
        const std::uint64_t d = 100 + i, p = i == 0 ? root : 100 + rng() % i;
        v.push_back({d, p, 0, 0, tagged('d', i)});
    }
    first_file = 100 + dirs;
    for (std::uint64_t f = first_file; v.size() < n; ++f) {
        const std::uint64_t p = 100 + rng() % dirs;
        v.push_back({f, p, 0, 0, tagged('f', f)});
        if (rng() % 10 == 0 && v.size() < n) v.push_back({f, 100 + rng() % dirs, 0, 0, tagged('g', f)});
    }
    for (auto& l : v) l.hash = crc32c(l.name.data(), l.name.size());
    std::sort(v.begin(), v.end(), [](const link_rec& a, const link_rec& b) {
        return std::tie(a.child, a.parent, a.hash, a.name) < std::tie(b.child, b.parent, b.hash, b.name);
    });
    parent_map<memory_storage<>, null_journal<memory_storage<>>>::number_collisions(
        v.begin(), v.end(), [](link_rec& l) -> link_rec& { return l; }); // collision indexes
    dirs_out = dirs;
    return v;
}

// The baseline for paths: directory entries in directory order, searched
// by a full scan for each step up.
struct dirent_list {
    struct dirent {
        std::uint64_t parent, child;
        std::uint32_t name_off, name_len;
    };
    std::vector<dirent> e;
    std::string names;

    explicit dirent_list(const std::vector<link_rec>& links) {
        e.reserve(links.size());
        for (auto& l : links) {
            e.push_back({l.parent, l.child, static_cast<std::uint32_t>(names.size()),
                         static_cast<std::uint32_t>(l.name.size())});
            names += l.name;
        }
        std::sort(e.begin(), e.end(), [](const dirent& a, const dirent& b) { return a.parent < b.parent; });
    }
    // Every complete path of x, built by repeated scans; returns how many.
    std::uint64_t paths(std::uint64_t x, std::uint64_t root, std::string below, unsigned depth,
                        std::uint64_t& bytes) const {
        if (x == root) {
            bytes += below.size();
            return 1;
        }
        if (depth == 0) return 0;
        std::uint64_t n = 0;
        for (const dirent& d : e) // one full scan per step
            if (d.child == x) {
                std::string up(1, '/');
                up.append(names, d.name_off, d.name_len);
                up.append(below);
                n += paths(d.parent, root, std::move(up), depth - 1, bytes);
            }
        return n;
    }
};

struct row {
    std::string what;
    double jb = 0, scan = 0; // seconds per operation
    std::string note;
};

void print_rows(std::uint64_t n, const std::vector<row>& rows) {
    std::printf("\n| n = %.0e | jbtree | linear scan | scan / jbtree | |\n|---|---:|---:|---:|---|\n", double(n));
    for (const row& r : rows) {
        auto fmt = [](double s) {
            char b[32];
            if (s <= 0) std::snprintf(b, sizeof b, "-");
            else if (s < 1e-6) std::snprintf(b, sizeof b, "%.0f ns", s * 1e9);
            else if (s < 1e-3) std::snprintf(b, sizeof b, "%.1f us", s * 1e6);
            else std::snprintf(b, sizeof b, "%.1f ms", s * 1e3);
            return std::string(b);
        };
        if (r.scan > 0)
            std::printf("| %s | %s | %s | %.0f | %s |\n", r.what.c_str(), fmt(r.jb).c_str(), fmt(r.scan).c_str(),
                        r.scan / r.jb, r.note.c_str());
        else std::printf("| %s | %s | - | - | %s |\n", r.what.c_str(), fmt(r.jb).c_str(), r.note.c_str());
    }
    std::fflush(stdout);
}

void run(std::uint64_t n, std::uint64_t queries, std::uint64_t scan_queries, std::uint64_t seed) {
    std::printf("== n = %" PRIu64 "\n", n);
    std::fflush(stdout);
    std::mt19937_64 rng(seed);
    S s({4096, false, 0});
    J j(s);
    std::vector<row> rows;

    // ---- rmap -------------------------------------------------------------------
    std::uint64_t blocks = 0;
    auto t0 = clock_type::now();
    const std::vector<rmap_record> recs = make_rmap_records(n, rng, blocks);
    auto rmr = rmap_t::create(s, j, 1);
    if (!rmr) die("rmap create", rmr.error());
    rmap_t& rm = *rmr;
    {
        auto h = j.start(unlimited_credits);
        std::size_t i = 0;
        must(rm.tree().bulk_load(*h, recs.size(),
                                 [&](rmap_key& k, rmap_value& v) {
                                     k = recs[i].key();
                                     v = recs[i].value();
                                     ++i;
                                     return true;
                                 },
                                 90),
             "rmap bulk_load");
        must(j.stop(*h), "stop");
    }
    const double rmap_build = seconds_since(t0);
    // owners_of
    std::vector<std::uint64_t> probes(queries);
    for (auto& b : probes) b = 1000 + rng() % (blocks - 1000);
    std::uint64_t found = 0;
    t0 = clock_type::now();
    for (std::uint64_t b : probes)
        must(rm.owners_of(b, [&](const rmap_record&) {
            ++found;
            return true;
        }),
             "owners_of");
    const double owners_jb = seconds_since(t0) / double(queries);
    std::uint64_t found_scan = 0;
    t0 = clock_type::now();
    for (std::uint64_t q = 0; q < scan_queries; ++q) {
        const std::uint64_t b = probes[q];
        for (const rmap_record& r : recs) found_scan += r.start <= b && b <= r.last();
    }
    const double owners_vec = seconds_since(t0) / double(scan_queries);
    std::uint64_t found_walk = 0;
    t0 = clock_type::now();
    for (std::uint64_t q = 0; q < scan_queries; ++q) {
        const std::uint64_t b = probes[q];
        must(rm.for_each([&](const rmap_record& r) {
            found_walk += r.start <= b && b <= r.last();
            return true;
        }),
             "rmap walk");
    }
    const double owners_walk = seconds_since(t0) / double(scan_queries);
    // Same answers for the probes both did.
    std::uint64_t found_first = 0;
    for (std::uint64_t q = 0; q < scan_queries; ++q)
        must(rm.owners_of(probes[q], [&](const rmap_record&) {
            ++found_first;
            return true;
        }),
             "owners_of");
    if (found_first != found_scan || found_first != found_walk) {
        std::fprintf(stderr, "owners_of disagrees with the scans: %" PRIu64 " vs %" PRIu64 " / %" PRIu64 "\n",
                     found_first, found_scan, found_walk);
        std::exit(1);
    }
    char note[160];
    std::snprintf(note, sizeof note, "%.2f owners per block; scan of a vector of records", double(found) / double(queries));
    rows.push_back({"owners of a block (rmap)", owners_jb, owners_vec, note});
    rows.push_back({"owners of a block (rmap), scan = walk of the tree", owners_jb, owners_walk, "same data, no index"});

    // map + unmap of a new owner, random ranges
    const std::uint64_t mops = std::min<std::uint64_t>(queries, 200000);
    t0 = clock_type::now();
    for (std::uint64_t i = 0; i < mops; ++i) {
        const std::uint64_t start = 1000 + rng() % (blocks - 1100), len = 1 + rng() % 16, owner = (1ull << 40) + i;
        auto h = j.start(unlimited_credits);
        must(rm.map(*h, start, len, owner, 0, 0), "map");
        must(rm.unmap(*h, start, len, owner, 0), "unmap");
        must(j.stop(*h), "stop");
    }
    const double mapunmap = seconds_since(t0) / double(2 * mops);
    rows.push_back({"rmap map or unmap (1..16 blocks)", mapunmap, 0, ""});

    // ---- refcount -----------------------------------------------------------------
    auto rcr = rc_t::create(s, j, 2);
    if (!rcr) die("refcount create", rcr.error());
    rc_t& rc = *rcr;
    std::vector<std::uint64_t> ends(64);
    const sweep_scratch sc{ends.data(), ends.size()};
    auto src = rm.extents();
    t0 = clock_type::now();
    auto cnt = rc_t::rebuild_count(src, sc);
    if (!cnt) die("rebuild_count", cnt.error());
    {
        auto h = j.start(unlimited_credits);
        must(rc.rebuild_from_rmap(*h, src, sc, *cnt), "rebuild_from_rmap");
        must(j.stop(*h), "stop");
    }
    const double rebuild = seconds_since(t0);
    t0 = clock_type::now();
    for (std::uint64_t i = 0; i < mops; ++i) {
        const std::uint64_t start = 1000 + rng() % (blocks - 1100), len = 1 + rng() % 32;
        auto h = j.start(unlimited_credits);
        auto a = rc.adjust(*h, start, len, +1);
        if (!a || !a->done) die("adjust +1", a ? errc::range : a.error());
        auto b = rc.adjust(*h, start, len, -1);
        if (!b || !b->done) die("adjust -1", b ? errc::range : b.error());
        must(j.stop(*h), "stop");
    }
    const double adjust = seconds_since(t0) / double(2 * mops);
    rows.push_back({"refcount adjust +1 or -1 (1..32 blocks)", adjust, 0, ""});

    // ---- parent pointers ----------------------------------------------------------------
    std::uint64_t dirs = 0, first_file = 0;
    t0 = clock_type::now();
    const std::vector<link_rec> links = make_links(n, rng, dirs, first_file);
    auto pmr = pm_t::create(s, j, 3);
    if (!pmr) die("parent map create", pmr.error());
    pm_t& pm = *pmr;
    {
        auto h = j.start(unlimited_credits);
        std::size_t i = 0;
        must(pm.tree().bulk_load(*h, links.size(),
                                 [&](parent_key& k, parent_record& v) {
                                     const link_rec& l = links[i++];
                                     k = parent_key{l.child, l.parent, l.hash, l.index};
                                     v.parent_gen = 1;
                                     v.name_len = static_cast<std::uint16_t>(l.name.size());
                                     std::memcpy(v.name, l.name.data(), l.name.size());
                                     return true;
                                 },
                                 90),
             "parent bulk_load");
        must(j.stop(*h), "stop");
    }
    const double pm_build = seconds_since(t0);
    const dirent_list dl(links);
    const std::uint64_t files = links.back().child - first_file + 1;
    std::vector<std::uint64_t> inos(queries);
    for (auto& x : inos) x = first_file + rng() % files;
    std::vector<unsigned char> buf(pm_t::path_buffer_size(64));
    std::uint64_t paths = 0, path_bytes = 0, depth_sum = 0;
    t0 = clock_type::now();
    for (std::uint64_t x : inos) {
        auto r = pm.paths_of(x, 2, 64, buf.data(), buf.size(), [&](const path_event& e) {
            path_bytes += e.size;
            depth_sum += e.depth;
        });
        if (!r) die("paths_of", r.error());
        paths += r->complete;
    }
    const double paths_jb = seconds_since(t0) / double(queries);
    std::uint64_t paths_scan = 0, bytes_scan = 0, paths_first = 0;
    t0 = clock_type::now();
    for (std::uint64_t q = 0; q < scan_queries; ++q) paths_scan += dl.paths(inos[q], 2, "", 64, bytes_scan);
    const double paths_lin = seconds_since(t0) / double(scan_queries);
    for (std::uint64_t q = 0; q < scan_queries; ++q) {
        auto r = pm.paths_of(inos[q], 2, 64, buf.data(), buf.size(), [](const path_event&) {});
        if (!r) die("paths_of", r.error());
        paths_first += r->complete;
    }
    if (paths_first != paths_scan) {
        std::fprintf(stderr, "paths_of disagrees with the scan: %" PRIu64 " vs %" PRIu64 "\n", paths_first, paths_scan);
        std::exit(1);
    }
    std::snprintf(note, sizeof note, "%.2f paths per inode, %.1f components each; scan of a dirent list per step",
                  double(paths) / double(queries), paths ? double(depth_sum) / double(paths) : 0.0);
    rows.push_back({"paths of an inode (parent pointers)", paths_jb, paths_lin, note});

    // ---- bytes per record ---------------------------------------------------------------------
    auto bytes = [](auto& m) {
        auto st = m.stats();
        if (!st) die("stats", st.error());
        return std::make_pair(double(st->bytes()) / double(st->records), st->height);
    };
    const auto br = bytes(rm), bc = bytes(rc), bp = bytes(pm);
    print_rows(n, rows);
    std::printf("\nbuild: rmap %" PRIu64 " records bulk-loaded in %.2f s (with generating them); refcount rebuilt from "
                "the rmap sweep in %.2f s (%" PRIu64 " records); parent map %" PRIu64 " links (%" PRIu64
                " directories) in %.2f s\n",
                rm.size(), rmap_build, rebuild, rc.size(), pm.size(), dirs, pm_build);
    std::printf("bytes per record (node bytes / records): rmap %.2f (height %u, 36-byte records at 90%% fill), "
                "refcount %.2f (height %u, 16-byte records at 75%%), parent pointers %.2f (height %u, names of "
                "%.1f bytes on average)\n",
                br.first, br.second, bc.first, bc.second, bp.first, bp.second,
                double(dl.names.size()) / double(links.size()));
    std::fflush(stdout);
}

} // namespace

int main(int argc, char** argv) {
    std::vector<std::uint64_t> sizes{1000000, 10000000};
    std::uint64_t queries = 20000, scan_queries = 10, seed = 42;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc) {
            std::fprintf(stderr, "usage: %s [--n 1e6,1e7] [--queries Q] [--scan-queries Q] [--seed S]\n", argv[0]);
            return 2;
        }
        const char* v = argv[++i];
        if (a == "--n") sizes = parse_list(v);
        else if (a == "--queries") queries = static_cast<std::uint64_t>(std::strtod(v, nullptr));
        else if (a == "--scan-queries") scan_queries = static_cast<std::uint64_t>(std::strtod(v, nullptr));
        else if (a == "--seed") seed = std::strtoull(v, nullptr, 10);
        else {
            std::fprintf(stderr, "unknown option %s\n", a.c_str());
            return 2;
        }
    }
    if (queries == 0 || scan_queries == 0 || scan_queries > queries) {
        std::fprintf(stderr, "need 0 < scan-queries <= queries\n");
        return 2;
    }
    for (std::uint64_t n : sizes) {
        if (n < 100) {
            std::fprintf(stderr, "n must be at least 100\n");
            return 2;
        }
        run(n, queries, scan_queries, seed);
    }
    return 0;
}
