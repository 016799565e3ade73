#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The kernel port's figures (docs/kernel.md, bench/README.md):
#   1. credits per kmaps call at tree heights 1-4;
#   2. the deepest stack of each kmaps_* entry point in the kernel-flag
#      build (the flags taken from the module's Kbuild command line);
#   3. instructions of the user-space shim's test run (valgrind callgrind)
#      with kmaps.cpp built with the kernel's code-generation flags (no
#      SSE, retpolines, return thunks, SLS hardening, no jump tables,
#      stack protector, zeroed locals; less -mcmodel=kernel and ftrace's
#      -pg/-mfentry, which cannot run in user space) against the same
#      test with the ordinary -O2 build, as a ratio of the instructions
#      spent in the maps' code.
#   bash bench/kernel/run.sh        (needs linux-headers-amd64, valgrind)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
kdir=${KDIR:-$(ls -d /lib/modules/*/build 2>/dev/null | sort -V | tail -n 1)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

echo "## Credits per call (buffer credits; revoke credits are the same)"
g++ -std=c++20 -O2 -I"$root/include" "$root/bench/kernel/credits.cpp" -o credits
./credits

echo
echo "## Deepest stack per entry point (bytes, kernel flags)"
cp "$root"/examples/kernel_module/{Kbuild,*.c,*.h} .
make -s -C "$kdir" M="$tmp" JBTREE_ROOT="$root" modules >/dev/null 2>&1
cmd=$(sed -n 's/^cmd_.*kmaps_cxx.o := *//p' .kmaps_cxx.o.cmd | sed 's/ ; .*objtool.*//')
cxx=${cmd%% *}
kflags=$(python3 -c '
import shlex, sys
w = shlex.split(sys.argv[1])[1:]
out, skip = [], False
for a in w:
    if skip: skip = False; continue
    if a == "-o": skip = True; continue
    if a == "-c" or a.startswith("-Wp,-MMD") or a.endswith(".cpp"): continue
    out.append(shlex.quote(a))
print(" ".join(out))' "$cmd")
mkdir cg && (cd cg && eval $cxx $kflags -fcallgraph-info=su -c "$root/examples/kernel_shim/kmaps.cpp" -o kmaps.o)
echo "| entry | deepest stack |"
echo "|---|---|"
python3 "$root/bench/kernel/stack_paths.py" cg/*.ci | head -24

echo
echo "## Instructions: kernel code generation against -O2 (callgrind)"
ucflags=$(echo "$kflags" | tr ' ' '\n' | grep -vE '^(-mcmodel=kernel|-pg|-mrecord-mcount|-mfentry|-DCC_USING_FENTRY|-DMODULE|-fstack-usage|-Werror=frame-larger-than=2048)$' | tr '\n' ' ')
base=(-std=c++20 -O2 -ffreestanding -fno-exceptions -fno-rtti -fno-threadsafe-statics
      -fno-asynchronous-unwind-tables -DJBTREE_NO_HW_CRC32C -I"$root/include" -I"$root/examples/kernel_shim")
shim=$root/examples/kernel_shim
gcc -std=c11 -O2 -g -I"$shim" -c "$shim/kshim.c" -o kshim.o
gcc -std=c11 -O2 -g -I"$shim" -c "$shim/test_kshim.c" -o test_kshim.o
g++ "${base[@]}" -g -c "$shim/kmaps.cpp" -o kmaps-o2.o
eval $cxx $ucflags -g -c "$shim/kmaps.cpp" -o kmaps-kernel.o
gcc -c "$root/bench/kernel/thunks.S" -o thunks.o
gcc -no-pie test_kshim.o kshim.o kmaps-o2.o -o t-o2
gcc -no-pie test_kshim.o kshim.o kmaps-kernel.o thunks.o -o t-kernel
for v in o2 kernel; do
    valgrind --tool=callgrind --callgrind-out-file=cg-$v.out ./t-$v >/dev/null 2>&1
    # Instructions in the maps' code: everything but the shim, the test, libc and the thunks.
    callgrind_annotate --auto=no --threshold=100 cg-$v.out 2>/dev/null | awk '
        /^ *[0-9,]+ .*PROGRAM TOTALS/ {gsub(",","",$1); total=$1}
        /^ *[0-9,]+ +\(/ && !/PROGRAM TOTALS|kshim\.c|test_kshim\.c|libc|ld-linux|thunks|\?\?\?:0x/ {n=$1; gsub(",","",n); maps+=n}
        END {printf "%s %s\n", total, maps}' >cg-$v.txt
done
read -r tot_o2 maps_o2 <cg-o2.txt
read -r tot_k maps_k <cg-kernel.txt
echo "| build | all instructions | in the maps' code |"
echo "|---|---|---|"
echo "| -O2 | $tot_o2 | $maps_o2 |"
echo "| kernel flags | $tot_k | $maps_k |"
python3 -c "print('| ratio | %.3f | %.3f |' % ($tot_k/$tot_o2, $maps_k/$maps_o2))"
echo "(return thunks taken by the kernel-flag build: $(objdump -dr kmaps-kernel.o | grep -c 'R_X86_64_PLT32.*__x86_return_thunk'))"
