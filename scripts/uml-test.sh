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
#     --crash N        crash runs instead (acceptance 2): N runs per image kind,
#                      seeds S..S+N-1, each killing UML (SIGKILL to its process
#                      group) at a moment the seed picks during the workload,
#                      then copies of the image replayed three ways
#                      (e2fsck -E journal_only, jbtree-e2fs replay, the patched
#                      kernel's own mount), and a fourth with the patched
#                      e2fsck when it is built (UML_PATCHED_E2FSCK, default
#                      build/e2fsprogs's: bash scripts/e2fsprogs.sh), and
#                      checked as after a clean run
#     --overhead N     N pairs of runs, maps absent and present, same seed, in
#                      alternating order (acceptance 3): elapsed time and jbd2
#                      blocks as ratios, min and median
#
# A patched run with maps (the default) also runs the remount and freeze
# cases on every kind (remount_cases: a read-only mount, remounts, a
# freeze and a thaw, power cuts after each).
#
# Environment: UML_CACHE (default /var/cache/jbtree-uml) holds the pristine
# unpack, the patched copy and both object directories, reused while the
# tarball, the series, its patches and contrib/linux/uml.config are
# unchanged (the jbtree objects are rebuilt by make when their sources
# change); UML_JOBS (default 2); JBTREE_E2FS: a built jbtree-e2fs (default:
# build it in build/uml-tool); UML_MOUNT_OPTS: ext4 mount options inside
# UML (default none; commit=1 for --crash); UML_CRASH_WINDOW: where in the
# workload --crash kills, in percent of its calibrated time (default 0-80).
set -euo pipefail

repo=${JBTREE_REPO:-$(cd "$(dirname "$0")/.." && pwd)}
cache=${UML_CACHE:-/var/cache/jbtree-uml}
jobs=${UML_JOBS:-2}
stock=0 build_only=0 apply_only=0 ops=2000 seed=1 keep=0 maps=yes map_blocks=4096 crash=0 overhead=0
mount_opts=${UML_MOUNT_OPTS:-}
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
    --crash) crash=$2; shift ;;
    --overhead) overhead=$2; shift ;;
    *) echo "uml-test: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "uml-test: $*"; }
die() { echo "uml-test: FAIL: $*" >&2; exit 1; }

# ---- the source ----------------------------------------------------------
tarball=/usr/src/linux-source-6.1.tar.xz
# The source and what a kernel build runs (the source may be installed
# without them: scripts/lib.sh installs it for the cheaper CI checks).
missing=
[ -f "$tarball" ] || missing="$missing linux-source-6.1"
for t in flex:flex bison:bison bc:bc xz:xz-utils; do command -v "${t%%:*}" >/dev/null || missing="$missing ${t#*:}"; done
[ -f /usr/include/libelf.h ] || missing="$missing libelf-dev"
if [ -n "$missing" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "SKIP: not installed:$missing (apt-get install$missing)"; exit 77; }
    log "installing$missing"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
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

# image_with_maps KIND FILE: make_image, then the maps stored by
# jbtree-e2fs build, with room to grow as the kernel keeps them.
image_with_maps() {
    make_image "$1" "$2"
    "$tool" build --min-blocks "$map_blocks" "$2" >/dev/null
}

# The outer checks: e2fsck -fn clean; jbtree-e2fs check says what is
# expected (fresh: clean; stale; absent; damaged: an error), and owner/paths
# agree with debugfs icheck/ncheck on every block and every inode.
check_image() {
    local img=$1 expect_maps=$2 out=$run/check
    # skip_fsck=1: the caller knows why e2fsck -fn must complain (below).
    [ "${skip_fsck:-0}" = 1 ] || e2fsck -fn "$img" >"$out.fsck" 2>&1 || { cat "$out.fsck"; die "e2fsck -fn $img"; }
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
    log "  checked: extent tree of /frag has depth $depth; e2fsck -fn $([ "${skip_fsck:-0}" = 1 ] && echo "not run" || echo clean), jbtree-e2fs check: maps $expect_maps as expected, $nblocks blocks and $(wc -l <"$out.paths") paths agree with debugfs"
}

# write_init [MODE]: the init script. workload (default): mount the image,
# run the workload, sync, print jbd2's statistics, unmount, print the block
# device's, power off. mount: mount and unmount only (the kernel's own
# journal replay after a crash). $run/started appears as the workload
# starts.
write_init() {
    local mode=${1:-workload} body
    mkdir -p "$run/mnt" "$run/dev" "$run/proc" "$run/sys"
    local ro="ro${mount_opts:+,$mount_opts}" half=$(( (ops + 1) / 2 ))
    case $mode in
    mount|mountro) body="\$W umount $run/mnt" ;;
    # The remount and freeze cases (remount_cases): mounted read-only,
    # remounted read-write, half the workload, then: read-only,
    # read-write, a freeze and a thaw, the other half (seed + 1),
    # unmounted; or a power cut (no sync) after the first half (committed
    # by a pause with commit=1, then more changes that the cut loses), or
    # after a remount read-only, a freeze, or a freeze, a thaw and the
    # other half.
    remount*|freeze*)
        local first="\$W remount $run/mnt rw \"$mount_opts\" && touch $run/started && \$W run $run/mnt $seed $half"
        local cut="/bin/sleep 2 && \$W run $run/mnt $((seed + 2)) $(( (half + 3) / 4 )) && echo 0 >$run/status && \$W crash"
        case $mode in
        remount) body="$first && \$W remount $run/mnt ro && \$W remount $run/mnt rw \"$mount_opts\" &&
\$W freeze $run/mnt && \$W thaw $run/mnt && \$W run $run/mnt $((seed + 1)) $half && \$W umount $run/mnt" ;;
        remount-crash-rw) body="$first && $cut" ;;
        remount-crash-ro) body="$first && \$W remount $run/mnt ro && echo 0 >$run/status && \$W crash" ;;
        freeze-crash-frozen) body="$first && \$W freeze $run/mnt && echo 0 >$run/status && \$W crash" ;;
        freeze-crash-thawed) body="$first && \$W freeze $run/mnt && \$W thaw $run/mnt && \$W run $run/mnt $((seed + 1)) $half && $cut" ;;
        esac ;;
    *)
        body="/bin/date +%s%N >$run/t.start && touch $run/started && \$W run $run/mnt $seed $ops &&
/bin/date +%s%N >$run/t.end && /bin/sync &&
cat $run/proc/fs/jbd2/ubda-8/info &&
\$W umount $run/mnt && grep ' ubda ' $run/proc/diskstats" ;;
    esac
    # (ext4_msg prints at most 10 lines in 5 s per filesystem; the checks
    # read the console, so the init lifts that limit after the mount.)
    cat >"$run/init" <<EOF
#!/bin/sh
W=$run/workload
\$W mount devtmpfs $run/dev devtmpfs &&
\$W mount proc $run/proc proc &&
\$W mount $run/dev/ubda $run/mnt ext4 "$([[ $mode == remount* || $mode == freeze* || $mode == mountro ]] && echo "$ro" || echo "$mount_opts")" &&
\$W mount sysfs $run/sys sysfs &&
echo 0 >$run/sys/fs/ext4/ubda/msg_ratelimit_interval_ms &&
$body
echo \$? >$run/status
\$W poweroff
EOF
    chmod +x "$run/init"
    rm -f "$run/status" "$run/started" "$run/t.start" "$run/t.end"
}

# The UML command line on image $1 (the console on stdout).
uml_cmd() {
    echo "$kernel" mem=256M rootfstype=hostfs rootflags=/ rw init="$run/init" ubd0="$1" con=null con0=fd:0,fd:1
}

# boot IMG [MODE]: write_init, then run UML to its power-off; the console
# goes to $run/console.
boot() {
    local img=$1
    write_init "${2:-workload}"
    local t0
    t0=$(date +%s.%N)
    # CPU time of UML and the processes it reaped (user + system): what
    # the kernel and the workload cost, less sensitive than the elapsed
    # time to other jobs on the machine.
    timeout 3600 /usr/bin/time -f "%U %S" -o "$run/cpu" $(uml_cmd "$img") </dev/null >"$run/console" 2>&1 || true
    elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
    cpu=$(awk 'NF == 2 {print $1 + $2}' "$run/cpu" 2>/dev/null | tail -1)
    [ "$(cat "$run/status" 2>/dev/null)" = 0 ] || { tail -40 "$run/console"; die "the workload failed inside UML"; }
    grep 'workload:' "$run/console" | sed 's/^/uml-test:   /' || true # (none in mount mode)
    # jbd2's statistics after the workload and a sync (every change
    # committed), before the unmount: transactions and logged blocks (an
    # average per transaction, rounded by jbd2, times the transactions).
    journal_blocks=$(awk '/transactions \(/ {t = $1} /logged blocks per transaction/ {b = $1} END {print t * b}' "$run/console")
    # What the block device wrote in all, after the unmount (sectors,
    # field 10 of /proc/diskstats), in filesystem blocks.
    local bsz
    bsz=$(dumpe2fs -h "$img" 2>/dev/null | awk -F: '/^Block size/ {print $2+0}')
    device_blocks=$(awk -v b="$bsz" '$3 == "ubda" {print int($10 * 512 / b)}' "$run/console")
}

# no_ext4_error: fail if the last boot's console shows an ext4 error.
no_ext4_error() {
    if grep -q 'EXT4-fs error' "$run/console"; then grep 'EXT4-fs error' "$run/console"; die "ext4 reported an error"; fi
}

# needs_recovery IMG: true if the image's journal is to be replayed.
needs_recovery() {
    dumpe2fs -h "$1" 2>/dev/null | grep -q '^Filesystem features:.*needs_recovery'
}

# expect_line PATTERN WHY: fail with WHY, showing the console's jbtree
# lines, unless the last boot's console has a line matching PATTERN.
expect_line() {
    grep -q "$1" "$run/console" || { grep -i jbtree "$run/console"; die "$2"; }
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
    cp "$run/console" "$run/console.$k.$m"
    log "  booted, ran and powered off in ${elapsed}s; jbd2 logged about $journal_blocks blocks, the device wrote $device_blocks blocks"
    grep -o "jbtree: [0-9]* changes.*" "$run/console" | sed "s/^/uml-test:   kernel: /" || true
    # Never an fs error, maps or not.
    no_ext4_error
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

# jbtree_replay_and_check IMG: jbtree-e2fs replay after a crash, then the
# checks, the maps fresh. jbtree-e2fs replay replays the journal only;
# e2fsck -E journal_only also releases the orphan list, and the kernel
# does at its next mount. With an orphan list left (replay_orphans=1),
# e2fsck -fn reports its head ("deleted inode has zero dtime", "i_size is
# 0, should be ..." for a truncate in progress, bitmap differences) and
# jbtree-e2fs check, whose scan gives an inode with no links no blocks,
# finds the records of an orphan that still holds blocks: both logged,
# not required. Then the patched kernel mounts it: the maps' live stamp
# still names the crashed mount, so it keeps them and releases the
# orphans through its hooks; after its unmount every check must pass, the
# maps fresh.
jbtree_replay_and_check() {
    local c=$1 orphan cst=0
    replay_orphans=0
    "$tool" replay "$c" >"$run/replay.out" 2>&1 || { cat "$run/replay.out"; die "jbtree-e2fs replay"; }
    log "  $(tr '\n' ' ' <"$run/replay.out")"
    orphan=$(dumpe2fs -h "$c" 2>/dev/null | awk -F: '/^First orphan inode/ {print $2 + 0}')
    if [ "${orphan:-0}" != 0 ]; then
        replay_orphans=1
        log "  orphan list left by the replay (first orphan inode $orphan)"
        "$tool" check "$c" >"$run/check.orphans" 2>&1 || cst=$?
        log "  before any mount: jbtree-e2fs check status $cst ($(grep -c 'problem: ' "$run/check.orphans") problems$(grep -m1 -o 'problem: .*' "$run/check.orphans" | cut -c1-100 | sed 's/^/: /'))"
        boot "$c" mount
        no_ext4_error
        expect_line 'jbtree: maps opened.*verified, live stamp of the last mount' "the maps were not kept by the next mount after jbtree-e2fs replay"
        expect_line 'jbtree: maps kept, stamped at unmount' "the maps were not kept to the unmount"
        log "  the next patched mount: $(grep -o '[0-9]* orphan inodes\? deleted\|[0-9]* truncates\? cleaned up' "$run/console" | tr '\n' ' ')$(grep -o 'jbtree: [0-9]* changes' "$run/console" | sed 's/jbtree: //')"
    fi
    check_image "$c" fresh
}

# remount_cases KIND: the stamp across remounts and freezes (patch 0005).
# A clean run through them all: fresh, every check clean. A power cut
# after the remount read-write (or after a freeze, a thaw and more
# changes): the journal to replay, the maps under the live stamp of the
# mount the remount wrote (or the thaw named), so fresh after the kernel's
# replay and after jbtree-e2fs replay. A power cut after the remount
# read-only (or while frozen): nothing to replay, the maps under the full
# stamp that remount (or freeze) wrote: fresh as they are, and kept by the
# next mount.
remount_cases() {
    local k=$1 img=$run/$1.remount.img c half=$(( (ops + 1) / 2 ))
    image_with_maps "$k" "$img"
    log "$k: remounts: mounted read-only, remounted read-write, $half operations, read-only, read-write, frozen, thawed, $half more (seed $((seed + 1))), unmounted"
    boot "$img" remount
    cp "$run/console" "$run/console.$k.remount"
    no_ext4_error
    [ "$(grep -c 'jbtree: remounted read-write: maps kept live since mount' "$run/console")" = 2 ] &&
        grep -q 'jbtree: maps kept, stamped at remount read-only' "$run/console" &&
        grep -q 'jbtree: maps kept, stamped at freeze' "$run/console" &&
        grep -q 'jbtree: maps kept, stamped live at thaw' "$run/console" &&
        grep -q 'jbtree: maps kept, stamped at unmount' "$run/console" ||
        { grep -i jbtree "$run/console"; die "the maps were not kept live across the remounts and the freeze"; }
    log "  kernel: $(grep -o 'jbtree: remounted read-write.*\|jbtree: maps kept, stamped.*' "$run/console" | tr '\n' ';')"
    check_image "$img" fresh

    local mode what
    for mode in remount-crash-rw freeze-crash-thawed; do
        case $mode in
        remount-crash-rw) what="after the remount read-write and $half operations" ;;
        *) what="after $half operations, a freeze, a thaw and $half more" ;;
        esac
        image_with_maps "$k" "$img"
        log "$k: a power cut $what (then $(( (half + 3) / 4 )) more, lost)"
        # (A commit every second, as for --crash: transactions of changes
        # behind the cut, not only the stamp's.)
        mount_opts=${UML_MOUNT_OPTS:-commit=1} boot "$img" "$mode"
        no_ext4_error
        needs_recovery "$img" || die "no journal to replay after the power cut"
        c=$run/$k.remount.copy.img
        cp --sparse=always "$img" "$c"
        log "  [jbtree]"
        jbtree_replay_and_check "$c"
        # The kernel's replay at a read-only mount: it writes the
        # superblock (ext4_mark_recovery_complete), then the full stamp.
        cp --sparse=always "$img" "$c"
        boot "$c" mountro
        no_ext4_error
        expect_line 'jbtree: maps kept, stamped at read-only mount' "the read-only mount that replayed the journal did not stamp the maps"
        check_image "$c" fresh
        boot "$c" mount
        expect_line 'jbtree: maps opened.*verified, stamp current' "the mount after the read-only replay did not keep the maps under its stamp"
        log "  [kernel, read-only] replayed and stamped; the next mount kept the maps (stamp current)"
        check_image "$c" fresh
        boot "$img" mount
        no_ext4_error
        expect_line 'jbtree: maps opened.*verified, live stamp of the last mount' "the kernel's replay did not find the maps under the live stamp the $mode case wrote"
        log "  [kernel] $(grep -o 'jbtree: maps opened.*' "$run/console" | head -1)"
        check_image "$img" fresh
    done

    for mode in remount-crash-ro freeze-crash-frozen; do
        case $mode in
        remount-crash-ro) what="remount read-only" ;;
        *) what="freeze" ;;
        esac
        image_with_maps "$k" "$img"
        log "$k: a power cut after $half operations and the $what"
        mount_opts=${UML_MOUNT_OPTS:-commit=1} boot "$img" "$mode"
        no_ext4_error
        expect_line "jbtree: maps kept, stamped at $what" "the $what did not stamp the maps"
        if needs_recovery "$img"; then die "a journal to replay after the $what"; fi
        check_image "$img" fresh
        boot "$img" mount
        no_ext4_error
        expect_line 'jbtree: maps opened.*verified, stamp current' "the next mount did not keep the maps under the full stamp of the $what"
        check_image "$img" fresh
        log "  fresh as the power cut left them, and kept by the next mount"
    done
}

# ---- crash runs (acceptance 2) -------------------------------------------
# sb_field IMAGE OFFSET BYTES: an unsigned little-endian field of the ext4
# superblock (at byte 1024): s_wtime is at 0x30 (4), s_kbytes_written at
# 0x178 (8).
sb_field() { od -An -t "u$3" -j $((1024 + $2)) -N "$3" "$1" | tr -d ' '; }

# crash_one KIND SEED: the workload killed at a moment the seed picks, then
# the image replayed three ways, each on its own copy, and checked.
# Appends "KIND SEED path pass|fail" lines to $run/crash.results.
crash_one() {
    local k=$1 s=$2 img=$run/crash.img
    image_with_maps "$k" "$img"
    seed=$s
    write_init workload
    # The moment: from the seed (a multiplicative hash, so neighbouring
    # seeds spread out), between crash_from and crash_to percent of the
    # calibrated workload time after it starts (UML_CRASH_WINDOW, default
    # 0-80: the first second is before the first commit with commit=1).
    local lo=$((crash_window_ms * crash_from / 100)) hi=$((crash_window_ms * crash_to / 100))
    local delay_ms=$(( lo + (s * 2654435761 % 4294967296) % (hi > lo ? hi - lo : 1) ))
    setsid $(uml_cmd "$img") umid=jbtree-crash-$$ </dev/null >"$run/console" 2>&1 &
    local pid=$! waited=0
    while [ ! -e "$run/started" ] && [ $waited -lt 6000 ] && kill -0 $pid 2>/dev/null; do
        sleep 0.01; waited=$((waited + 1))
    done
    [ -e "$run/started" ] || { kill -KILL -- -$pid 2>/dev/null; wait $pid 2>/dev/null; tail -20 "$run/console"; die "crash run $k seed $s: the workload never started"; }
    sleep "$(echo "scale=3; $delay_ms / 1000" | bc)"
    # The whole UML process group (the kernel and its helper processes).
    kill -KILL -- -$pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    rm -rf "$HOME/.uml/jbtree-crash-$$" # what UML would have removed at its power-off
    local when=during
    [ -e "$run/status" ] && when=after
    # A kill after the workload's clean unmount finds no journal to
    # replay and the full stamp written (the kernel then keeps the maps
    # under it); otherwise the live stamp of the crashed mount.
    local want_stamp='live stamp of the last mount'
    needs_recovery "$img" || want_stamp='stamp current'
    cp "$run/console" "$run/console.crash.$k.$s"
    if grep -q 'EXT4-fs error\|jbtree: .* failed' "$run/console"; then
        grep 'EXT4-fs error\|jbtree: .* failed' "$run/console"
        echo "$k $s before-kill fail" >>"$run/crash.results"
        log "crash $k seed $s: killed ${delay_ms} ms into the workload ($when it): the kernel reported a failure before the kill"
        return
    fi
    log "crash $k seed $s: killed ${delay_ms} ms into the workload ($when it; $(needs_recovery "$img" && echo "journal to replay" || echo "cleanly unmounted")); replaying three ways"
    local path st
    for path in e2fsck ${patched_e2fsck:+e2fsck-patched} jbtree kernel; do
        cp --sparse=always "$img" "$run/crash.$path.img"
        rm -f "$run/orphans"
        st=0
        (
            local c=$run/crash.$path.img
            case $path in
            e2fsck)
                local r=0 w0 k0 w1 k1
                w0=$(sb_field "$c" $((0x30)) 4) k0=$(sb_field "$c" $((0x178)) 8)
                e2fsck -E journal_only -y "$c" >"$run/replay.out" 2>&1 || r=$?
                [ $r -le 1 ] || { cat "$run/replay.out"; die "e2fsck -E journal_only: status $r"; }
                w1=$(sb_field "$c" $((0x30)) 4) k1=$(sb_field "$c" $((0x178)) 8)
                # Within the second of the crashed mount's superblock write
                # (the kills early in the workload): s_wtime the same, and
                # the live stamp must see e2fsck's write by s_kbytes_written
                # (which its replay raises). Logged and counted; the
                # expectation below is the same (stale).
                if [ "$w0" = "$w1" ] && [ "$want_stamp" != 'stamp current' ]; then
                    log "  e2fsck wrote the superblock within the crashed mount's second (s_wtime $w1 unchanged; s_kbytes_written $k0 -> $k1)"
                    echo "$k $s" >>"$run/crash.same_second"
                else
                    log "  e2fsck: s_wtime $w0 -> $w1, s_kbytes_written $k0 -> $k1"
                fi
                # e2fsck writes the superblock (s_wtime), which the live
                # stamp names, when it replays: the maps read as stale
                # after it, whatever it did (a kill after the clean
                # unmount leaves nothing to replay, and the full stamp
                # fresh). Without orphans they must still agree with the
                # filesystem in everything but the stamp. e2fsck also
                # releases the orphan list (frees or truncates those
                # inodes): a change outside the kernel, hence outside the
                # maps, which then disagree; they must read as stale (not
                # fresh and wrong) and the next patched mount must refuse
                # them. Counted apart ("with orphans").
                if grep -q 'orphaned inode' "$run/replay.out"; then
                    log "  e2fsck released orphans: $(grep 'orphaned inode' "$run/replay.out" | tr '\n' ';')"
                    touch "$run/orphans"
                    keeps='' check_image "$c" stale
                    boot "$c" mount
                    no_ext4_error
                    grep -q 'jbtree: maps at blocks .* are stale .*not kept' "$run/console" ||
                        { grep -i jbtree "$run/console"; die "the next patched mount kept maps e2fsck left stale"; }
                    log "  the next patched mount refused the maps (stale)"
                    keeps='' check_image "$c" stale
                elif [ "$want_stamp" = 'stamp current' ]; then
                    check_image "$c" fresh
                else
                    check_image "$c" stale
                fi ;;
            e2fsck-patched)
                # contrib/e2fsprogs 0006: the replay keeps the maps
                # current (the live stamp carried past e2fsck's superblock
                # write; rebuilt when it released orphans), and the next
                # patched mount keeps them.
                local r=0
                "$patched_e2fsck" -E journal_only -y "$c" >"$run/replay.out" 2>&1 || r=$?
                [ $r -le 1 ] || { cat "$run/replay.out"; die "patched e2fsck -E journal_only: status $r"; }
                if grep -q 'orphaned inode' "$run/replay.out"; then
                    log "  patched e2fsck released orphans: $(grep 'orphaned inode\|jbtree' "$run/replay.out" | tr '\n' ';')"
                    grep -q 'jbtree maps rebuilt (orphan inodes released)' "$run/replay.out" ||
                        { cat "$run/replay.out"; die "the patched e2fsck released orphans without rebuilding the maps"; }
                    touch "$run/orphans"
                fi
                check_image "$c" fresh
                boot "$c" mount
                no_ext4_error
                grep -q 'jbtree: maps kept, stamped at unmount' "$run/console" ||
                    { grep -i jbtree "$run/console"; die "the next patched mount did not keep the maps the patched e2fsck left"; }
                log "  the next patched mount kept the maps: $(grep -o 'jbtree: maps opened.*' "$run/console" | head -n 1)"
                check_image "$c" fresh ;;
            jbtree)
                jbtree_replay_and_check "$c"
                [ "$replay_orphans" = 0 ] || touch "$run/orphans" ;;
            kernel)
                boot "$c" mount
                no_ext4_error
                # Kept under the live stamp of the crashed mount (written
                # and committed at that mount, before the workload).
                grep -q "jbtree: maps opened.*verified, $want_stamp" "$run/console" ||
                    { grep -i jbtree "$run/console"; die "the maps were not opened under the expected stamp ($want_stamp) after the replay"; }
                grep -q 'jbtree: maps kept, stamped at unmount' "$run/console" ||
                    { grep -i jbtree "$run/console"; die "the maps were not kept to the unmount"; }
                check_image "$c" fresh ;;
            esac
        ) >"$run/crash.log" 2>&1 || st=$?
        sed 's/^uml-test: /uml-test:   /' "$run/crash.log" | grep -v '^$' | sed "s/^/  [$path] /" | sed 's/^  \[\([a-z0-9-]*\)\] uml-test:/uml-test:   [\1]/'
        if [ $st = 0 ] && [ -e "$run/orphans" ]; then
            echo "$k $s $path orphans" >>"$run/crash.results"
        elif [ $st = 0 ]; then
            echo "$k $s $path pass" >>"$run/crash.results"
        elif [ -e "$run/orphans" ]; then
            echo "$k $s $path orphans-fail" >>"$run/crash.results"
            cp "$img" "$run/failed.$k.$s.img" 2>/dev/null || true
        else
            echo "$k $s $path fail" >>"$run/crash.results"
            cp "$img" "$run/failed.$k.$s.img" 2>/dev/null || true
        fi
        rm -f "$run/crash.$path.img"
    done
}

if [ "$crash" -gt 0 ]; then
    [ $stock = 0 ] && [ "$maps" = yes ] || die "--crash runs the patched kernel with maps"
    # The patched e2fsck (contrib/e2fsprogs/, scripts/e2fsprogs.sh) as a
    # fourth replay when built: UML_PATCHED_E2FSCK, or build/e2fsprogs's.
    patched_e2fsck=${UML_PATCHED_E2FSCK:-$repo/build/e2fsprogs/e2fsprogs-1.47.4/e2fsck/e2fsck}
    if [ -x "$patched_e2fsck" ]; then log "crash runs replay with the patched e2fsck too: $patched_e2fsck"
    else log "no patched e2fsck at $patched_e2fsck (bash scripts/e2fsprogs.sh): its replay is not run"; patched_e2fsck=; fi
    # A commit every second (ext4's default is 5): a kill then finds
    # several committed transactions behind it, and one running.
    mount_opts=${UML_MOUNT_OPTS:-commit=1}
    crash_window=${UML_CRASH_WINDOW:-0-80}
    crash_from=${crash_window%-*} crash_to=${crash_window#*-}
    IFS=, read -r -a kinds <<<"$images"
    : >"$run/crash.results"
    : >"$run/crash.same_second"
    for k in "${kinds[@]}"; do
        # Calibration: the workload's time on this kind, uninterrupted;
        # the shorter of two runs (a run slowed by other jobs on the
        # machine would put the kills after the workload's end).
        crash_window_ms=
        for _ in 1 2; do
            image_with_maps "$k" "$run/crash.img"
            boot "$run/crash.img"
            local_ms=$(( ($(cat "$run/t.end") - $(cat "$run/t.start")) / 1000000 ))
            if [ -z "$crash_window_ms" ] || [ "$local_ms" -lt "$crash_window_ms" ]; then crash_window_ms=$local_ms; fi
        done
        [ $crash_window_ms -ge 10 ] || crash_window_ms=10
        log "$k: calibration: the workload ($ops operations) took $crash_window_ms ms; kills from $crash_from% to $crash_to% of that after it starts"
        local_seed0=$seed
        for ((i = 0; i < crash; i++)); do
            crash_one "$k" $((local_seed0 + i))
        done
        seed=$local_seed0
    done
    for k in "${kinds[@]}"; do
        for path in e2fsck ${patched_e2fsck:+e2fsck-patched} jbtree kernel; do
            log "$k, replay by $path: $(grep -c "^$k [0-9]* $path pass" "$run/crash.results") passed, $(grep -c "^$k [0-9]* $path orphans$" "$run/crash.results") passed with orphans (jbtree: left, e2fsck -fn not run; e2fsck: released), $(grep -c "^$k [0-9]* $path orphans-fail" "$run/crash.results") failed after e2fsck released orphans, $(grep -c "^$k [0-9]* $path fail" "$run/crash.results") failed"
        done
        log "$k: $(grep -c "^$k [0-9]* before-kill fail" "$run/crash.results") runs where the kernel reported a failure before the kill"
        log "$k: $(grep -c "^$k " "$run/crash.same_second") runs where e2fsck wrote the superblock within the crashed mount's second (the maps must read as stale all the same: counted in e2fsck's figures above)"
    done
    grep -q ' fail$' "$run/crash.results" && die "some crash runs failed ($run/crash.results)"
    grep -q 'orphans-fail$' "$run/crash.results" && die "some crash runs failed after e2fsck released orphans ($run/crash.results)"
    log "all crash runs passed"
    exit 0
fi

# ---- overhead (acceptance 3) ---------------------------------------------
# over_one KIND MAPS: one run, maps absent (no) or present (yes); appends
# "KIND MAPS workload-ms elapsed-s journal-blocks device-blocks" to
# $run/overhead.results.
over_one() {
    local k=$1 m=$2 img=$run/over.img
    make_image "$k" "$img"
    [ "$m" = yes ] && "$tool" build --min-blocks "$map_blocks" "$img" >/dev/null
    boot "$img" >/dev/null
    cp "$run/console" "$run/console.over.$k.$m"
    if [ "$m" = yes ]; then
        grep -q 'jbtree: maps kept, stamped at unmount' "$run/console" ||
            { grep -i jbtree "$run/console"; die "overhead: the maps were not kept"; }
    fi
    local ms=$(( ($(cat "$run/t.end") - $(cat "$run/t.start")) / 1000000 ))
    echo "$k $m $ms $elapsed $journal_blocks $device_blocks ${cpu:-0}" >>"$run/overhead.results"
    log "  $k maps $m: workload ${ms} ms (boot to power-off ${elapsed}s, CPU ${cpu}s), jbd2 logged about $journal_blocks blocks, the device wrote $device_blocks blocks"
}

if [ "$overhead" -gt 0 ]; then
    [ $stock = 0 ] && [ "$maps" = yes ] || die "--overhead runs the patched kernel"
    IFS=, read -r -a kinds <<<"$images"
    : >"$run/overhead.results"
    for k in "${kinds[@]}"; do
        log "$k: $overhead pairs, $ops operations, seed $seed, maps absent and present in alternating order"
        for ((i = 0; i < overhead; i++)); do
            if [ $((i % 2)) = 0 ]; then over_one "$k" no; over_one "$k" yes; else over_one "$k" yes; over_one "$k" no; fi
        done
        # Ratios per pair (present / absent), then their min and median.
        awk -v k="$k" '$1 == k && $2 == "no" {n[++a] = $0} $1 == k && $2 == "yes" {y[++b] = $0}
            END {
                for (i = 1; i <= a; i++) {
                    split(n[i], N, " "); split(y[i], Y, " ")
                    t[i] = Y[3] / N[3]; e[i] = Y[4] / N[4]; j[i] = (N[5] > 0 ? Y[5] / N[5] : 0); d[i] = Y[6] / N[6]
                    c[i] = (N[7] > 0 ? Y[7] / N[7] : 0)
                    printf "uml-test:   pair %d: workload time %.3fx, boot-to-power-off %.3fx, CPU %.3fx, jbd2 blocks %.3fx, device blocks %.3fx\n", i, t[i], e[i], c[i], j[i], d[i]
                }
                printf "uml-test: %s over %d pairs: workload time min %.3fx median %.3fx; CPU min %.3fx median %.3fx; jbd2 blocks min %.3fx median %.3fx; device blocks min %.3fx median %.3fx (targets 1.10x time, 1.15x journal blocks)\n",
                    k, a, min(t, a), med(t, a), min(c, a), med(c, a), min(j, a), med(j, a), min(d, a), med(d, a)
            }
            function min(v, n,   i, m) { m = v[1]; for (i = 2; i <= n; i++) if (v[i] < m) m = v[i]; return m }
            function med(v, n,   i, j, x, w) { for (i = 1; i <= n; i++) w[i] = v[i]
                for (i = 2; i <= n; i++) { x = w[i]; for (j = i - 1; j >= 1 && w[j] > x; j--) w[j + 1] = w[j]; w[j + 1] = x }
                return n % 2 ? w[(n + 1) / 2] : (w[n / 2] + w[n / 2 + 1]) / 2 }' "$run/overhead.results"
    done
    exit 0
fi

IFS=, read -r -a kinds <<<"$images"
for k in "${kinds[@]}"; do
    run_case "$k" "$maps"
done
if [ $stock = 0 ] && [ "$maps" = yes ]; then
    for k in "${kinds[@]}"; do
        remount_cases "$k"
    done
fi
if [ $stock = 0 ] && [ "$maps" = yes ]; then
    # Acceptance 4: the stock kernel (if built: --stock --build-only) on
    # the last image, whose maps the patched kernel kept: it mounts and
    # writes, e2fsck stays clean, the maps read as stale; then the patched
    # kernel again, which must not keep them.
    if [ -x "$cache/obj-stock/linux" ]; then
        img=$run/${kinds[-1]}.img
        log "${kinds[-1]}: the stock kernel on the image the patched one wrote, seed $((seed + 1))"
        patched_kernel=$kernel kernel=$cache/obj-stock/linux seed=$((seed + 1))
        boot "$img"
        kernel=$patched_kernel seed=$((seed - 1))
        if grep -q 'jbtree: \|EXT4-fs error' "$run/console"; then grep 'jbtree: \|EXT4-fs error' "$run/console"; die "the stock kernel"; fi
        stock=1 check_image "$img" stale
        # Then the patched kernel on that image: the maps' stamp neither
        # describes the filesystem nor names its last mount (the stock
        # kernel's), so it must refuse to keep them, say so, and behave as
        # stock: the maps stay stale (not stamped again), e2fsck clean.
        log "${kinds[-1]}: the patched kernel on the image the stock one wrote, seed $((seed + 2))"
        seed=$((seed + 2))
        boot "$img"
        seed=$((seed - 2))
        no_ext4_error
        grep -q 'jbtree: maps at blocks .* are stale .*not kept' "$run/console" ||
            { grep -i jbtree "$run/console"; die "the patched kernel did not refuse the stale maps"; }
        if grep -q 'jbtree: maps opened\|jbtree: maps kept\|jbtree: [0-9]* changes' "$run/console"; then
            grep -i jbtree "$run/console"; die "the patched kernel kept the stale maps"
        fi
        log "  kernel: $(grep -o 'jbtree: maps at blocks .* are stale' "$run/console" | head -1): not kept"
        stock=1 check_image "$img" stale
    else
        log "no stock kernel in $cache/obj-stock: skipping the stock-after-patched check (run --stock --build-only)"
    fi
    # Without maps the patched kernel is stock; corrupt maps are refused.
    run_case "${kinds[0]}" no
    run_case "${kinds[0]}" corrupt
    # A change of the maps that fails: a map file of the size build gives
    # an empty filesystem fills up early (ENOSPC); the kernel gives the
    # maps up and marks their live stamp abandoned in that change's
    # handle: they read as stale, and the next patched mount refuses them.
    # (1 KiB blocks if the run has them: a quarter of the room.)
    k=${kinds[0]}
    for x in "${kinds[@]}"; do case $x in 1k-*) k=$x; break ;; esac; done
    img=$run/$k.img
    make_image "$k" "$img"
    "$tool" build "$img" >/dev/null
    log "$k: patched kernel, $ops operations, seed $seed, maps too small to be kept"
    boot "$img"
    cp "$run/console" "$run/console.$k.full"
    no_ext4_error
    if ! grep -q 'jbtree: .* failed (error -28): maps no longer kept' "$run/console"; then
        grep -q 'jbtree: maps kept, stamped at unmount' "$run/console" || { grep -i jbtree "$run/console"; die "the small maps were neither kept nor given up"; }
        log "  the map file did not fill up ($ops operations): kept to the unmount; the give-up case not tested (more --ops, or a 1k kind)"
    else
    grep -q 'jbtree: stamp marked abandoned in the same handle' "$run/console" ||
        { grep -i jbtree "$run/console"; die "the stamp was not marked abandoned in the failing handle"; }
    log "  kernel: $(grep -o 'jbtree: [^:]* failed (error -28)' "$run/console" | head -1); stamp marked abandoned in the same handle"
    "$tool" check "$img" >"$run/check.full" 2>&1 || true
    grep -q 'problem: stale.*the kernel stopped keeping them' "$run/check.full" ||
        { cat "$run/check.full"; die "jbtree-e2fs check does not report the abandoned maps as stale"; }
    stock=1 check_image "$img" stale
    boot "$img" mount
    grep -q 'jbtree: maps at blocks .* are stale .*not kept' "$run/console" ||
        { grep -i jbtree "$run/console"; die "the next patched mount did not refuse the abandoned maps"; }
    log "  the next patched mount: $(grep -o 'jbtree: maps at blocks .* are stale' "$run/console" | head -1): not kept"
    stock=1 check_image "$img" stale
    fi
fi
log "all images passed"
