#!/usr/bin/env bash
# The main job: jbtree's three maps on a real ext4 image.
#   scripts/e2fs_demo.sh TOOL [WORKDIR]
# Generates a tree (directories, hard links, a sparse file, symlinks), makes
# an ext4 image of it with mkfs.ext4 -d, adds extended attributes with
# debugfs (one in the inode, one large enough to need its own block),
# stores the maps in the image with `jbtree-e2fs build`, then answers
# sample queries side by side with debugfs, checks, changes the filesystem
# behind the maps' back and shows check noticing. Exits non-zero if any
# step does not do what it says.
set -euo pipefail
tool=${1:?usage: e2fs_demo.sh TOOL [WORKDIR]}
work=${2:-$(mktemp -d /tmp/jbtree-demo-XXXXXX)}
mkdir -p "$work"
tree=$work/tree
img=$work/demo.img
rm -rf "$tree" "$img"

step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "a generated tree in $tree"
mkdir -p "$tree/home/ann/src" "$tree/home/bob" "$tree/etc" "$tree/var/log"
for i in $(seq 1 40); do head -c $((i * 1500)) /dev/urandom >"$tree/home/ann/src/file$i.c"; done
head -c 200000 /dev/urandom >"$tree/var/log/big.log"
printf 'ann:x:1000\nbob:x:1001\n' >"$tree/etc/passwd"
ln "$tree/etc/passwd" "$tree/home/bob/passwd.link"          # a hard link, three names in all
ln "$tree/etc/passwd" "$tree/home/ann/passwd.again"
dd if=/dev/urandom of="$tree/var/sparse.img" bs=4096 count=2 2>/dev/null
dd if=/dev/urandom of="$tree/var/sparse.img" bs=4096 seek=1000 count=2 conv=notrunc 2>/dev/null
ln -s ../etc/passwd "$tree/home/link-to-passwd"            # a fast symlink
ln -s "$(printf 'long/%.0s' $(seq 1 40))target" "$tree/home/long-link" # a slow one: it needs a block
find "$tree" | wc -l | xargs printf '%s files and directories\n'

step "mkfs.ext4 -d: a 64 MiB ext4 image (4 KiB blocks, metadata_csum, journal)"
show mkfs.ext4 -q -F -b 4096 -N 4096 -d "$tree" "$img" 64M
debugfs -w -R "ea_set /etc/passwd user.note small-value-in-the-inode" "$img" 2>/dev/null
head -c 3000 /dev/zero | tr '\0' 'x' >"$work/big-xattr"
debugfs -w -R "ea_set -f $work/big-xattr /home/ann/src/file1.c user.big" "$img" 2>/dev/null
echo "added two xattrs with debugfs (the 3000-byte one lives in its own block)"

step "jbtree-e2fs build: scan, build the three maps, store them in inode 5 through the image's journal"
show "$tool" build "$img"
step "e2fsck -fn still finds the filesystem clean"
show e2fsck -fn "$img"

ino() { debugfs -R "stat $1" "$img" 2>/dev/null | sed -n 's/^Inode: \([0-9]*\).*/\1/p'; }
first_block() { debugfs -R "blocks $1" "$img" 2>/dev/null | awk '{print $1}'; }
passwd=$(ino /etc/passwd)
data=$(first_block /var/log/big.log)
xblk=$(debugfs -R "stat /home/ann/src/file1.c" "$img" 2>/dev/null | sed -n 's/.*File ACL: \([0-9]*\).*/\1/p')
mapblk=$(first_block "<5>")
itable=$(dumpe2fs "$img" 2>/dev/null | sed -n 's/^  Inode table at \([0-9]*\)-.*/\1/p' | awk 'NR == 1')

step "owners of a data block, the xattr block, an inode table block, a block of the maps themselves"
show "$tool" owner "$img" "$data" "$xblk" "$itable" "$mapblk"
echo "-- debugfs icheck, for comparison (it names one inode per block, and none for static metadata):"
debugfs -R "icheck $data $xblk $itable $mapblk" "$img" 2>/dev/null

step "every path of /etc/passwd (inode $passwd: three hard links)"
show "$tool" paths "$img" "$passwd"
echo "-- debugfs ncheck, for comparison:"
debugfs -R "ncheck $passwd" "$img" 2>/dev/null

step "refcounts (ext4 has no reflink yet, so data blocks have one owner each)"
show "$tool" refcount "$img" "$data" "$xblk"

step "one query as JSON"
show "$tool" owner --json "$img" "$data"

step "jbtree-e2fs check: the stored trees verify, and agree with the filesystem both ways"
show "$tool" check "$img"

step "change the filesystem behind the maps' back (debugfs -w: a new hard link) ..."
show debugfs -w -R "ln /etc/passwd /home/bob/yet-another-name" "$img"
debugfs -w -R "sif /etc/passwd links_count 4" "$img" 2>/dev/null
echo "... and check notices: its cross-check finds the new name without a parent pointer. (debugfs allocated"
echo "nothing and left the superblock alone, so the build stamp still matches: only a full check sees this.)"
rc=0
show "$tool" check "$img" || rc=$?
if [ "$rc" -eq 0 ]; then
    echo "demo: check should have failed" >&2
    exit 1
fi
echo "(exit status $rc: not clean)"

step "build again: clean"
show "$tool" build "$img"
show "$tool" check "$img"
show "$tool" paths "$img" "$passwd"
show e2fsck -fn "$img"

printf '\ndemo done: image and tree in %s\n' "$work"
