#!/usr/bin/env bash
# The damage campaign of tests/test_damage.cpp at full size, outside CI:
# jbtree-e2fs owner/paths/refcount/check on images whose stored maps or
# filesystem metadata were damaged (docs/e2fsprogs.md, "Damage campaign").
#
#   scripts/damage_campaign.sh [VARIANTS [SEED]]     default 3000 variants, seed 1
#
# Builds jbtree-e2fs and the test with ASan + UBSan (a sanitizer report is a
# failure) in $BUILD (default build/damage-campaign), runs the variants and
# prints the per-class counts; every variant and every command's outcome is
# in $BUILD/damage-campaign-SEED.log. Exits non-zero if any variant
# crashed, hung, answered wrongly, failed silently or changed the image.
# Runs of different seeds are independent (run several in parallel).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

variants=${1:-3000}
seed=${2:-1}
build=${BUILD:-build/damage-campaign}

jbtree_ensure_packages meson ninja-build g++ doctest-dev pkg-config libext2fs-dev e2fsprogs attr
CXX=${CXX:-g++} jbtree_meson_setup "$build" -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debugoptimized -Dtests=enabled -Dfuzz=disabled -Dbench=disabled >/dev/null
ninja -C "$build" tools/jbtree-e2fs tests/test-damage

log="$build/damage-campaign-$seed.log"
echo "damage campaign: $variants variants, seed $seed (log: $log)"
start=$(date +%s)
status=0
JBTREE_DAMAGE_VARIANTS=$variants JBTREE_DAMAGE_SEED=$seed JBTREE_DAMAGE_VERBOSE=1 \
    "$build/tests/test-damage" >"$log" 2>&1 || status=$?
grep -E 'MESSAGE: ([0-9a-z-]+: |  e\.g\.|[0-9]+ variants)' "$log" | sed 's/^.*MESSAGE: //' || true
if [ "$status" -ne 0 ]; then
    echo "FAILED (exit $status): the first failures, from $log:"
    grep -A8 -E 'MESSAGE: (undocumented|sanitizer|non-zero exit|--json|map damage|map node damage|check does not)' "$log" | head -80 || true
fi
echo "damage campaign: $(( $(date +%s) - start )) s"
exit "$status"
