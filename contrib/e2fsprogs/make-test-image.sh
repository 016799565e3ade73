#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Make the image of the patch series' e2fsprogs tests
# (tests/f_jbtree_clean/image.gz; the other jbtree tests derive theirs from it).
#
#   bash contrib/e2fsprogs/make-test-image.sh JBTREE_E2FS OUT.img.gz
#
# JBTREE_E2FS: the jbtree-e2fs tool (bash scripts/demo.sh or meson with
# -Dtool=enabled builds it). Needs Debian's e2fsprogs (mkfs.ext4, tune2fs,
# debugfs, e2fsck).
#
# The image (8 MiB, 4 KiB blocks, metadata_csum) holds what pass 1 and 2
# of e2fsck hand to the maps: block-mapped files (made without `extents`,
# which is turned on afterwards), one with an indirect block; extent-mapped
# files written by debugfs afterwards, a sparse one with an extent tree
# of depth 1 (an index block); hard links across directories; a symlink;
# an extended attribute block; then the maps, built by jbtree-e2fs.
set -euo pipefail

tool=${1:?usage: make-test-image.sh JBTREE_E2FS OUT.img.gz}
out=${2:?usage: make-test-image.sh JBTREE_E2FS OUT.img.gz}
tool=$(cd "$(dirname "$tool")" && pwd)/$(basename "$tool")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export E2FSPROGS_FAKE_TIME=1700000000 # mkfs/tune2fs/debugfs timestamps (e2fsprogs' own hook)

src=$work/src
mkdir -p "$src/a/b/c" "$src/d" "$src/lost+found-not"
for i in $(seq 1 12); do printf 'file %d\n' "$i" >"$src/a/f$i"; done
for i in $(seq 1 6); do printf 'deep %d\n' "$i" >"$src/a/b/c/g$i"; done
# 100 KiB: 25 blocks, more than the 12 direct ones: an indirect block.
awk 'BEGIN { for (i = 0; i < 102400 / 16; i++) printf "%015d\n", i }' >"$src/d/big"
ln "$src/a/f1" "$src/d/hard1"
ln "$src/a/f1" "$src/a/b/hard2"
ln -s /a/f2 "$src/d/sym"
rmdir "$src/lost+found-not"

img=$work/img
mkfs.ext4 -q -F -b 4096 -O ^extents,^64bit -U 6b33f586-a183-4e3f-9a0b-4d4e30e5b2a1 \
    -E hash_seed=8a5ab7f5-0f1e-4b8d-9d0a-2d1b5f1c4e33 -d "$src" "$img" 8M
tune2fs -O extents "$img" >/dev/null

# Extent-mapped files written afterwards: a sparse file of 8 pieces (more
# extents than the inode holds: a tree of depth 1), a plain one.
awk 'BEGIN { for (i = 0; i < 4096 / 16; i++) printf "%015d\n", i }' >"$work/piece"
: >"$work/sparse"
for i in 0 2 4 6 8 10 12 14; do
    dd if="$work/piece" of="$work/sparse" bs=4096 seek="$i" conv=notrunc status=none
done
printf 'an extent-mapped file\n' >"$work/plain"
awk 'BEGIN { for (i = 0; i < 2000; i++) printf "v" }' >"$work/xattr"
debugfs -w -f - "$img" >/dev/null 2>&1 <<EOF
mkdir /e
write $work/sparse /e/sparse
write $work/plain /e/plain
ea_set -f $work/xattr /e/plain user.big
EOF
e2fsck -fy "$img" >/dev/null 2>&1 || true # the link counts debugfs left as they are
e2fsck -fn "$img" >/dev/null || { echo "make-test-image.sh: the image is not clean" >&2; exit 1; }
"$tool" build "$img" >/dev/null
"$tool" check "$img" >/dev/null
gzip -9n <"$img" >"$out"
echo "make-test-image.sh: $out ($(stat -c %s "$out") bytes)"
