#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The scale benchmark (issue 15 item 4): a generated ext4 image with FILES
# files (default 10 million; bench/scale/gen_ext4.cpp), then, on the same
# image, page cache hot:
#   e2fsck -fn             elapsed time and peak RSS (twice: the first run warms the cache)
#   jbtree-e2fs build      elapsed time and peak RSS (a first build, then a rebuild)
#   jbtree-e2fs check      elapsed time and peak RSS
#   map size               records and tree blocks (bytes per rmap record)
#   queries                jbtree-bench-e2fs --image: owner / paths latency
#                          (in process and one-shot) against debugfs
#
#   bash bench/scale/run.sh BUILD_DIR [FILES] [WORK_DIR]
#
# BUILD_DIR: a release build with bench enabled (meson setup BUILD_DIR
# --buildtype=release -Db_ndebug=true -Dbench=enabled -Dtool=enabled).
# WORK_DIR (default /var/tmp/jbtree-scale) keeps the generated image (sparse:
# about 300 bytes of disk per file) for the next run. Needs GNU time
# (/usr/bin/time, Debian package `time`).
set -euo pipefail
build=$1
files=${2:-10000000}
work=${3:-/var/tmp/jbtree-scale}
gen=$build/bench/scale/jbtree-gen-ext4
tool=$build/tools/jbtree-e2fs
bench=$build/bench/jbtree-bench-e2fs
for x in "$gen" "$tool" "$bench" /usr/bin/time; do
    [ -x "$x" ] || { echo "run.sh: $x not found (build it; GNU time: apt-get install time)" >&2; exit 1; }
done
mkdir -p "$work"
img=$work/scale-$files.img
out=$work/results-$files.txt
measure() { # measure LABEL COMMAND...: elapsed seconds and peak RSS into $out
    local label=$1
    shift
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" > "$work/last.log" 2>&1 || {
        echo "run.sh: $label failed:" >&2
        tail -20 "$work/last.log" >&2
        exit 1
    }
    read -r secs kb < "$work/time.txt"
    printf '%-28s %9.1f s  %8.0f MiB\n' "$label" "$secs" "$((kb / 1024))" | tee -a "$out"
}

: > "$out"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "commit: $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "command: bash bench/scale/run.sh $build $files $work"
} | tee -a "$out"
if [ ! -f "$img.done" ]; then
    rm -f "$img" "$img.done"
    # Files average about 64 blocks: 80 per file leaves room (sparse).
    truncate -s $(((files * 80 + 1048576) * 4096)) "$img"
    mkfs.ext4 -q -F -b 4096 -N $((files + files / 500 + 10000)) -E nodiscard "$img"
    measure "generate ($files files)" "$gen" "$img" --files "$files" --per-dir 1000 --seed 1
    cat "$work/last.log" | tee -a "$out"
    touch "$img.done"
else
    echo "image: $img (generated before; remove $img.done to make it again)" | tee -a "$out"
    "$tool" build "$img" > /dev/null 2>&1 || true # leave it as a later run found it: with maps
fi
dumpe2fs -h "$img" 2> /dev/null | grep -E '^(Inode count|Free inodes|Block count|Free blocks):' | tee -a "$out"
measure "e2fsck -fn (cold)" e2fsck -fn "$img"
measure "e2fsck -fn" e2fsck -fn "$img"
measure "jbtree-e2fs build" "$tool" build "$img"
cat "$work/last.log" | tee -a "$out"
measure "jbtree-e2fs build (again)" "$tool" build "$img"
measure "e2fsck -fn (with maps)" e2fsck -fn "$img"
measure "jbtree-e2fs check" "$tool" check "$img"
cat "$work/last.log" | tee -a "$out"
# In-process queries in thread CPU time (JBTREE_BENCH_CLOCK=cpu): they do
# no I/O once cached, and wall time on a shared machine counts other jobs.
measure "queries (jbtree-bench-e2fs)" env JBTREE_BENCH_CLOCK="${JBTREE_BENCH_CLOCK:-cpu}" "$bench" --image "$img" --reps 1 --samples 7
grep -E 'queries|owner of|paths of|debugfs /' "$work/last.log" | tee -a "$out"
echo "results: $out"
