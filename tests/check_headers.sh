#!/usr/bin/env bash
# Freestanding check of the library headers (DESIGN: "Library headers include
# only freestanding-safe standard headers").
#
#   bash tests/check_headers.sh [SOURCE_ROOT]
#
# For every header under include/jbtree/ except include/jbtree/hosted/ and
# include/jbtree/ext2fs/ (they need POSIX or libext2fs):
#   (a) every #include <...> must name an allowed standard header;
#   (b) the header must compile alone in its own translation unit with
#       -ffreestanding -fno-exceptions -fno-rtti and warnings as errors.
# Headers under a detail/ directory are fragments of their parent header
# (they #error when included alone), so they get (a) but not (b); their
# parent's compile covers them.
# Exit 0 = pass, 1 = fail, 77 = skipped (no compiler).
set -euo pipefail

root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

allowed=(cstdint cstddef type_traits concepts bit limits new stddef.h stdint.h)

read -r -a cxx <<<"${CXX:-c++}"
if ! command -v "${cxx[0]}" >/dev/null 2>&1; then
    echo "SKIP: no C++ compiler (${CXX:-c++}) found"
    exit 77
fi

mapfile -t headers < <(find include/jbtree -type f \( -name '*.hpp' -o -name '*.h' \) \
    -not -path 'include/jbtree/hosted/*' -not -path 'include/jbtree/ext2fs/*' \
    -not -path 'include/jbtree/c/e2fs.h' -not -path 'include/jbtree/c/detail/e2fs_implementation.hpp' \
    -not -path 'include/jbtree/c/detail/no_cxx_runtime.hpp' | LC_ALL=C sort)
# (The C interface to maps stored in an image, c/e2fs.h and its
# implementation, is hosted like ext2fs/: it needs libext2fs and libc.)
if [ ${#headers[@]} -eq 0 ]; then
    echo "FAIL: no headers found under $root/include/jbtree"
    exit 1
fi

fail=0

# (a) standard headers
for h in "${headers[@]}"; do
    while IFS= read -r line; do
        inc=${line#*<}
        inc=${inc%%>*}
        ok=0
        for a in "${allowed[@]}"; do
            [ "$inc" = "$a" ] && ok=1 && break
        done
        if [ $ok -eq 0 ]; then
            echo "FAIL: $h includes <$inc>, which is not in the freestanding set (${allowed[*]})"
            fail=1
        fi
    done < <(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*<' "$h" || true)
done

# (b) self-containment
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
compiled=0
# compile_tu WHAT LINE...: a translation unit of these lines, freestanding.
compile_tu() {
    local what=$1
    shift
    printf '%s\n' "$@" >"$tmp/tu.cpp"
    if ! out=$("${cxx[@]}" -std=c++20 -fsyntax-only -ffreestanding -fno-exceptions -fno-rtti \
        -Wall -Wextra -Wpedantic -Werror -I include "$tmp/tu.cpp" 2>&1); then
        echo "FAIL: $what does not compile (freestanding):"
        printf '%s\n' "$out" | head -n 30
        fail=1
    fi
    compiled=$((compiled + 1))
}
for h in "${headers[@]}"; do
    case "/$h" in */detail/*) continue ;; esac
    compile_tu "$h on its own" "#include <${h#include/}>"
done
# The C API's implementation is a fragment of jbtree/c/jbtree.h, compiled
# when JBTREE_C_IMPLEMENTATION is defined: check it that way too.
if [ -f include/jbtree/c/jbtree.h ]; then
    compile_tu "jbtree/c/jbtree.h with JBTREE_C_IMPLEMENTATION" "#define JBTREE_C_IMPLEMENTATION" "#include <jbtree/c/jbtree.h>"
fi

if [ $fail -ne 0 ]; then
    exit 1
fi
echo "OK: ${#headers[@]} headers use only <${allowed[*]}>; $compiled compiled alone with ${cxx[*]}"
