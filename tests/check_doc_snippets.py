#!/usr/bin/env python3
# Every C++ and C code block of README.md and docs/*.md compiles, and runs
# when it has a main() (the convention: docs/api.md, "Code blocks in these
# documents").
#
#   python3 tests/check_doc_snippets.py [SOURCE_ROOT]
#
# A block fenced as ```cpp (or c++, cxx, cc) or ```c is a complete
# translation unit: compiled with $CXX -std=c++20 (or $CC -std=c11),
# -Wall -Wextra -Wpedantic -Werror and -I include/, then linked and run
# (exit status 0 wanted, 60 s at most) if it defines main(), else only
# compiled. A block fenced as ```cpp excerpt (or ```c excerpt) is part of a
# larger program and is not compiled. Any other C-family info string is an
# error, so a block cannot drop out of the check unnoticed.
# Exit 0 = pass, 1 = fail.
import os
import re
import shlex
import subprocess
import sys
import tempfile

CXX_LANGS = {"cpp", "c++", "cxx", "cc"}
C_LANGS = {"c"}
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*(.*)$")
MAIN = re.compile(r"^\s*int\s+main\s*\(", re.M)


def blocks(path):
    """(first line number, info words, text) of each fenced block."""
    out = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(2), m.group(3).strip()
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        out.append((start + 1, info.split(), "\n".join(lines[start:j]) + "\n"))
        i = j + 1
    return out


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    cxx = shlex.split(os.environ.get("CXX", "c++"))
    cc = shlex.split(os.environ.get("CC", "cc"))
    docs = [os.path.join(root, "README.md")]
    docdir = os.path.join(root, "docs")
    docs += sorted(os.path.join(docdir, f) for f in os.listdir(docdir) if f.endswith(".md"))
    warn = ["-Wall", "-Wextra", "-Wpedantic", "-Werror", "-I", os.path.join(root, "include")]
    failed = compiled = ran = excerpts = 0
    with tempfile.TemporaryDirectory(prefix="jbtree-doc-") as tmp:
        for doc in docs:
            rel = os.path.relpath(doc, root)
            for n, (line, words, text) in enumerate(blocks(doc)):
                if not words:
                    continue
                lang = words[0].lower()
                if lang not in CXX_LANGS | C_LANGS:
                    continue
                where = f"{rel}:{line}"
                extra = words[1:]
                if extra == ["excerpt"]:
                    excerpts += 1
                    continue
                if extra:
                    print(f"FAIL: {where}: unknown info string '{' '.join(words)}' (use ```{lang} or ```{lang} excerpt)")
                    failed += 1
                    continue
                is_c = lang in C_LANGS
                src = os.path.join(tmp, f"snippet{compiled}.{'c' if is_c else 'cpp'}")
                with open(src, "w", encoding="utf-8") as f:
                    f.write(f'#line {line} "{rel}"\n' + text)
                has_main = bool(MAIN.search(text))
                exe = os.path.join(tmp, f"snippet{compiled}")
                cmd = (cc + ["-std=c11"] if is_c else cxx + ["-std=c++20"]) + warn
                cmd += [src, "-o", exe] if has_main else ["-fsyntax-only", src]
                compiled += 1
                p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                if p.returncode != 0:
                    print(f"FAIL: {where}: the block does not compile ({' '.join(cmd[:2])} ...):")
                    print("\n".join(p.stdout.splitlines()[:40]))
                    failed += 1
                    continue
                if not has_main:
                    continue
                try:
                    r = subprocess.run([exe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       timeout=60, cwd=tmp)
                except subprocess.TimeoutExpired:
                    print(f"FAIL: {where}: the program did not finish in 60 s")
                    failed += 1
                    continue
                ran += 1
                if r.returncode != 0:
                    print(f"FAIL: {where}: the program exited with {r.returncode}:")
                    print("\n".join(r.stdout.splitlines()[-20:]))
                    failed += 1
    print(f"doc snippets: {compiled} compiled ({ran} run), {excerpts} marked as excerpts, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
