#!/bin/bash
# SPDX-License-Identifier: MIT
# Instructions per operation, jbtree against its peers, counted by callgrind.
#
#   bash bench/callgrind.sh BUILD_DIR [N [CONTAINERS...]]
#
# Runs BUILD_DIR/bench/jbtree-bench-ops under valgrind's callgrind once per
# container and phase (insert N random u64 keys, find each, erase each;
# N defaults to 200000) with collection switched on only inside that
# phase's function, and prints one line per container: instructions per
# insert, find and erase (Ir / N). Containers default to jbtree, absl and
# frozenca (when jbtree-bench-ops was built with it). Unlike the times of
# jbtree-bench these counts are the same on a busy machine; they say how
# much work an operation is, not how long its cache misses take.
# Needs valgrind (apt-get install valgrind).
set -euo pipefail

if [ $# -lt 1 ]; then
    sed -n '3,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
bin=$1/bench/jbtree-bench-ops
n=${2:-200000}
shift $(( $# < 2 ? $# : 2 ))
[ -x "$bin" ] || { echo "callgrind.sh: $bin not built" >&2; exit 1; }
command -v valgrind > /dev/null || { echo "callgrind.sh: valgrind not found (apt-get install valgrind)" >&2; exit 1; }
containers=("$@")
if [ ${#containers[@]} -eq 0 ]; then
    containers=(jbtree absl)
    "$bin" frozenca 1 > /dev/null 2>&1 && containers+=(frozenca)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf '%-12s %10s %10s %10s   (instructions per operation, N = %s)\n' container insert find erase "$n"
for c in "${containers[@]}"; do
    line=$(printf '%-12s' "$c")
    for phase in insert find erase; do
        valgrind --tool=callgrind --toggle-collect="*phase_${phase}*" \
            --callgrind-out-file="$tmp/out" "$bin" "$c" "$n" > /dev/null 2> "$tmp/err" ||
            { cat "$tmp/err" >&2; exit 1; }
        line+=$(awk -v n="$n" '/Collected :/ {printf " %10.0f", $4 / n}' "$tmp/err")
    done
    echo "$line"
done
