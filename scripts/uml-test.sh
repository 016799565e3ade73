#!/usr/bin/env bash
# ext4 keeps the maps live: build a User-Mode Linux 6.1 kernel with the
# patches of contrib/linux/ (or without them: --stock), boot it as an
# ordinary process on an ext4 test image, run a workload inside, power off,
# and check the image from outside (docs/kernel.md, "ext4 keeps the maps
# live (UML)"). Not part of scripts/test.sh: a clean kernel build takes
# minutes (figures in docs/kernel.md).
#
#   scripts/uml-test.sh [options]
#     --stock          the unpatched kernel (pristine linux-source-6.1)
#     --build-only     build the kernel (and the tool), boot nothing
#     --apply-only     check that the series applies to a fresh unpack; build nothing
#     --ops N          workload operations per image (default 2000)
#     --seed S         workload seed (default 1)
#     --images LIST    comma-separated image kinds (default 4k-csum,1k-csum,4k-nocsum,1k-nocsum)
#     --maps yes|no    store maps with jbtree-e2fs build before booting (default yes;
#                      the patched kernel then also runs the first image without
#                      maps, and with a corrupt volume superblock)
#     --map-blocks N   the map file's size (jbtree-e2fs build --min-blocks; default 4096)
#     --keep           keep the run directory (images, console logs)
#
# Environment: UML_CACHE (default /var/cache/jbtree-uml) holds the pristine
# unpack, the patched copy and both object directories, reused while the
# tarball, the series, its patches and contrib/linux/uml.config are
# unchanged (the jbtree objects are rebuilt by make when their sources
# change); UML_JOBS (default 2); JBTREE_E2FS: a built jbtree-e2fs (default:
# build it in build/uml-tool).
set -euo pipefail

repo=${JBTREE_REPO:-$(cd "$(dirname "$0")/.." && pwd)}
cache=${UML_CACHE:-/var/cache/jbtree-uml}
jobs=${UML_JOBS:-2}
stock=0 build_only=0 apply_only=0 ops=2000 seed=1 keep=0 maps=yes map_blocks=4096
images=4k-csum,1k-csum,4k-nocsum,1k-nocsum
while [ $# -gt 0 ]; do
    case $1 in
    --stock) stock=1 ;;
    --build-only) build_only=1 ;;
    --apply-only) apply_only=1 ;;
    --ops) ops=$2; shift ;;
    --seed) seed=$2; shift ;;
    --images) images=$2; shift ;;
    --maps) maps=$2; shift ;;
    --map-blocks) map_blocks=$2; shift ;;
    --keep) keep=1 ;;
    *) echo "uml-test: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "uml-test: $*"; }
die() { echo "uml-test: FAIL: $*" >&2; exit 1; }

# ---- the source ----------------------------------------------------------
tarball=/usr/src/linux-source-6.1.tar.xz
if [ ! -f "$tarball" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "SKIP: linux-source-6.1 is not installed (apt-get install linux-source-6.1)"; exit 77; }
    log "installing linux-source-6.1 and the kernel build dependencies"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-source-6.1 flex bison bc libelf-dev xz-utils >/dev/null
fi
series=$repo/contrib/linux/series
patches=()
while read -r p; do
    case $p in '' | '#'*) continue ;; esac
    patches+=("$repo/contrib/linux/$p")
done < <(cat "$series" 2>/dev/null || true)

# Apply the series to a copy of the pristine tree ($1), failing on any
# fuzz or reject.
apply_series() {
    local dir=$1 p
    for p in "${patches[@]}"; do
        patch -p1 -d "$dir" --no-backup-if-mismatch -F0 -s <"$p" || die "$(basename "$p") does not apply"
    done
}

if [ $apply_only = 1 ]; then
    # Only the files the series touches, straight from the tarball: no
    # cache, no unpacked tree (a few seconds of xz).
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mapfile -t files < <(for p in "${patches[@]}"; do
        grep -E '^--- a/' "$p" | sed -E 's#^--- a/([^\t ]+).*#\1#'
    done | sort -u)
    tar xJf "$tarball" -C "$tmp" "${files[@]/#/linux-source-6.1/}" 2>/dev/null || true
    apply_series "$tmp/linux-source-6.1"
    log "the series (${#patches[@]} patches) applies to the pristine linux-source-6.1 without fuzz"
    exit 0
fi

mkdir -p "$cache"
tar_id=$(stat -c '%s %Y' "$tarball")
pristine=$cache/pristine
if [ "$(cat "$cache/pristine.id" 2>/dev/null)" != "$tar_id" ]; then
    log "unpacking $tarball into $pristine"
    rm -rf "$pristine" "$cache/pristine.tmp"
    mkdir -p "$cache/pristine.tmp"
    tar xJf "$tarball" -C "$cache/pristine.tmp"
    mv "$cache/pristine.tmp/linux-source-6.1" "$pristine"
    rmdir "$cache/pristine.tmp"
    echo "$tar_id" >"$cache/pristine.id"
fi

# ---- the kernel ----------------------------------------------------------
config=$repo/contrib/linux/uml.config
if [ $stock = 1 ]; then
    src=$pristine
    obj=$cache/obj-stock
else
    src=$cache/patched
    obj=$cache/obj-patched
    want=$( (echo "$tar_id"; cat "$series" "${patches[@]}") | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$src.id" 2>/dev/null)" != "$want" ]; then
        log "patched tree: copying the pristine tree and applying ${#patches[@]} patches"
        rm -rf "$src"
        cp -a "$pristine" "$src" # mtimes kept: make rebuilds only what the patches change
        apply_series "$src"
        echo "$want" >"$src.id"
    fi
fi
mkdir -p "$obj"
if ! cmp -s "$config" "$obj/.jbtree-config"; then
    log "configuring ($config)"
    make -s -C "$src" ARCH=um O="$obj" KCONFIG_ALLCONFIG="$config" allnoconfig >/dev/null
    cp "$config" "$obj/.jbtree-config"
fi
# The stock tree never changes: a built kernel is reused as it is (make
# would relink it every time).
if [ $stock = 1 ] && [ -x "$obj/linux" ] && [ "$obj/linux" -nt "$obj/.jbtree-config" ]; then
    log "reusing the stock UML kernel in $obj"
else
    log "building the $([ $stock = 1 ] && echo stock || echo patched) UML kernel in $obj (-j$jobs)"
    t0=$(date +%s)
    make -s -C "$src" ARCH=um O="$obj" -j"$jobs" JBTREE_ROOT="$repo" linux
    log "kernel built in $(( $(date +%s) - t0 )) s"
fi
kernel=$obj/linux

# ---- the tool and the workload -------------------------------------------
tool=${JBTREE_E2FS:-}
if [ -z "$tool" ]; then
    tb=${JBTREE_UML_BUILD:-$repo/build/uml-tool}
    if [ ! -f "$tb/build.ninja" ]; then
        CXX=${JBTREE_CXX:-g++} meson setup "$tb" "$repo" -Dbuildtype=release -Db_ndebug=true -Dtool=enabled \
            -Dexamples=disabled -Dtests=disabled -Dbench=disabled -Dfuzz=disabled >/dev/null
    fi
    ninja -C "$tb" -j"$jobs" tools/jbtree-e2fs >/dev/null
    tool=$tb/tools/jbtree-e2fs
fi
[ $build_only = 1 ] && exit 0

run=$(mktemp -d "$cache/run.XXXXXX")
[ $keep = 1 ] || trap 'rm -rf "$run"' EXIT
gcc -O2 -Wall -Werror -o "$run/workload" "$repo/contrib/linux/uml/workload.c"

# ---- one image ----------------------------------------------------------
# make_image KIND FILE: 4k-csum, 1k-csum, 4k-nocsum, 1k-nocsum.
make_image() {
    local bs=${1%%-*} opts=()
    bs=${bs%k}
    case $1 in *-nocsum) opts=(-O ^metadata_csum) ;; esac
    mkfs.ext4 -q -F -b $((bs * 1024)) -I 256 "${opts[@]}" "$2" 256M >/dev/null
}

# The outer checks: e2fsck -fn clean; jbtree-e2fs check says what is
# expected (fresh: clean; stale; absent; damaged: an error), and owner/paths
# agree with debugfs icheck/ncheck on every block and every inode.
check_image() {
    local img=$1 expect_maps=$2 out=$run/check
    e2fsck -fn "$img" >"$out.fsck" 2>&1 || { cat "$out.fsck"; die "e2fsck -fn $img"; }
    local st=0
    "$tool" check "$img" >"$out.check" 2>&1 || st=$?
    case $expect_maps in
    fresh) [ $st = 0 ] || { cat "$out.check"; die "jbtree-e2fs check $img: status $st"; } ;;
    stale) grep -q stale "$out.check" || { cat "$out.check"; die "jbtree-e2fs check $img: maps not reported stale"; } ;;
    absent) grep -q "no maps stored" "$out.check" || { cat "$out.check"; die "jbtree-e2fs check $img: maps not absent"; } ;;
    damaged) [ $st != 0 ] || { cat "$out.check"; die "jbtree-e2fs check $img: corrupt maps not reported"; } ;;
    esac
    # What the patched kernel keeps already must agree even while the rest
    # reads as stale (contrib/linux/uml/keeps: parent, rmap, ...).
    if [ "$expect_maps" = stale ] && [ $stock = 0 ] && [ -n "$keeps" ]; then
        local problems
        problems=$(grep -E 'problem: ' "$out.check" | grep -vE 'problem: stale' || true)
        case " $keeps " in *" parent "*)
            if grep -qE 'parent pointer|cannot be read|damaged|verify' <<<"$problems"; then
                cat "$out.check"; die "the parent pointers the kernel keeps disagree"
            fi ;;
        esac
        case " $keeps " in *" rmap "*)
            # Parent pointers and rmap both kept: nothing but the stamp may differ.
            if [ -n "$problems" ]; then
                cat "$out.check"; die "the maps the kernel keeps disagree with the filesystem"
            fi ;;
        esac
        log "  the maps the kernel keeps ($keeps) agree with the filesystem"
    fi
    # Stale or absent maps: the tool builds them in memory for owner and
    # paths, so the comparison below checks the harness itself.
    local nblocks ninodes
    nblocks=$(dumpe2fs -h "$img" 2>/dev/null | awk -F: '/^Block count/ {print $2+0}')
    ninodes=$(dumpe2fs -h "$img" 2>/dev/null | awk -F: '/^Inode count/ {print $2+0}')
    # Every block: the inode debugfs names must be among jbtree's owners,
    # and a block debugfs finds no inode for has no inode owner.
    seq 0 $((nblocks - 1)) >"$out.blocks"
    # (Both tools exit non-zero when some block has no owner: the output
    # is what counts, and both must cover every block.)
    xargs -n 500 echo icheck <"$out.blocks" >"$out.req" # debugfs reads short lines
    { debugfs -f "$out.req" "$img" 2>/dev/null || true; } | grep -E '^[0-9]+'$'\t' |
        awk -F'\t' '{print $1, ($2 ~ /not found/ ? "-" : $2)}' | sort -k1,1n >"$out.icheck"
    { xargs -a "$out.blocks" "$tool" owner "$img" 2>/dev/null || true; } | grep -v '^Block' |
        awk -F'\t' '{ o = $2  # debugfs names the special inodes whose blocks jbtree gives special owners
                      if (o == "<journal>") o = 8; else if (o == "<reserved GDT>") o = 7
                      else if (o == "<jbtree maps>") o = 5; else if (o !~ /^[0-9]+$/) o = "-"
                      print $1, o }' | sort -u | sort -k1,1n >"$out.owner"
    [ "$(wc -l <"$out.icheck")" = "$nblocks" ] || die "debugfs icheck did not answer for every block"
    [ "$(cut -d' ' -f1 "$out.owner" | uniq | wc -l)" = "$nblocks" ] || die "jbtree-e2fs owner did not answer for every block"
    awk 'NR == FNR { own[$1 " " $2] = 1; ino[$1] = ino[$1] || $2 != "-"; next }
         $2 != "-" && !(($1 " " $2) in own) { print "block " $1 ": debugfs says inode " $2 ", jbtree does not"; bad++ }
         $2 == "-" && ino[$1] { print "block " $1 ": debugfs finds no inode, jbtree names one"; bad++ }
         END { exit bad > 0 }' "$out.owner" "$out.icheck" >"$out.odiff" ||
        { head -20 "$out.odiff"; die "owner disagrees with debugfs icheck ($(wc -l <"$out.odiff") blocks)"; }
    # Every inode: the same set of paths as debugfs ncheck.
    seq 1 "$ninodes" >"$out.inodes"
    xargs -n 500 echo ncheck -c <"$out.inodes" >"$out.req"
    { debugfs -f "$out.req" "$img" 2>/dev/null || true; } | grep -E '^[0-9]+'$'\t' |
        awk -F'\t' '{print $1 "\t" $2}' | sed 's#//#/#g' | sort -u >"$out.ncheck"
    { xargs -a "$out.inodes" "$tool" paths "$img" 2>/dev/null || true; } | grep -v '^Inode' | grep -v 'not found' |
        awk -F'\t' '$1 >= 11 {print $1 "\t" $2}' | sort -u >"$out.paths"
    awk -F'\t' '$1 >= 11' "$out.ncheck" >"$out.ncheck2"
    diff "$out.ncheck2" "$out.paths" >"$out.pdiff" ||
        { head -20 "$out.pdiff"; die "paths disagrees with debugfs ncheck"; }
    local depth
    depth=$(debugfs -R "ex /frag" "$img" 2>/dev/null | awk 'NR > 1 && $1 + 0 > d {d = $1 + 0} END {print d + 0}')
    log "  checked: extent tree of /frag has depth $depth; e2fsck -fn clean, jbtree-e2fs check: maps $expect_maps as expected, $nblocks blocks and $(wc -l <"$out.paths") paths agree with debugfs"
}

# boot IMG: the init script mounts the image, runs the workload, unmounts
# and powers off; the UML console goes to $run/console.
boot() {
    local img=$1 init=$run/init
    mkdir -p "$run/mnt" "$run/dev" "$run/proc"
    cat >"$init" <<EOF
#!/bin/sh
W=$run/workload
\$W mount devtmpfs $run/dev devtmpfs &&
\$W mount proc $run/proc proc &&
\$W mount $run/dev/ubda $run/mnt &&
\$W run $run/mnt $seed $ops &&
cat $run/proc/fs/jbd2/ubda-8/info &&
\$W umount $run/mnt
echo \$? >$run/status
\$W poweroff
EOF
    chmod +x "$init"
    rm -f "$run/status"
    local t0
    t0=$(date +%s.%N)
    timeout 3600 "$kernel" mem=256M rootfstype=hostfs rootflags=/ rw init="$init" ubd0="$img" \
        con=null con0=fd:0,fd:1 </dev/null >"$run/console" 2>&1 || true
    elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
    [ "$(cat "$run/status" 2>/dev/null)" = 0 ] || { tail -40 "$run/console"; die "the workload failed inside UML"; }
    grep 'workload:' "$run/console" | sed 's/^/uml-test:   /'
    # jbd2's statistics just before the unmount: transactions and logged
    # blocks (an average per transaction, times the transactions).
    journal_blocks=$(awk '/transactions \(/ {t = $1} /logged blocks per transaction/ {b = $1} END {print t * b}' "$run/console")
}

kind=$([ $stock = 1 ] && echo stock || echo patched)
# What the series keeps current (empty: it only opens the maps).
keeps=$(grep -v '^#' "$repo/contrib/linux/uml/keeps" 2>/dev/null | tr '\n' ' ' | sed 's/ *$//' || true)
# corrupt_volume IMG: one byte of the maps' volume superblock flipped (its
# checksum then fails): the patched kernel must refuse the maps, mount and
# leave them alone.
corrupt_volume() {
    local first
    first=$(debugfs -R "bmap <5> 0" "$1" 2>/dev/null)
    local bs
    bs=$(dumpe2fs -h "$1" 2>/dev/null | awk -F: '/^Block size/ {print $2+0}')
    printf '\xff' | dd of="$1" bs=1 seek=$((first * bs + 0x60)) conv=notrunc status=none
}

# One case: image kind, maps (yes/no/corrupt).
run_case() {
    local k=$1 m=$2 img=$run/$1.img expect=absent
    make_image "$k" "$img"
    if [ "$m" != no ]; then
        # Room for the maps to grow as the kernel keeps them.
        "$tool" build --min-blocks "$map_blocks" "$img" >/dev/null
        # The stock kernel leaves them stale; the patched one keeps them
        # and stamps them at a clean unmount (uml/keeps: stamp): fresh.
        expect=stale
        if [ $stock = 0 ] && [ "$m" = yes ]; then
            case " $keeps " in *" stamp "*) expect=fresh ;; esac
        fi
    fi
    [ "$m" = corrupt ] && corrupt_volume "$img"
    log "$k: $kind kernel, $ops operations, seed $seed, maps $m"
    boot "$img"
    log "  booted, ran and powered off in ${elapsed}s; jbd2 logged about $journal_blocks blocks"
    # Never an fs error, maps or not.
    if grep -q 'EXT4-fs error' "$run/console"; then grep 'EXT4-fs error' "$run/console"; die "ext4 reported an error"; fi
    # What the kernel said about the maps.
    local said
    said=$(grep -o 'jbtree: [^,(]*' "$run/console" | head -1 || true)
    if [ $stock = 1 ] || [ "$m" = no ]; then
        [ -z "$said" ] || die "the kernel mentioned jbtree: $said"
    elif [ "$m" = yes ]; then
        grep -q 'jbtree: maps opened.*verified' "$run/console" || { grep -i jbtree "$run/console"; die "the maps were not opened"; }
        log "  kernel: $(grep -o 'jbtree: maps opened.*' "$run/console" | head -1)"
        if [ "$expect" = fresh ]; then
            grep -q 'jbtree: maps kept, stamped at unmount' "$run/console" ||
                { grep -i jbtree "$run/console"; die "the maps were not kept to the unmount"; }
        fi
    else
        grep -q 'jbtree: maps at blocks .* refused' "$run/console" || { grep -i jbtree "$run/console"; die "the corrupt maps were not refused"; }
        log "  kernel: $(grep -o 'jbtree: maps at.*' "$run/console" | head -1)"
        expect=damaged
    fi
    check_image "$img" "$expect"
}

IFS=, read -r -a kinds <<<"$images"
for k in "${kinds[@]}"; do
    run_case "$k" "$maps"
done
if [ $stock = 0 ] && [ "$maps" = yes ]; then
    # Acceptance 4: the stock kernel (if built: --stock --build-only) on
    # the last image, whose maps the patched kernel kept: it mounts and
    # writes, e2fsck stays clean, the maps read as stale.
    if [ -x "$cache/obj-stock/linux" ]; then
        img=$run/${kinds[-1]}.img
        log "${kinds[-1]}: the stock kernel on the image the patched one wrote, seed $((seed + 1))"
        patched_kernel=$kernel kernel=$cache/obj-stock/linux seed=$((seed + 1))
        boot "$img"
        kernel=$patched_kernel seed=$((seed - 1))
        if grep -q 'jbtree: \|EXT4-fs error' "$run/console"; then grep 'jbtree: \|EXT4-fs error' "$run/console"; die "the stock kernel"; fi
        stock=1 check_image "$img" stale
    else
        log "no stock kernel in $cache/obj-stock: skipping the stock-after-patched check (run --stock --build-only)"
    fi
    # Without maps the patched kernel is stock; corrupt maps are refused.
    run_case "${kinds[0]}" no
    run_case "${kinds[0]}" corrupt
fi
log "all images passed"
