#!/usr/bin/env bash
# Run every test: the GCC ASan/UBSan build's unit tests, the libFuzzer
# targets (clang) for FUZZ_SECONDS each, the release quickstart and the ext4
# demo (scripts/e2fs_demo.sh), and a clang release build; every build with
# warnings as errors.
# Ends with one line "tests: N passed, N failed[, N skipped]"; exits non-zero
# if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
. scripts/lib.sh

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
passed=0
failed=0
skipped=0
failures=()

fail() { # fail NAME: one failed test
    failed=$((failed + 1))
    failures+=("$1")
    echo "FAILED: $1"
}

jbtree_ensure_packages

# ---- (a) GCC, ASan + UBSan: the unit tests ----------------------------------
# Warnings are errors in every build here (-Dwerror=true). A target that
# does not compile (a warning, say) is one failure; the other targets are
# still built (ninja -k 0) and the tests whose programs exist still run.
echo "==> build/asan (g++, address+undefined sanitizers, -Werror)"
if CXX=g++ jbtree_meson_setup build/asan -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbuildtype=debug -Dtests=enabled -Dfuzz=disabled -Dbench=enabled -Dwerror=true; then
    ninja -C build/asan -k 0 || fail "build/asan: compile (g++ debug, warnings are errors)"
    mapfile -t runnable < <(meson introspect --tests build/asan | python3 -c '
import json, os, sys
for t in json.load(sys.stdin):
    if os.path.exists(t["cmd"][0]):
        print(t["name"])')
    rm -f build/asan/meson-logs/testlog.json
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
        meson test -C build/asan --no-rebuild --print-errorlogs "${runnable[@]}" || true
    if [ -f build/asan/meson-logs/testlog.json ]; then
        counts=$(python3 - build/asan/meson-logs/testlog.json <<'PY'
import json, sys
p = f = s = 0
names = []
with open(sys.argv[1]) as fh:
    for line in fh:
        line = line.strip()
        if not line:
            continue
        t = json.loads(line)
        r = t.get("result")
        if r in ("OK", "EXPECTEDFAIL"):
            p += 1
        elif r == "SKIP":
            s += 1
        else:
            f += 1
            names.append("%s(%s)" % (t.get("name"), r))
print(p, f, s, ",".join(names) or "-")
PY
        ) || counts="0 1 0 testlog.json-unreadable"
        read -r p f s names <<<"$counts"
        passed=$((passed + p))
        skipped=$((skipped + s))
        failed=$((failed + f))
        [ "$names" = "-" ] || failures+=("build/asan: $names")
        if [ $((p + f + s)) -eq 0 ]; then fail "build/asan: no tests ran"; fi
    else
        fail "build/asan: meson test wrote no testlog.json"
    fi
else
    fail "build/asan: configure"
fi

# ---- (b) clang + libFuzzer: each fuzz target for FUZZ_SECONDS ---------------
echo "==> build/fuzz (clang++, libFuzzer, ${FUZZ_SECONDS}s per target; examples and tool, -Werror)"
if CXX=clang++ CC=clang jbtree_meson_setup build/fuzz -Dfuzz=enabled -Dtests=disabled -Dbench=disabled \
        -Dbuildtype=debugoptimized -Dwerror=true &&
    meson compile -C build/fuzz; then
    mkdir -p build/fuzz/artifacts
    for t in node ops recovery model; do
        exe=$root/build/fuzz/fuzz/fuzz-$t
        if [ ! -x "$exe" ]; then
            fail "fuzz-$t: not built"
            continue
        fi
        work=$(mktemp -d)
        # Seeds are copied so that new inputs land in the temp dir, not the repo.
        cp -r "$root/fuzz/corpus/$t/." "$work/" 2>/dev/null || true
        echo "--- fuzz-$t"
        if (cd "$root/build/fuzz/artifacts" &&
            UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                "$exe" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=4096 \
                -artifact_prefix="$root/build/fuzz/artifacts/fuzz-$t-" -print_final_stats=1 \
                "$work" "$root/fuzz/corpus/$t" >"$root/build/fuzz/fuzz-$t.log" 2>&1); then
            passed=$((passed + 1))
            grep -E '^(Done|stat::number_of_executed_units)' "$root/build/fuzz/fuzz-$t.log" || true
        else
            tail -n 40 "$root/build/fuzz/fuzz-$t.log"
            fail "fuzz-$t (log: build/fuzz/fuzz-$t.log, artifacts: build/fuzz/artifacts/)"
        fi
        rm -rf "$work"
    done
else
    fail "build/fuzz: configure or compile"
fi

# ---- (c) GCC release build of the examples: quickstart and the ext4 demo ----
echo "==> build/release (g++, release, -Werror): quickstart, ext4 demo"
if jbtree_build_release -Dwerror=true; then
    if build/release/examples/jbtree-quickstart; then
        passed=$((passed + 1))
    else
        fail "release quickstart"
    fi
    demo_dir=$(mktemp -d /tmp/jbtree-demo-XXXXXX)
    if bash scripts/e2fs_demo.sh build/release/tools/jbtree-e2fs "$demo_dir" >"$demo_dir.log" 2>&1; then
        passed=$((passed + 1))
        tail -n 3 "$demo_dir.log"
    else
        tail -n 40 "$demo_dir.log"
        fail "ext4 demo (scripts/e2fs_demo.sh)"
    fi
    rm -rf "$demo_dir" "$demo_dir.log"
else
    fail "build/release: configure or compile"
fi

# ---- (d) clang release build of the examples and the tool, -Werror ----------
# (GCC release: (c); GCC debug: (a); clang with optimisation: (b).)
echo "==> build/clang-release (clang++, release, -Werror): examples, jbtree-e2fs"
if CXX=clang++ CC=clang jbtree_meson_setup build/clang-release -Dbuildtype=release -Db_ndebug=true \
        -Dwerror=true -Dexamples=enabled -Dtool=enabled -Dtests=disabled -Dbench=disabled -Dfuzz=disabled &&
    meson compile -C build/clang-release; then
    passed=$((passed + 1))
else
    fail "build/clang-release: configure or compile (clang release, warnings are errors)"
fi

# ---- summary ----------------------------------------------------------------
if [ ${#failures[@]} -gt 0 ]; then
    echo "failures:"
    printf '  %s\n' "${failures[@]}"
fi
line="tests: $passed passed, $failed failed"
[ "$skipped" -eq 0 ] || line+=", $skipped skipped"
echo "$line"
[ "$failed" -eq 0 ]
