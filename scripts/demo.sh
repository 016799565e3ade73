#!/usr/bin/env bash
# The main job: build jbtree-e2fs (release) and run the ext4 demo
# (scripts/e2fs_demo.sh): a generated tree made into an ext4 image, its
# three maps built and stored in it, sample queries beside debugfs, check.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

jbtree_ensure_packages meson ninja-build g++ pkg-config libext2fs-dev e2fsprogs
jbtree_build_release
exec bash scripts/e2fs_demo.sh build/release/tools/jbtree-e2fs "$@"
