#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Deepest stack of each kmaps_* entry point, from GCC's -fcallgraph-info=su
# output (a VCG graph: nodes with their frame size, edges for calls).
# Recursion (tree walks, bounded by the tree height) is counted once per
# cycle and flagged.
import re, sys
nodes, edges = {}, {}
for f in sys.argv[1:]:
    for line in open(f):
        m = re.match(r'node: \{ title: "([^"]+)" label: "([^"]*)"', line)
        if m:
            title, label = m.groups()
            sz = re.search(r'\\n(\d+) bytes', label)
            name = label.split('\\n')[0]
            nodes[title] = (name, int(sz.group(1)) if sz else 0)
            continue
        m = re.match(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', line)
        if m:
            edges.setdefault(m.group(1), set()).add(m.group(2))
memo = {}
def depth(t, stack):
    if t in stack:
        return 0, True
    if t in memo:
        return memo[t]
    own = nodes.get(t, ("?", 0))[1]
    best, rec = 0, False
    for c in edges.get(t, ()):
        d, r = depth(c, stack | {t})
        best, rec = max(best, d), rec or r
    memo[t] = (own + best, rec)
    return memo[t]
rows = []
for t, (name, _) in nodes.items():
    m = re.match(r'.*\b(kmaps_[a-z_]+)\(', name)
    if m and not re.search(r'lambda|<', name):
        d, rec = depth(t, frozenset())
        rows.append((d, m.group(1), rec))
for d, n, rec in sorted(rows, reverse=True):
    print(f"| `{n}` | {d}{' (+ recursion per tree level)' if rec else ''} |")
