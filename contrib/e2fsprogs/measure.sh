#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The patched e2fsprogs' figures (bench/README.md, "The patched e2fsprogs"):
#
#   bash contrib/e2fsprogs/measure.sh [BUILD_DIR [FILES [RUNS]]]
#
# BUILD_DIR (default build/e2fsprogs-measure) gets the patched e2fsprogs
# (scripts/e2fsprogs.sh) and a stock one configured and built the same way
# but without --with-jbtree; FILES (default 150000) files are made into a
# mkfs.ext4 -d image, copied, and the copy given maps by jbtree-e2fs. Then:
#   - e2fsck -fn with maps and without (the patched e2fsck), and the stock
#     e2fsck without: median wall time of RUNS runs (default 9) after one
#     warm-up, hot cache;
#   - debugfs: one `owners B` / `paths I` command against one `icheck B` /
#     `ncheck I`, per command in a command file of many (the start-up of
#     debugfs, measured alone, taken off), and 1,000 blocks in one command;
#   - size(1) of the patched and stock debugfs and e2fsck;
#   - the lines of each patch (diffstat).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$root/build/e2fsprogs-measure}
files=${2:-150000}
runs=${3:-9}
tarball=${E2FSPROGS_TARBALL:-$root/../shared/vendor/e2fsprogs-1.47.4.tar.xz}
mkdir -p "$build"
build=$(cd "$build" && pwd)

bash "$root/scripts/e2fsprogs.sh" "$build/patched" >&2
patched=$build/patched/e2fsprogs-1.47.4
tool=$build/patched/jbtree-e2fs
stock=$build/stock/e2fsprogs-1.47.4
if [[ ! -x $stock/e2fsck/e2fsck || ! -x $stock/debugfs/debugfs ]]; then
    echo "measure.sh: building stock e2fsprogs 1.47.4 in $build/stock" >&2
    rm -rf "$build/stock"
    mkdir -p "$build/stock"
    tar -C "$build/stock" -xf "$tarball"
    (
        cd "$stock"
        ./configure CXX=g++ --disable-nls --disable-fuse2fs --disable-defrag --disable-imager \
            --disable-resizer --disable-uuidd --disable-e2initrd-helper --disable-fsck \
            --disable-e2scrub --without-libarchive
        make -j"$(nproc)" top-deps
        make -j"$(nproc)" libs
        make -j"$(nproc)" -C e2fsck e2fsck
        make -j"$(nproc)" -C debugfs debugfs
    ) >"$build/stock.log" 2>&1 || { tail -n 20 "$build/stock.log" >&2; exit 1; }
fi

img=$build/nomaps.img
mimg=$build/maps.img
if [[ ! -f $mimg || $(cat "$build/files" 2>/dev/null || true) != "$files" ]]; then
    echo "measure.sh: making an image of $files files" >&2
    rm -rf "$build/src"
    python3 - "$build/src" "$files" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 1000
for i in range(n):
    d, f = divmod(i, per)
    dp = os.path.join(root, 'd%04d' % d, 's%d' % (d % 5))
    if f == 0:
        os.makedirs(dp)
    p = os.path.join(os.path.dirname(dp) if f % 2 else dp, 'f%d' % f)
    with open(p, 'w') as fh:
        fh.write('x' * (i % 40000 + 4096) if i % 50 == 0 else 'file %d\n' % i)
    if i % 20 == 0 and d > 0:
        os.link(p, os.path.join(root, 'd%04d' % (d - 1), 'h%d' % i))
EOF
    inodes=$((files + files / 4 + 1000))
    mb=$((files * 5 / 1000 + 200))
    mkfs.ext4 -q -F -b 4096 -N "$inodes" -d "$build/src" "$img" "${mb}M" >/dev/null
    rm -rf "$build/src"
    cp "$img" "$mimg"
    "$tool" build "$mimg" >&2
    echo "$files" >"$build/files"
fi

# Median wall time (seconds) of RUNS runs of a command, after one warm-up.
median() {
    local t0 t1 i
    "$@" >/dev/null 2>&1 || true
    for ((i = 0; i < runs; i++)); do
        t0=$(date +%s.%N)
        "$@" >/dev/null 2>&1 || true
        t1=$(date +%s.%N)
        echo "$t1 - $t0" | bc
    done | sort -n | awk '{ v[NR] = $1 } END { printf "%.4f\n", v[int((NR + 1) / 2)] }'
}
ratio() { echo "scale=3; $1 / $2" | bc; }

echo "e2fsck -fn, $(dumpe2fs -h "$mimg" 2>/dev/null | awk -F: '/^Inode count/ { gsub(/ /, "", $2); i = $2 } /^Free inodes/ { gsub(/ /, "", $2); f = $2 } END { print i - f }') inodes in use, median of $runs runs:"
with=$(median "$patched/e2fsck/e2fsck" -fn "$mimg")
without=$(median "$patched/e2fsck/e2fsck" -fn "$img")
stockt=$(median "$stock/e2fsck/e2fsck" -fn "$img")
echo "  patched, maps present   $with s"
echo "  patched, maps absent    $without s"
echo "  stock, no maps          $stockt s"
echo "  maps present / absent   $(ratio "$with" "$without")"
echo "  patched / stock (none)  $(ratio "$without" "$stockt")"

nblocks=$(dumpe2fs -h "$mimg" 2>/dev/null | awk -F: '/^Block count/ { gsub(/ /, "", $2); print $2 }')
awk -v n="$nblocks" 'BEGIN { srand(7); for (i = 0; i < 200; i++) print "owners " int(1000 + rand() * (n / 2)) }' >"$build/owners.cmd"
awk -v n="$nblocks" 'BEGIN { srand(7); for (i = 0; i < 10; i++) print "icheck " int(1000 + rand() * (n / 2)) }' >"$build/icheck.cmd"
awk -v n="$files" 'BEGIN { srand(7); for (i = 0; i < 200; i++) print "paths " int(12 + rand() * n) }' >"$build/paths.cmd"
awk -v n="$files" 'BEGIN { srand(7); for (i = 0; i < 10; i++) print "ncheck " int(12 + rand() * n) }' >"$build/ncheck.cmd"
awk -v n="$nblocks" 'BEGIN { srand(9); printf "owners"; for (i = 0; i < 1000; i++) printf " %d", int(1000 + rand() * (n / 2)); print "" }' >"$build/owners1000.cmd"
sed 's/^owners/icheck/' "$build/owners1000.cmd" >"$build/icheck1000.cmd"
echo "show_debugfs_params" >"$build/none.cmd"
d=$patched/debugfs/debugfs
base=$(median "$d" -f "$build/none.cmd" "$mimg")
per() { echo "scale=3; ($1 - $base) * 1000 / $2" | bc; }
o=$(median "$d" -f "$build/owners.cmd" "$mimg")
i=$(median "$d" -f "$build/icheck.cmd" "$mimg")
p=$(median "$d" -f "$build/paths.cmd" "$mimg")
n=$(median "$d" -f "$build/ncheck.cmd" "$mimg")
o1k=$(median "$d" -f "$build/owners1000.cmd" "$mimg")
i1k=$(median "$d" -f "$build/icheck1000.cmd" "$mimg")
echo "debugfs, per command (start-up of $base s taken off), ms:"
echo "  owners B  $(per "$o" 200)    icheck B  $(per "$i" 10)"
echo "  paths I   $(per "$p" 200)    ncheck I  $(per "$n" 10)"
echo "  1,000 blocks in one command: owners $(per "$o1k" 1)    icheck $(per "$i1k" 1)"

echo "size(1), text bytes (patched / stock):"
for prog in debugfs/debugfs e2fsck/e2fsck; do
    a=$(size "$patched/$prog" | awk 'NR == 2 { print $1 }')
    b=$(size "$stock/$prog" | awk 'NR == 2 { print $1 }')
    echo "  $(basename "$prog")  $a / $b  (+$((a - b)), x$(ratio "$a" "$b"))"
done
echo "patches:"
for p in "$root"/contrib/e2fsprogs/*.patch; do
    echo "  $(basename "$p"): $(grep -E '^ [0-9]+ files? changed' "$p")"
done
