// SPDX-License-Identifier: MIT
// bench/ab: two versions of the engine, absl::btree_map and (when
// bench/ab/run.sh found it) frozenca::BTreeMap, side by side in one process
// (bench/ab/run.sh builds it).
//
//   ab N ROUNDS
//
// N distinct random u64 keys (seed 42), inserted in one order, found in a
// second, erased in a third. Each round runs every container once, in an
// order that rotates from round to round, and prints ns per operation and
// the ratios B/A, A/absl and B/absl (and B/frozenca). Thread CPU time; the
// median lines at the end are the figures to quote.
#include <absl/container/btree_map.h>

#if AB_FROZENCA
#include <fc/btree.h>
#endif

#include "ab_clock.hpp"
#include "warm_heap.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

using keys = std::vector<std::uint64_t>;
void ab_run_a(const keys&, const keys&, const keys&, double*);
void ab_run_b(const keys&, const keys&, const keys&, double*);

// One peer's pass: Map is an ordered u64 -> V map with emplace, find and
// erase (V = u64, or int64_t for frozenca, whose pair type needs distinct
// key and value types).
template <class Map, class V>
static void ab_run_peer(const keys& ins, const keys& fnd, const keys& ers, double* out) {
    Map m;
    const double t0 = ab_now();
    for (std::uint64_t k : ins) m.emplace(std::uint64_t{k}, static_cast<V>(k));
    const double t1 = ab_now();
    std::uint64_t sum = 0;
    for (std::uint64_t k : fnd) sum += static_cast<std::uint64_t>(m.find(k)->second);
    const double t2 = ab_now();
    for (std::uint64_t k : ers) m.erase(k);
    const double t3 = ab_now();
    ab_keep(sum);
    out[0] = (t1 - t0) / static_cast<double>(ins.size());
    out[1] = (t2 - t1) / static_cast<double>(fnd.size());
    out[2] = (t3 - t2) / static_cast<double>(ers.size());
}
static void ab_run_absl(const keys& ins, const keys& fnd, const keys& ers, double* out) {
    ab_run_peer<absl::btree_map<std::uint64_t, std::uint64_t>, std::uint64_t>(ins, fnd, ers, out);
}

#if AB_FROZENCA
static void ab_run_frozenca(const keys& ins, const keys& fnd, const keys& ers, double* out) {
    ab_run_peer<frozenca::BTreeMap<std::uint64_t, std::int64_t>, std::int64_t>(ins, fnd, ers, out);
}
constexpr int containers = 4;
#else
constexpr int containers = 3;
#endif

static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char** argv) {
    const bool warm = benchio::keep_heap_warm();
    if (argc != 3) {
        std::fprintf(stderr, "usage: ab N ROUNDS\n");
        return 2;
    }
    const std::size_t n = std::strtoull(argv[1], nullptr, 10);
    const int rounds = std::atoi(argv[2]);
    if (n == 0 || rounds <= 0) {
        std::fprintf(stderr, "ab: N and ROUNDS must be positive\n");
        return 2;
    }
    std::mt19937_64 rng(42);
    keys ins(n);
    for (auto& k : ins) k = rng();
    std::sort(ins.begin(), ins.end());
    ins.erase(std::unique(ins.begin(), ins.end()), ins.end());
    std::shuffle(ins.begin(), ins.end(), rng);
    keys fnd = ins, ers = ins;
    std::shuffle(fnd.begin(), fnd.end(), rng);
    std::shuffle(ers.begin(), ers.end(), rng);
    std::printf("n=%zu, ns per op (insert find erase), thread CPU time, heap %s\n", ins.size(),
                warm ? "kept warm (bench/warm_heap.hpp)" : "glibc's defaults");
    std::vector<double> ratio[12]; // B/A, A/absl, B/absl, B/frozenca for each op
    for (int r = 0; r < rounds; ++r) {
        double a[3], b[3], x[3], f[3] = {1, 1, 1};
        for (int s = 0; s < containers; ++s) {
            const int which = (s + r) % containers;
            if (which == 0) ab_run_a(ins, fnd, ers, a);
            else if (which == 1) ab_run_b(ins, fnd, ers, b);
            else if (which == 2) ab_run_absl(ins, fnd, ers, x);
#if AB_FROZENCA
            else ab_run_frozenca(ins, fnd, ers, f);
#endif
        }
        for (int o = 0; o < 3; ++o) {
            ratio[o].push_back(b[o] / a[o]);
            ratio[3 + o].push_back(a[o] / x[o]);
            ratio[6 + o].push_back(b[o] / x[o]);
            ratio[9 + o].push_back(b[o] / f[o]);
        }
#if AB_FROZENCA
        std::printf("round %d  frozenca %5.0f %5.0f %5.0f | B/frozenca %.2f %.2f %.2f\n", r, f[0], f[1], f[2],
                    b[0] / f[0], b[1] / f[1], b[2] / f[2]);
#endif
        std::printf("round %d  A %5.0f %5.0f %5.0f | B %5.0f %5.0f %5.0f | absl %5.0f %5.0f %5.0f | "
                    "B/A %.2f %.2f %.2f | A/absl %.2f %.2f %.2f | B/absl %.2f %.2f %.2f\n",
                    r, a[0], a[1], a[2], b[0], b[1], b[2], x[0], x[1], x[2], b[0] / a[0], b[1] / a[1], b[2] / a[2],
                    a[0] / x[0], a[1] / x[1], a[2] / x[2], b[0] / x[0], b[1] / x[1], b[2] / x[2]);
        std::fflush(stdout);
    }
    std::printf("median   B/A %.2f %.2f %.2f | A/absl %.2f %.2f %.2f | B/absl %.2f %.2f %.2f\n", median(ratio[0]),
                median(ratio[1]), median(ratio[2]), median(ratio[3]), median(ratio[4]), median(ratio[5]),
                median(ratio[6]), median(ratio[7]), median(ratio[8]));
#if AB_FROZENCA
    std::printf("median   B/frozenca %.2f %.2f %.2f\n", median(ratio[9]), median(ratio[10]), median(ratio[11]));
#else
    std::printf("(frozenca not measured: ../shared/vendor/frozenca-BTree.tar.xz was not found)\n");
#endif
}
