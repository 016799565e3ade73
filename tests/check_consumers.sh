#!/usr/bin/env bash
# jbtree as its users get it: installed, then found by CMake and by
# pkg-config, and as a meson subproject.
#
#   bash tests/check_consumers.sh [SOURCE_ROOT]
#
# (a) `meson setup` with tests, bench, fuzz, examples and the tool disabled
#     defines no build target, and `meson install --destdir` installs the
#     headers, LICENSE, jbtree.pc and the CMake package (time printed);
# (b) tests/consumers/cmake: find_package(jbtree 0.1) on that tree, the
#     jbtree::jbtree target alone makes the program C++20; it runs and sees
#     this version; find_package(jbtree 1.0) and (0.0) are refused;
# (c) pkg-config --cflags jbtree on that tree: the program compiles with
#     -std=c++20 and runs; with -std=c++17 the first error is jbtree's
#     "jbtree needs C++20";
# (d) tests/consumers/meson: jbtree as a subproject adds no target and no
#     test of its own; the program builds with -Werror and runs.
# CXX (default c++) is the compiler. Exit 0 = pass, 1 = fail, 77 = cmake is
# missing (the other parts still ran and passed).
set -uo pipefail

root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
root=$(cd "$root" && pwd)
read -r -a cxx <<<"${CXX:-c++}"
cxx_path=$(command -v "${cxx[0]}" || true)
for tool in meson ninja pkg-config; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: $tool not found (apt-get install meson ninja-build pkg-config)"
        exit 77
    fi
done
if [ -z "$cxx_path" ]; then
    echo "SKIP: no C++ compiler (${CXX:-c++})"
    exit 77
fi
version=$(meson introspect --projectinfo "$root/meson.build" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
if [ -z "$version" ]; then
    echo "FAIL: cannot read the project version from $root/meson.build"
    exit 1
fi

tmp=$(mktemp -d /tmp/jbtree-consumers-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() {
    echo "FAIL: $*"
    fail=1
}
# run LOG CMD...: run quietly; on failure show the log's end.
run() {
    local log=$1
    shift
    if ! "$@" >"$log" 2>&1; then
        echo "--- $* failed; $log:"
        tail -n 30 "$log"
        return 1
    fi
}

# ---- (a) install, nothing built --------------------------------------------
echo "== install (tests, bench, fuzz, examples, tool disabled)"
stage=$tmp/stage
prefix=/usr/local
if run "$tmp/setup.log" env CXX="${cxx[*]}" meson setup "$tmp/build" "$root" --prefix="$prefix" \
        -Dtests=disabled -Dbench=disabled -Dfuzz=disabled -Dexamples=disabled -Dtool=disabled; then
    targets=$(meson introspect --targets "$tmp/build" |
        python3 -c 'import json, sys; print(" ".join(t["name"] for t in json.load(sys.stdin)))')
    [ -z "$targets" ] || bad "a headers-only configuration defines build targets: $targets"
    start=$(date +%s.%N)
    if run "$tmp/install.log" meson install -C "$tmp/build" --destdir "$stage"; then
        end=$(date +%s.%N)
        echo "meson install: $(python3 -c "print(f'{$end - $start:.2f}')") s"
        if grep -E '^\[[0-9]+/[0-9]+\] ' "$tmp/install.log"; then
            bad "meson install built something"
        fi
    else
        bad "meson install"
    fi
else
    bad "meson setup of the install build"
fi
inst=$stage$prefix
for f in include/jbtree/jbtree.hpp include/jbtree/version.hpp include/jbtree/base/config.hpp \
    include/jbtree/c/jbtree.h share/pkgconfig/jbtree.pc share/cmake/jbtree/jbtreeConfig.cmake \
    share/cmake/jbtree/jbtreeConfigVersion.cmake share/doc/jbtree/LICENSE; do
    [ -f "$inst/$f" ] || bad "not installed: $f"
done
if [ -e "$inst/bin/jbtree-e2fs" ] || [ -e "$inst/share/man/man8/jbtree-e2fs.8" ]; then
    bad "-Dtool=disabled installed the tool or its manual page"
fi

# ---- (c) pkg-config ---------------------------------------------------------
echo "== pkg-config consumer"
pc() { PKG_CONFIG_PATH=$inst/share/pkgconfig pkg-config --define-prefix "$@"; }
if [ "$(pc --modversion jbtree 2>/dev/null)" != "$version" ]; then
    bad "pkg-config --modversion jbtree is '$(pc --modversion jbtree 2>&1)', not $version"
fi
pc --print-variables jbtree >/dev/null 2>&1 || bad "pkg-config does not find jbtree.pc"
pc_cflags=$(pc --cflags jbtree 2>/dev/null)
case "$pc_cflags" in
    *"-I$inst/include"*) ;;
    *) bad "pkg-config --cflags jbtree is '$pc_cflags', not -I$inst/include" ;;
esac
pc --print-errors --exists 'jbtree >= 0.1' || bad "pkg-config: jbtree >= 0.1 not satisfied"
grep -q 'C++20' "$inst/share/pkgconfig/jbtree.pc" || bad "jbtree.pc does not say that jbtree needs C++20"
# shellcheck disable=SC2086
if run "$tmp/pc.log" "${cxx[@]}" -std=c++20 -Wall -Wextra -Wpedantic -Werror $pc_cflags \
        "$root/tests/consumers/main.cpp" -o "$tmp/pc-consumer"; then
    run "$tmp/pc-run.log" "$tmp/pc-consumer" "$version" && cat "$tmp/pc-run.log" || bad "pkg-config consumer: run"
else
    bad "pkg-config consumer: compile"
fi
# shellcheck disable=SC2086
if "${cxx[@]}" -std=c++17 $pc_cflags -fsyntax-only "$root/tests/consumers/main.cpp" >"$tmp/c17.log" 2>&1; then
    bad "compiled as C++17 without an error"
else
    first=$(grep -m1 -E 'error' "$tmp/c17.log")
    case "$first" in
        *"jbtree needs C++20 (-std=c++20)"*) echo "C++17: $first" ;;
        *) bad "as C++17 the first error is not jbtree's: $first" ;;
    esac
fi

# ---- (d) meson subproject -----------------------------------------------------
echo "== meson subproject consumer"
mc=$tmp/meson-consumer
mkdir -p "$mc/subprojects"
cp "$root/tests/consumers/meson/meson.build" "$root/tests/consumers/meson/meson_options.txt" \
    "$root/tests/consumers/main.cpp" "$mc/"
ln -s "$root" "$mc/subprojects/jbtree"
if run "$tmp/msetup.log" env CXX="${cxx[*]}" meson setup "$mc/build" "$mc" --force-fallback-for=jbtree \
        -Dexpect_version="$version"; then
    targets=$(meson introspect --targets "$mc/build" |
        python3 -c 'import json, sys; print(" ".join(sorted(t["name"] for t in json.load(sys.stdin))))')
    [ "$targets" = "consumer" ] || bad "the subproject adds build targets: $targets"
    tests=$(meson introspect --tests "$mc/build" |
        python3 -c 'import json, sys; print(" ".join(sorted(t["name"] for t in json.load(sys.stdin))))')
    [ "$tests" = "consumer" ] || bad "the subproject adds tests: $tests"
    if run "$tmp/mbuild.log" meson compile -C "$mc/build"; then
        steps=$(grep -cE '^\[[0-9]+/[0-9]+\] ' "$tmp/mbuild.log")
        echo "meson subproject: $steps build steps, tests: $tests"
        run "$tmp/mtest.log" meson test -C "$mc/build" || bad "meson consumer: test"
    else
        bad "meson consumer: compile"
    fi
else
    bad "meson consumer: setup"
fi

# ---- (b) CMake ----------------------------------------------------------------
echo "== CMake consumer"
if ! command -v cmake >/dev/null 2>&1; then
    if [ $fail -ne 0 ]; then
        exit 1
    fi
    echo "SKIP: cmake not found (apt-get install cmake): the CMake package is not checked (install, pkg-config and meson consumers passed)"
    exit 77
fi
cc=$tmp/cmake-consumer
mkdir -p "$cc/cmake"
cp "$root/tests/consumers/cmake/CMakeLists.txt" "$cc/cmake/"
cp "$root/tests/consumers/main.cpp" "$cc/"
cmake_gen=()
command -v ninja >/dev/null 2>&1 && cmake_gen=(-G Ninja)
if run "$tmp/cmake.log" cmake -S "$cc/cmake" -B "$cc/build" "${cmake_gen[@]}" \
        -DCMAKE_CXX_COMPILER="$cxx_path" -DCMAKE_PREFIX_PATH="$inst" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON; then
    grep -m1 'jbtree .* from' "$tmp/cmake.log"
    if run "$tmp/cmake-build.log" cmake --build "$cc/build"; then
        grep -qE -- '-std=(c|gnu)\+\+(20|2a)' "$cc/build/compile_commands.json" ||
            bad "jbtree::jbtree did not make the consumer C++20: $(grep -m1 command "$cc/build/compile_commands.json")"
        run "$tmp/cmake-run.log" "$cc/build/consumer" "$version" && cat "$tmp/cmake-run.log" || bad "CMake consumer: run"
    else
        bad "CMake consumer: build"
    fi
else
    bad "CMake consumer: configure (find_package(jbtree 0.1))"
fi
# The version file: 1.0 (another major) and 0.0 (another minor before 1.0)
# are refused; an exact request is accepted.
for want in 1.0 0.0 "$version"; do
    mkdir -p "$cc/v$want"
    sed "s/find_package(jbtree 0.1 REQUIRED CONFIG)/find_package(jbtree $want EXACT REQUIRED CONFIG)/" \
        "$cc/cmake/CMakeLists.txt" >"$cc/v$want/CMakeLists.txt"
    [ "$want" = "$version" ] || sed -i 's/ EXACT / /' "$cc/v$want/CMakeLists.txt"
    if cmake -S "$cc/v$want" -B "$cc/v$want/build" "${cmake_gen[@]}" -DCMAKE_CXX_COMPILER="$cxx_path" \
        -DCMAKE_PREFIX_PATH="$inst" >"$cc/v$want.log" 2>&1; then
        [ "$want" = "$version" ] || bad "find_package(jbtree $want) accepted version $version"
    else
        [ "$want" != "$version" ] || bad "find_package(jbtree $version EXACT) refused: $(tail -n 5 "$cc/v$want.log")"
    fi
done

if [ $fail -ne 0 ]; then
    exit 1
fi
echo "OK: installed tree (nothing built), CMake, pkg-config and meson subproject consumers of jbtree $version"
