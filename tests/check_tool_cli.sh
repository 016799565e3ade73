#!/usr/bin/env bash
# jbtree-e2fs's command line and manual page.
#
#   bash tests/check_tool_cli.sh TOOL SOURCE_ROOT VERSION
#
# (a) --help, -h and help print the usage (every command) on stdout, exit 0,
#     nothing on stderr; --version prints "jbtree-e2fs VERSION (libext2fs
#     ...)", exit 0; no arguments is a usage error (exit 2, usage on stderr);
# (b) docs/jbtree-e2fs.8 renders without a warning (groff -ww, and man -l
#     when man is there), names VERSION, every command and option;
# (c) every error code of the tool (its describe() table) is in the manual
#     page and in docs/e2fsprogs.md with the same exit status.
# Exit 0 = pass, 1 = fail.
set -uo pipefail

tool=$1
root=$2
version=$3
man=$root/docs/jbtree-e2fs.8
src=$root/tools/jbtree_e2fs.cpp
doc=$root/docs/e2fsprogs.md
fail=0
bad() {
    echo "FAIL: $*"
    fail=1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
commands=(build check owner paths refcount replay)

# ---- (a) the command line -----------------------------------------------------
for h in --help -h help; do
    "$tool" "$h" >"$tmp/out" 2>"$tmp/err"
    st=$?
    [ $st -eq 0 ] || bad "jbtree-e2fs $h: exit $st"
    [ ! -s "$tmp/err" ] || bad "jbtree-e2fs $h wrote on stderr: $(head -n 3 "$tmp/err")"
    grep -q '^usage: jbtree-e2fs ' "$tmp/out" || bad "jbtree-e2fs $h: no usage line on stdout"
    for c in "${commands[@]}" --json --version; do
        grep -q -- "jbtree-e2fs $c\|$c " "$tmp/out" || bad "jbtree-e2fs $h does not mention $c"
    done
done
"$tool" --version >"$tmp/out" 2>"$tmp/err"
st=$?
[ $st -eq 0 ] || bad "jbtree-e2fs --version: exit $st"
line=$(head -n 1 "$tmp/out")
case "$line" in
    "jbtree-e2fs $version (libext2fs "*")") echo "--version: $line" ;;
    *) bad "jbtree-e2fs --version says '$line', not 'jbtree-e2fs $version (libext2fs ...)'" ;;
esac
"$tool" >"$tmp/out" 2>"$tmp/err"
st=$?
[ $st -eq 2 ] || bad "jbtree-e2fs without arguments: exit $st, not 2"
grep -q '^usage: jbtree-e2fs ' "$tmp/err" || bad "jbtree-e2fs without arguments: no usage on stderr"
"$tool" --json owner >"$tmp/out" 2>/dev/null
grep -q '"error":"usage"' "$tmp/out" || bad "jbtree-e2fs --json owner: no usage error object: $(cat "$tmp/out")"

# ---- (b) the manual page --------------------------------------------------------
grep -q "^\.TH JBTREE-E2FS 8 .*\"jbtree $version\"" "$man" || bad "docs/jbtree-e2fs.8: .TH does not say jbtree $version"
for c in "${commands[@]}"; do
    grep -q "^\.B jbtree-e2fs $c" "$man" || bad "docs/jbtree-e2fs.8: $c is not in the synopsis"
    grep -q "^\.BI $c \"" "$man" || bad "docs/jbtree-e2fs.8: no entry for the command $c"
done
for s in 'SYNOPSIS' 'DESCRIPTION' 'COMMANDS' 'OPTIONS' 'EXIT STATUS' 'ERRORS' 'EXAMPLES' 'CAVEATS' 'SEE ALSO'; do
    grep -q "^\.SH $s\$" "$man" || bad "docs/jbtree-e2fs.8: no section $s"
done
for o in '\\-\\-json' '\\-\\-help' '\\-\\-version'; do
    grep -q "$o" "$man" || bad "docs/jbtree-e2fs.8: option $o not described"
done
if command -v groff >/dev/null 2>&1; then
    LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$man" 2>"$tmp/groff.err"
    [ ! -s "$tmp/groff.err" ] || bad "groff warns on docs/jbtree-e2fs.8: $(head -n 5 "$tmp/groff.err")"
    LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -P-cbu "$man" >"$tmp/page" 2>/dev/null
    grep -q 'EXIT STATUS' "$tmp/page" || bad "groff rendered no EXIT STATUS section"
    rendered=groff
else
    rendered=
    echo "note: groff not found (apt-get install groff-base): the manual page is not rendered"
fi
if command -v man >/dev/null 2>&1; then
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$man" >"$tmp/man.out" 2>"$tmp/man.err"
    [ ! -s "$tmp/man.err" ] || bad "man -l warns on docs/jbtree-e2fs.8: $(head -n 5 "$tmp/man.err")"
    grep -q 'jbtree-e2fs' "$tmp/man.out" || bad "man -l docs/jbtree-e2fs.8 rendered nothing"
    rendered="$rendered${rendered:+, }man -l"
fi

# ---- (c) error codes: the tool, the manual page and docs/e2fsprogs.md -----------
mapfile -t codes < <(sed -nE 's/^ *case ecode::([a-z_]+): return \{"([a-z_]+)", ([0-9]+)\};.*/\2 \3/p' "$src")
[ ${#codes[@]} -ge 10 ] || bad "found only ${#codes[@]} error codes in $src"
for cs in "${codes[@]}"; do
    read -r code status <<<"$cs"
    grep -q "^\.BR $code \" ($status)\"\$" "$man" || bad "docs/jbtree-e2fs.8: error code $code ($status) missing or with another status"
    grep -q "^| \`$code\` | $status |" "$doc" || bad "docs/e2fsprogs.md: error code $code ($status) missing or with another status"
done

if [ $fail -ne 0 ]; then
    exit 1
fi
echo "OK: --help, -h, help, --version; manual page (${rendered:-not rendered}) with ${#codes[@]} error codes as in the tool and docs/e2fsprogs.md"
