#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build e2fsprogs v1.47.4 with jbtree's patch series (contrib/e2fsprogs/)
# and jbtree-e2fs against the tarball's libext2fs.
#
#   bash scripts/e2fsprogs.sh [BUILD_DIR]        (default build/e2fsprogs)
#
# Environment: E2FSPROGS_TARBALL (default ../shared/vendor/e2fsprogs-1.47.4.tar.xz),
# JOBS (default: the number of cores).
#
# What it does, in BUILD_DIR:
#   e2fsprogs-1.47.4/   the tarball unpacked, `git init`ed with the pristine
#                       tree as its first commit, the patches applied with
#                       `git am`, configured --with-jbtree=<this checkout>
#                       and built: the libraries, debugfs, e2fsck, the
#                       programs the tests call (mke2fs, tune2fs, dumpe2fs)
#                       and tests/test_one;
#   jbtree-e2fs         tools/jbtree_e2fs.cpp compiled against that tree's
#                       headers and static libext2fs.a / libcom_err.a (so
#                       the adapter is built against 1.47.4 as well as the
#                       system's libext2fs), and run: --version.
# A stamp (the tarball's and the patches' checksums) keeps an existing
# tree when neither changed: then only `make` runs again (the jbtree TU is
# recompiled when jbtree's headers changed). Exit 77 with "SKIP: reason"
# when the tarball is absent, 1 on any failure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build/e2fsprogs}
tarball=${E2FSPROGS_TARBALL:-$root/../shared/vendor/e2fsprogs-1.47.4.tar.xz}
jobs=${JOBS:-$(nproc)}
version=1.47.4
tree=$build/e2fsprogs-$version

say() { printf 'e2fsprogs.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

if [[ ! -f $tarball ]]; then
    echo "SKIP: e2fsprogs tarball not found ($tarball)"
    exit 77
fi
for t in git make gcc g++ xz; do
    command -v "$t" >/dev/null || die "$t is needed (apt-get install git make gcc g++ xz-utils)"
done

mkdir -p "$build"
build=$(cd "$build" && pwd)
tree=$build/e2fsprogs-$version
shopt -s nullglob
patches=("$root"/contrib/e2fsprogs/*.patch)
shopt -u nullglob

# What the tree is made of: the tarball, the patches, this script.
stamp_of() {
    {
        sha256sum "$tarball" | cut -d' ' -f1
        for p in "${patches[@]}"; do sha256sum "$p" | cut -d' ' -f1; done
        sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
    } | sha256sum | cut -d' ' -f1
}
# What the jbtree translation unit is made of: jbtree's headers.
jbtree_stamp_of() {
    find "$root/include/jbtree" -type f -name '*.h*' -print0 | sort -z | xargs -0 cat | sha256sum | cut -d' ' -f1
}

want=$(stamp_of)
have=$(cat "$build/.stamp" 2>/dev/null || true)
if [[ $want != "$have" || ! -d $tree/.git ]]; then
    say "unpacking $(basename "$tarball") into $tree"
    rm -rf "$tree" "$build/.stamp" "$build/.jbtree-stamp"
    tar -C "$build" -xf "$tarball"
    [[ -d $tree ]] || die "the tarball did not unpack to e2fsprogs-$version/"
    git_id=(-c user.name=jbtree -c user.email=jbtree@invalid -c commit.gpgsign=false)
    (
        cd "$tree"
        git init -q
        git add -A
        git "${git_id[@]}" commit -q -m "e2fsprogs v$version (pristine, from $(basename "$tarball"))"
        git tag pristine
        if ((${#patches[@]})); then
            say "applying ${#patches[@]} patches from contrib/e2fsprogs/"
            git "${git_id[@]}" am -q --keep-cr "${patches[@]}" || { git am --abort || true; exit 1; }
        fi
    ) || die "could not apply the patch series"
    say "configuring (--with-jbtree=$root)"
    (
        cd "$tree"
        ./configure CXX=g++ --with-jbtree="$root" --disable-nls --disable-fuse2fs --disable-defrag \
            --disable-imager --disable-resizer --disable-uuidd --disable-e2initrd-helper --disable-fsck \
            --disable-e2scrub --without-libarchive >"$build/configure.log" 2>&1
    ) || die "configure failed (see $build/configure.log)"
    echo "$want" >"$build/.stamp"
fi

jb=$(jbtree_stamp_of)
if [[ $jb != "$(cat "$build/.jbtree-stamp" 2>/dev/null || true)" ]]; then
    rm -f "$tree/lib/support/jbtree_maps.o"
fi

say "building (make -j$jobs; log in $build/make.log)"
(
    cd "$tree"
    make -j"$jobs" top-deps
    make -j"$jobs" libs
    make -j"$jobs" -C e2fsck e2fsck
    make -j"$jobs" -C debugfs debugfs
    make -j"$jobs" -C misc mke2fs tune2fs dumpe2fs
    make -C tests test_one test_script
) >"$build/make.log" 2>&1 || { tail -n 30 "$build/make.log" >&2; die "make failed (see $build/make.log)"; }
echo "$jb" >"$build/.jbtree-stamp"

# jbtree-e2fs against 1.47.4's headers and static libraries.
tool=$build/jbtree-e2fs
if [[ ! -x $tool || $tool -ot $tree/lib/libext2fs.a || $jb != "$(cat "$build/.tool-stamp" 2>/dev/null || true)" ||
    $tool -ot $root/tools/jbtree_e2fs.cpp ]]; then
    say "compiling jbtree-e2fs against e2fsprogs $version's libext2fs"
    g++ -std=c++20 -O2 -Wall -Wextra -Werror -I"$root/include" -I"$tree/lib" \
        -o "$tool" "$root/tools/jbtree_e2fs.cpp" "$tree/lib/libext2fs.a" "$tree/lib/libcom_err.a" \
        2>"$build/tool.log" || { cat "$build/tool.log" >&2; die "jbtree-e2fs does not compile against $version"; }
    echo "$jb" >"$build/.tool-stamp"
fi
"$tool" --version >/dev/null || die "$tool --version failed"
say "ready: $tree/debugfs/debugfs, $tree/e2fsck/e2fsck, $tool"
