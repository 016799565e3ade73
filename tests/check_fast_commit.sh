#!/bin/bash
# Fast-commit replay: `jbtree-e2fs replay` against e2fsck -E journal_only -y
# on (a) e2fsprogs' j_recover_fast_commit image (from the vendor tarball),
# (b) images the kernel writes: mkfs.ext4 -O fast_commit (4 KiB and 1 KiB
# blocks, with and without metadata_csum), a seeded workload with fsync (a
# fast commit each), a power-cut copy of the loop device's backing file
# while mounted; (c) those images with bytes of their fast-commit area
# flipped. Every replayed image must equal e2fsck's but for s_wtime,
# s_kbytes_written and the superblock checksum (e2fsck's own run stamps
# them); a journal jbtree refuses must be left byte for byte untouched.
# Then e2fsck -fn must find jbtree's image clean (when e2fsck's is).
#
#   check_fast_commit.sh JBTREE_E2FS SOURCE_ROOT [SEEDS]
set -u
tool=$1
root=$2
seeds=${3:-${JBTREE_FC_SEEDS:-2}}
tarball=$root/../shared/vendor/e2fsprogs-1.47.4.tar.xz

command -v e2fsck >/dev/null || { echo "SKIP: e2fsck not installed"; exit 77; }
tmp=$(mktemp -d /tmp/jbtree-fc-XXXXXX)
mnt=$tmp/mnt
cleanup() {
    mountpoint -q "$mnt" 2>/dev/null && umount "$mnt"
    rm -rf "$tmp"
}
trap cleanup EXIT

same=0 refused=0 failed=0 skipped=""

# Bytes (1-based, cmp -l) e2fsck stamps from its own run: s_wtime,
# s_kbytes_written, the ext4 superblock checksum.
stamped() { awk '!(($1>=1073&&$1<=1076)||($1>=1401&&$1<=1408)||($1>=2045&&$1<=2048))'; }

# compare NAME IMAGE: replay one copy with jbtree, one with e2fsck.
compare() {
    local name=$1 img=$2
    cp --sparse=always "$img" "$tmp/ours" && cp --sparse=always "$img" "$tmp/theirs"
    local out rc erc diffs
    out=$("$tool" replay "$tmp/ours" 2>&1); rc=$?
    e2fsck -E journal_only -y "$tmp/theirs" >/dev/null 2>&1; erc=$?
    if grep -q "journal refused" <<<"$out"; then
        if cmp -s "$img" "$tmp/ours"; then
            refused=$((refused + 1)); echo "$name: refused, untouched: $out"
        else
            failed=$((failed + 1)); echo "FAIL $name: refused but the image changed: $out"
        fi
        return
    fi
    diffs=$(cmp -l "$tmp/theirs" "$tmp/ours" | stamped | wc -l)
    if [ "$diffs" -ne 0 ]; then
        failed=$((failed + 1))
        echo "FAIL $name: jbtree (exit $rc: $out) and e2fsck (exit $erc) differ in $diffs bytes:"
        cmp -l "$tmp/theirs" "$tmp/ours" | stamped | head -5
        return
    fi
    if e2fsck -fn "$tmp/theirs" >/dev/null 2>&1 && ! e2fsck -fn "$tmp/ours" >/dev/null 2>&1; then
        failed=$((failed + 1)); echo "FAIL $name: e2fsck -fn finds jbtree's image unclean"; return
    fi
    same=$((same + 1)); echo "$name: identical to e2fsck's (jbtree exit $rc: $out)"
}

# Flip bytes of the fast-commit area's first blocks: damage NAME IMAGE.
damage() {
    local name=$1 img=$2 seed=$3
    local info jstart first bs maxlen nfc
    bs=$(dumpe2fs -h "$img" 2>/dev/null | awk -F: '/^Block size/{print $2+0}')
    # The journal superblock, then the area's first block (physical).
    jstart=$(debugfs -R "bmap <8> 0" "$img" 2>/dev/null)
    info=$(dd if="$img" bs="$bs" skip="$jstart" count=1 2>/dev/null | od -An -tx1 -v | tr -d ' \n')
    maxlen=$((16#${info:32:8}))
    nfc=$((16#${info:168:8})); [ "$nfc" -eq 0 ] && nfc=256
    first=$(debugfs -R "bmap <8> $((maxlen - nfc + 1))" "$img" 2>/dev/null)
    # HEAD tag, length, features, tid; a byte inside; the end of the first
    # block (a TAIL's tid and crc when the first fast commit fills it); the
    # second and third blocks; then positions drawn from the seed.
    local cases=("0 1" "2 1" "4 1" "12 1" "$((bs / 2)) 3" "$((bs - 6)) 2" "$((bs + 2)) 1" "$((bs + 9)) 1"
                 "$((2 * bs + 2)) 1") i=0 k
    RANDOM=$seed
    for k in 1 2 3 4 5; do cases+=("$((RANDOM % (3 * bs))) 1"); done
    for c in "${cases[@]}"; do
        set -- $c
        cp --sparse=always "$img" "$tmp/damaged"
        printf "\\x$(printf %02x $(((seed * 37 + i * 11) % 255 + 1)))" |
            dd of="$tmp/damaged" bs=1 seek=$((first * bs + $1)) count=1 conv=notrunc 2>/dev/null
        compare "$name+flip@$1" "$tmp/damaged"
        i=$((i + 1))
    done
}

# (a) e2fsprogs' test image.
if [ -f "$tarball" ]; then
    tar -xJOf "$tarball" e2fsprogs-1.47.4/tests/j_recover_fast_commit/image.gz | gzip -dc >"$tmp/e2fsprogs.img"
    compare j_recover_fast_commit "$tmp/e2fsprogs.img"
    damage j_recover_fast_commit "$tmp/e2fsprogs.img" 1
else
    skipped="$skipped e2fsprogs-tarball"
fi

# (b) kernel-made images.
# ops DIR COUNT KINDS: COUNT random operations among KINDS (0-7), each
# followed by an fsync of what it touched (a fast commit, unless the
# kernel finds the transaction ineligible and commits it in full).
ops() {
    local d=$1 count=$2 kinds=$3 n f g
    for n in $(seq 1 "$count"); do
        f=$d/d$((RANDOM % 2 + 1))/f$((RANDOM % 12))
        g=$d/d$((RANDOM % 2 + 1))/f$((RANDOM % 12))
        case ${kinds:$((RANDOM % ${#kinds})):1} in
        0|1) head -c $((RANDOM % 9000 + 1)) /dev/urandom >"$f" ;;
        2) [ -f "$f" ] && head -c $((RANDOM % 5000 + 1)) /dev/urandom >>"$f" ;;
        3) [ -f "$f" ] && truncate -s $((RANDOM % 6000)) "$f" ;;
        4) [ -f "$f" ] && [ ! -e "$g" ] && ln "$f" "$g" && f=$g ;;
        5) [ -f "$f" ] && rm -f "$f" && f=$(dirname "$f") ;;
        6) [ -f "$f" ] && mv -f "$f" "$g" && f=$g ;;
        7) dd if=/dev/urandom of="$f" bs=1024 count=$((RANDOM % 40 + 1)) seek=$((RANDOM % 60)) conv=notrunc 2>/dev/null ;;
        esac
        [ -e "$f" ] && sync "$f"
    done
}
# workload DIR SEED: every kind of operation (some make the running
# transaction ineligible: e2fsck then meets a fast-commit area whose HEAD is
# older than the log's end, and its recovery fails; jbtree fails alike);
# then a full commit and creates, writes, appends, links and unlinks, whose
# fast commits e2fsck replays.
workload() {
    RANDOM=$2
    mkdir -p "$1/d1" "$1/d2"; sync
    ops "$1" 20 01234567
    sync
    [ $(($2 % 4)) -ne 0 ] && ops "$1" 20 012457
}
if [ "$(id -u)" -ne 0 ] || ! command -v mkfs.ext4 >/dev/null || ! losetup -f >/dev/null 2>&1; then
    skipped="$skipped kernel-images(needs-root-and-loop)"
else
    mkdir -p "$mnt"
    for cfg in "4096 metadata_csum" "4096 ^metadata_csum" "1024 metadata_csum" "1024 ^metadata_csum"; do
        set -- $cfg
        for seed in $(seq 1 "$seeds"); do
            name="kernel-b$1-${2}-seed$seed"
            img=$tmp/k.img
            rm -f "$img"; truncate -s 64M "$img"
            mkfs.ext4 -q -F -b "$1" -O "fast_commit,$2" -J size=8 "$img" >/dev/null 2>&1 || { skipped="$skipped $name"; continue; }
            if ! mount -o loop,commit=600 "$img" "$mnt" 2>/dev/null; then skipped="$skipped $name(mount)"; continue; fi
            workload "$mnt" "$seed"
            # Power cut: the backing file as the loop device left it.
            cp --sparse=always "$img" "$tmp/cut.img"
            umount "$mnt"
            compare "$name" "$tmp/cut.img"
            # (without metadata_csum valid fast commits are refused whole)
            [ "$seed" -eq "$seeds" ] && [ "$2" = metadata_csum ] && damage "$name" "$tmp/cut.img" "$seed"
        done
    done
fi

# Many fast commits in one transaction (a 4 MiB fast-commit area): 200
# creates in ten directories and 50 appends, each fsync'ed; and 100 creates
# in one directory of 1 KiB blocks, which outgrow its block: the kernel logs no
# directory block in a fast commit, libext2fs's ext2fs_link finds no room,
# and e2fsck's replay stops there with an error (jbtree stops alike). The
# log is flushed first (fsfreeze) so that the full commit before the fast
# commits is small.
many() { # many NAME DIRS BLOCK_SIZE CREATES
    local name=$1 dirs=$2 bs=$3 n=$4 i img=$tmp/m.img
    rm -f "$img"; truncate -s 256M "$img"
    mkfs.ext4 -q -F -b "$bs" -O fast_commit -J size=64,fast_commit_size=4096 "$img" >/dev/null 2>&1 || { skipped="$skipped $name"; return; }
    mount -o loop,commit=600 "$img" "$mnt" 2>/dev/null || { skipped="$skipped $name(mount)"; return; }
    for i in $(seq 0 $((dirs - 1))); do mkdir "$mnt/d$i"; done
    sync; fsfreeze -f "$mnt" && fsfreeze -u "$mnt"; touch "$mnt/x"; sync
    for i in $(seq 0 $((n - 1))); do head -c 6000 /dev/urandom >"$mnt/d$((i % dirs))/f$i"; sync "$mnt/d$((i % dirs))/f$i"; done
    for i in $(seq 0 4 $((n - 1))); do head -c 3000 /dev/urandom >>"$mnt/d$((i % dirs))/f$i"; sync "$mnt/d$((i % dirs))/f$i"; done
    cp --sparse=always "$img" "$tmp/cut.img"
    umount "$mnt"
    compare "$name" "$tmp/cut.img"
}
if [ -d "$mnt" ] && command -v fsfreeze >/dev/null; then
    many kernel-many-fast-commits 10 4096 200
    many kernel-directory-outgrown 1 1024 100
fi

echo "fast-commit replay: $same identical to e2fsck's, $refused refused untouched, $failed failed${skipped:+; skipped:$skipped}"
[ "$failed" -eq 0 ] || exit 1
[ $((same + refused)) -gt 0 ] || { echo "SKIP: nothing to compare:$skipped"; exit 77; }
exit 0
