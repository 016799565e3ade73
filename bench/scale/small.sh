#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The scale generator's small run (meson test scale-small; bench/scale/run.sh
# is the large one): images of 30,000 generated files at 4 KiB and 1 KiB
# blocks must be clean for e2fsck -fn; the maps built from them with a small
# --memory (records spilled to sorted runs and merged) must check clean, and their owners and paths must equal debugfs icheck and ncheck
# on samples of blocks and inodes.
#
#   bash bench/scale/small.sh GENERATOR JBTREE-E2FS
set -euo pipefail
gen=$1
tool=$2
for t in mkfs.ext4 e2fsck debugfs dumpe2fs truncate; do
    command -v "$t" > /dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
dir=$(mktemp -d /tmp/jbtree-scale-XXXXXX)
trap 'rm -rf "$dir"' EXIT
img=$dir/scale.img
failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

for bs in 4096 1024; do
    echo "== ${bs}-byte blocks"
    rm -f "$img"
    truncate -s 3G "$img"
    mkfs.ext4 -q -F -b "$bs" -N 40000 "$img"
    "$gen" "$img" --files 30000 --per-dir 700 --max-extent 12 --seed 7 || { fail "generator ($bs)"; continue; }
    e2fsck -fn "$img" > "$dir/fsck.log" 2>&1 || { fail "e2fsck -fn on the generated image ($bs)"; tail -20 "$dir/fsck.log"; }
    # In bounded memory: 256 KiB of records at once, so the 30,000 files'
    # records go to sorted runs in temporary files (removed: the directory
    # must be empty after).
    mkdir -p "$dir/spill"
    "$tool" build --memory 256K --tmpdir "$dir/spill" "$img" || { fail "build ($bs)"; continue; }
    [ -z "$(ls -A "$dir/spill")" ] || fail "temporary files left in --tmpdir ($bs)"
    "$tool" check "$img" > /dev/null || fail "check ($bs)"
    e2fsck -fn "$img" > "$dir/fsck.log" 2>&1 || { fail "e2fsck -fn after build ($bs)"; tail -20 "$dir/fsck.log"; }
    # Owners: of 4,000 random blocks, those of files (icheck names an inode
    # from 12 on; the reserved inodes have named owners in the maps); each must
    # be the tool's answer too.
    # (Files fill the filesystem from its start: sample the used part.)
    used=$(dumpe2fs -h "$img" 2> /dev/null | awk -F: '/^Block count/ {n = $2} /^Free blocks/ {f = $2} END {print n - f}')
    awk -v n="$((used + used / 8))" 'BEGIN { srand(7); for (i = 0; i < 4000; i++) print 1 + int(rand() * (n - 1)) }' > "$dir/blocks"
    debugfs -R "icheck $(tr '\n' ' ' < "$dir/blocks")" "$img" 2> /dev/null |
        awk 'NR > 1 && $2 ~ /^[0-9]+$/ && $2 >= 12' | sort > "$dir/icheck"
    "$tool" owner "$img" $(cut -f1 "$dir/icheck") | awk 'NR > 1' | sort > "$dir/owner" || true
    n=$(wc -l < "$dir/icheck")
    [ "$n" -ge 100 ] || fail "only $n sampled blocks belong to files ($bs)"
    cmp -s "$dir/icheck" "$dir/owner" || { fail "owner differs from icheck ($bs)"; diff "$dir/icheck" "$dir/owner" | head; }
    # Paths: up to 300 inodes, hard-linked ones among them.
    awk 'BEGIN { srand(11); for (i = 0; i < 300; i++) print 12 + int(rand() * 30040) }' | sort -un > "$dir/inodes"
    debugfs -R "ncheck $(tr '\n' ' ' < "$dir/inodes")" "$img" 2> /dev/null | awk 'NR > 1' | sort > "$dir/ncheck"
    "$tool" paths "$img" $(cat "$dir/inodes") | awk 'NR > 1' | sort > "$dir/paths" || true
    [ "$(wc -l < "$dir/ncheck")" -ge 250 ] || fail "ncheck found fewer than 250 paths ($bs)"
    cmp -s "$dir/ncheck" "$dir/paths" || { fail "paths differ from ncheck ($bs)"; diff "$dir/ncheck" "$dir/paths" | head; }
    echo "$bs: $n blocks and $(wc -l < "$dir/ncheck") paths agree with debugfs"
done
if [ "$failed" -eq 0 ]; then echo "scale-small: all passed"; else echo "scale-small: $failed failed"; exit 1; fi
