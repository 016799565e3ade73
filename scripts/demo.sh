#!/usr/bin/env bash
# Build the examples in release mode and run the quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

jbtree_ensure_packages meson ninja-build g++ pkg-config
jbtree_build_release
exec build/release/examples/jbtree-quickstart
