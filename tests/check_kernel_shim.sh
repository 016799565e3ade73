#!/usr/bin/env bash
# The kernel shim (examples/kernel_shim/): build the maps' translation unit
# (kmaps.cpp) as kernel code is built, check that it needs nothing but the
# shim and four compiler builtins, link it with the C compiler driver (no
# C++ runtime) and run the C test that drives the maps through the shim.
#
#   bash tests/check_kernel_shim.sh [SOURCE_ROOT]
# Exit 0 = pass, 1 = fail, 77 = skipped (no compiler or nm).
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"
shim=examples/kernel_shim
read -r -a cxx <<<"${CXX:-c++}"
read -r -a cc <<<"${CC:-cc}"
for tool in "${cxx[0]}" "${cc[0]}" nm; do
    command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: $tool not found"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Kernel-style C++: freestanding, no exceptions, RTTI, thread-safe statics or
# unwind tables; no CPU-feature probing (the hardware CRC-32C path asks
# libgcc's cpu model).
kflags=(-std=c++20 -O2 -ffreestanding -fno-exceptions -fno-rtti -fno-threadsafe-statics
        -fno-asynchronous-unwind-tables -DJBTREE_NO_HW_CRC32C -fstack-usage -Wall -Wextra -Werror)
"${cxx[@]}" "${kflags[@]}" -Iinclude -I"$shim" -c "$shim/kmaps.cpp" -o "$tmp/kmaps.o"

# Undefined symbols: the shim's (every function kshim.h declares) and the
# compiler's memory builtins, nothing else.
mapfile -t shim_syms < <(grep -oE '^[a-z_0-9 ]+[ *]([a-z_0-9]+)\(' "$shim/kshim.h" | grep -oE '[a-z_0-9]+\($' | tr -d '(')
allowed=" ${shim_syms[*]} memcpy memmove memset memcmp "
bad=0
while read -r sym; do
    case "$allowed" in *" $sym "*) ;; *) echo "FAIL: kmaps.o needs $sym"; bad=1 ;; esac
done < <(nm -u "$tmp/kmaps.o" | awk '{print $2}')
[ $bad -eq 0 ] || exit 1
echo "OK: kmaps.o's undefined symbols: $(nm -u "$tmp/kmaps.o" | awk '{print $2}' | tr '\n' ' ')"

# Stack: the frames of the C entry points (callees the compiler did not
# inline have their own lines; the largest is shown too).
echo "stack (bytes, -fstack-usage): $(grep -E 'kmaps_[a-z_]+' "$tmp"/kmaps.su | awk -F'\t' '{print $1 "=" $2}' | sed 's/.*:\(kmaps_[a-z_]*\)=/\1=/' | sort -t= -k2 -n -r | head -4 | tr '\n' ' ')"
echo "largest frame of any function: $(sort -t$'\t' -k2 -n -r "$tmp"/kmaps.su | head -1 | awk -F'\t' '{print $2}') bytes"

# The C side, and the link by the C driver alone.
cflags=(-std=c11 -O1 -Wall -Wextra -pedantic -Werror)
"${cc[@]}" "${cflags[@]}" -I"$shim" -c "$shim/kshim.c" -o "$tmp/kshim.o"
"${cc[@]}" "${cflags[@]}" -I"$shim" -c "$shim/test_kshim.c" -o "$tmp/test_kshim.o"
"${cc[@]}" "$tmp/test_kshim.o" "$tmp/kshim.o" "$tmp/kmaps.o" -o "$tmp/test_kshim"
"$tmp/test_kshim"
