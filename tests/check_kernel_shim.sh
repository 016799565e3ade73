#!/usr/bin/env bash
# The maps as kernel code (issue "kernel port made real"): build the module
# examples/kernel_module/ (jbtree_kmaps.ko) against the installed kernel
# build tree (Debian: linux-headers-amd64), in a copy of the directory so the
# source tree stays clean, and check what a kernel developer would:
#   - Kbuild, modpost and objtool (run by the module's Kbuild with the
#     kernel's own arguments) report nothing: no warning, no unresolved symbol;
#   - kmaps_cxx.o, the C++ translation unit built with the kernel's own
#     code-generation flags, needs only kglue.h's functions, the kernel's
#     mem* functions and what those flags call (__fentry__, __stack_chk_fail,
#     the return/indirect-branch thunks);
#   - no SSE/AVX/MMX instruction, no store below %rsp (red zone), no plain
#     `ret` (return thunks), no indirect jump (jump tables), and no frame
#     over 2,048 bytes (-fstack-usage; the kernel builds with
#     -Wframe-larger-than=2048).
# Prints the stack of every kmaps_* entry point and the largest frame.
# The user-space run of the same code is the meson test kernel_shim.
#
#   bash tests/check_kernel_shim.sh [SOURCE_ROOT]
# Exit 0 = pass, 1 = fail, 77 = skipped (no kernel build tree or tools).
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"
kdir=${KDIR:-$(ls -d /lib/modules/*/build 2>/dev/null | sort -V | tail -n 1 || true)}
if [ -z "$kdir" ] || [ ! -f "$kdir/Makefile" ]; then
    echo "SKIP: no kernel build tree in /lib/modules/*/build (apt-get install linux-headers-amd64)"
    exit 77
fi
for tool in make nm objdump; do
    command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: $tool not found"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp examples/kernel_module/Kbuild examples/kernel_module/*.c examples/kernel_module/*.h "$tmp/"

fail=0
bad() { echo "FAIL: $*"; fail=1; }

if ! make -C "$kdir" M="$tmp" JBTREE_ROOT="$root" modules >"$tmp/build.log" 2>&1; then
    cat "$tmp/build.log"
    echo "FAIL: the module does not build against $kdir"
    exit 1
fi
# Everything Kbuild, the compilers, objtool and modpost said beyond the
# progress lines (BTF needs a vmlinux the headers package does not ship).
noise=$(grep -vE '^(make|  (CC|CXX|LD|MODPOST|BTF) |Skipping BTF generation)' "$tmp/build.log" || true)
[ -z "$noise" ] || bad "the module build said:"$'\n'"$noise"
[ -f "$tmp/jbtree_kmaps.ko" ] || bad "no jbtree_kmaps.ko"
echo "OK: jbtree_kmaps.ko built against $(basename "$(readlink -f "$kdir")")"

mapfile -t glue < <(grep -oE '^[a-z_0-9 ]+[ *]([a-z_0-9]+)\(' examples/kernel_shim/kglue.h | grep -oE '[a-z_0-9]+\($' | tr -d '(')
allowed=" ${glue[*]} memcpy memmove memset memcmp __fentry__ __stack_chk_fail __x86_return_thunk "
# kmaps_cxx.o (linked into the module) and e4maps_cxx.o (what the patched
# ext4 of contrib/linux links), both C++ under the kernel's flags.
for obj in "$tmp/kmaps_cxx.o" "$tmp/e4maps_cxx.o"; do
    o=$(basename "$obj")
    [ -f "$obj" ] || { bad "no $o"; continue; }
    while read -r sym; do
        case "$allowed" in *" $sym "*) ;; *)
            case "$sym" in __x86_indirect_thunk_*) ;; *) bad "$o needs $sym" ;; esac ;;
        esac
    done < <(nm -u "$obj" | awk '{print $2}')

    objdump -d --no-show-raw-insn "$obj" >"$tmp/dis.txt"
    n=$(grep -cE '%[xyz]mm[0-9]|%mm[0-7]' "$tmp/dis.txt" || true)
    [ "$n" -eq 0 ] || bad "$o: $n SSE/AVX/MMX instructions"
    n=$(grep -cE '^\s+[0-9a-f]+:\s+ret[q]?\s*$' "$tmp/dis.txt" || true)
    [ "$n" -eq 0 ] || bad "$o: $n plain ret instructions (return thunks expected)"
    n=$(grep -cE 'mov[a-z]*\s+[^,]+,-0x[0-9a-f]+\(%rsp\)' "$tmp/dis.txt" || true)
    [ "$n" -eq 0 ] || bad "$o: $n stores below %rsp (red zone)"
    n=$(grep -cE '\sjmp\s+\*' "$tmp/dis.txt" || true)
    [ "$n" -eq 0 ] || bad "$o: $n indirect jumps (jump tables)"
    echo "checked: $o ($(nm -u "$obj" | wc -l) undefined symbols, all glue or allowed)"
done

max=$(awk -F'\t' '$2 > m {m = $2} END {print m + 0}' "$tmp"/kmaps_cxx.su "$tmp"/e4maps_cxx.su) # (no `| head`: SIGPIPE under pipefail)
if [ "${max:-0}" -gt 2048 ]; then
    bad "a frame of $max bytes (over 2048), in:"
    awk -F'\t' '$2 > 2048 {print "  " $2 " " $1}' "$tmp"/kmaps_cxx.su "$tmp"/e4maps_cxx.su | cut -c1-300
fi
echo "frames (bytes, -fstack-usage, kernel flags):"
grep -E ':[0-9]+:[0-9]+:(int|void|uint64_t) kmaps_[a-z_]+\(' "$tmp"/kmaps_cxx.su | sed -E 's/^.* (kmaps_[a-z_]+)\(.*\)\t([0-9]+)\t.*/  \1 \2/' | sort -k2 -n -r
echo "  largest frame of any function: $max"
[ $fail -eq 0 ] && echo "OK: kernel code generation checks passed"
exit $fail
