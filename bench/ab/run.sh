#!/bin/bash
# SPDX-License-Identifier: MIT
# Two engine versions side by side in one process, with absl::btree_map.
#
#   bash bench/ab/run.sh REV_A REV_B [N [ROUNDS]]
#
# REV_A and REV_B are git revisions of this repository, or "work" for the
# working tree. Each version's include/ is exported to a temporary
# directory and compiled into its own object (g++ -O3 -DNDEBUG, the engine's
# namespace renamed by -Djbtree=...), so one binary runs both on the same
# keys and the same heap, alternating, and prints per round and at the end
# the median ratios B/A, A/absl and B/absl for insert, find and erase of N
# random u64 keys (default 1000000, 5 rounds), and B/frozenca when
# ../shared/vendor/frozenca-BTree.tar.xz is there (unpacked into the
# temporary directory, as the bench build does). Use it to decide whether an
# engine change pays: separate runs of jbtree-bench move by 10-30% on a
# shared machine, the rounds here see the same conditions.
# Needs g++ and libabsl-dev.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
n=${3:-1000000}
rounds=${4:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

export_include() { # REV DIR
    mkdir -p "$2"
    if [ "$1" = work ]; then
        cp -r "$repo/include" "$2/"
    else
        git -C "$repo" archive "$1" include | tar -x -C "$2"
    fi
}
export_include "$1" "$tmp/a"
export_include "$2" "$tmp/b"

flags=(-std=c++20 -O3 -DNDEBUG -I"$here" -I"$here/..")
main_flags=(-DAB_FROZENCA=0)
frozenca_tar="$repo/../shared/vendor/frozenca-BTree.tar.xz"
if [ -f "$frozenca_tar" ] && tar -xJf "$frozenca_tar" -C "$tmp" 2> /dev/null && [ -d "$tmp/frozenca-BTree/include" ]; then
    main_flags=(-DAB_FROZENCA=1 -I"$tmp/frozenca-BTree/include")
fi
absl_cflags=$(pkg-config --cflags absl_btree 2> /dev/null || true)
absl_libs=$(pkg-config --libs absl_btree 2> /dev/null || true)
g++ "${flags[@]}" -I"$tmp/a/include" -Djbtree=jbtree_ab_a -DAB_RUN=ab_run_a -c "$here/engine_ops.cpp" -o "$tmp/a.o"
g++ "${flags[@]}" -I"$tmp/b/include" -Djbtree=jbtree_ab_b -DAB_RUN=ab_run_b -c "$here/engine_ops.cpp" -o "$tmp/b.o"
# shellcheck disable=SC2086 # pkg-config output is a list of flags
g++ "${flags[@]}" "${main_flags[@]}" $absl_cflags -c "$here/main.cpp" -o "$tmp/main.o"
# shellcheck disable=SC2086
g++ "$tmp/main.o" "$tmp/a.o" "$tmp/b.o" -o "$tmp/ab" $absl_libs
echo "A = $1, B = $2"
"$tmp/ab" "$n" "$rounds"
