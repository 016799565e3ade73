#!/bin/bash
# SPDX-License-Identifier: MIT
# One jbtree-bench run and everything bench/README.md quotes from it.
#
#   bash bench/run.sh BUILD_DIR OUT_DIR [REPETITIONS [BENCHMARK ARGS...]]
#
# Runs BUILD_DIR/bench/jbtree-bench (build it first: meson setup BUILD_DIR
# --buildtype=release -Db_ndebug=true -Dbench=enabled && meson compile -C
# BUILD_DIR bench/jbtree-bench) with REPETITIONS repetitions (default 5)
# and any further Google Benchmark arguments (e.g. --benchmark_filter=...),
# and writes into OUT_DIR:
#   run.json      Google Benchmark's JSON output
#   tables.md     bench/ratios.py run.json (the README's tables and targets)
#   *.svg         bench/plot.py (ns/item against n per operation, bytes/entry)
#   machine.txt   date, machine, compiler, commit and the exact command
# The environment passes through: JBTREE_BENCH_MAX_N (default 1e7),
# JBTREE_BENCH_CLOCK (cpu: thread CPU time), JBTREE_BENCH_NODE_SIZES,
# JBTREE_BENCH_HEAP. The plots need gnuplot (Debian: apt-get install
# gnuplot-nox); this script does not install it.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '3,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
build=$1
out=$2
reps=${3:-5}
shift $(( $# < 3 ? $# : 3 ))
here=$(cd "$(dirname "$0")" && pwd)
bin=$build/bench/jbtree-bench
[ -x "$bin" ] || { echo "run.sh: $bin not built" >&2; exit 1; }
command -v gnuplot > /dev/null || { echo "run.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
mkdir -p "$out"

cmd=("$bin" "--benchmark_repetitions=$reps" "--benchmark_report_aggregates_only=true"
     "--benchmark_out=$out/run.json" "--benchmark_out_format=json" "$@")
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "compiler: $(c++ --version | head -1)"
    echo "commit: $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$here/.." diff --quiet HEAD -- include bench 2>/dev/null || echo ' (with local changes to include/ or bench/)')"
    echo "environment: JBTREE_BENCH_MAX_N=${JBTREE_BENCH_MAX_N:-} JBTREE_BENCH_CLOCK=${JBTREE_BENCH_CLOCK:-} JBTREE_BENCH_NODE_SIZES=${JBTREE_BENCH_NODE_SIZES:-} JBTREE_BENCH_HEAP=${JBTREE_BENCH_HEAP:-}"
    echo "command: ${cmd[*]}"
} > "$out/machine.txt"
start=$(date +%s)
"${cmd[@]}"
{
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "duration: $(( $(date +%s) - start )) s"
} >> "$out/machine.txt"
python3 "$here/ratios.py" "$out/run.json" > "$out/tables.md"
python3 "$here/plot.py" "$out" "$out/run.json"
cat "$out/machine.txt"
