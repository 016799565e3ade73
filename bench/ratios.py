#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Summarise jbtree-bench JSON output as markdown tables.

Usage:
    jbtree-bench --benchmark_out=run.json --benchmark_out_format=json
    python3 bench/ratios.py run.json [more.json ...]      # or '-' for stdin

Benchmarks are named <op>/<container>/<n>[/...]. For every op and n this
prints ns/item (real time / n: wall or thread CPU time, as the run's
jbtree_bench_clock context says) for jbtree, jbtree with checksums on,
absl::btree_map, frozenca::BTreeMap and std::map, and the ratios jbtree/absl,
jbtree/frozenca, jbtree/fastest peer (below 1.0: jbtree is faster) and
checksums on/off; then bytes per entry after each kind of fill; then the
node-size sweep (JBTREE_BENCH_NODE_SIZES=1) if the run has one; then the
status of the project's performance targets. With repetitions, the median
aggregate is used.
"""

import json
import sys
from collections import defaultdict

JB, CSUM = "jbtree", "jbtree_csum"
PEERS = ("absl", "frozenca", "std")
CONTAINERS = (JB, CSUM) + PEERS
OPS = ("insert_random", "insert_ascending", "bulk_load", "find", "iterate", "erase")
FILLS = ("insert_random", "insert_ascending", "bulk_load")
TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def load(paths):
    """({(op, container, n): benchmark entry}, context), medians preferred."""
    runs = defaultdict(list)
    medians = {}
    context = {}
    for path in paths:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
        # Tolerate console output before the JSON document.
        data = json.loads(text[text.index("{"):])
        context.update(data.get("context", {}))
        for b in data.get("benchmarks", []):
            parts = b.get("run_name", b["name"]).split("/")
            if len(parts) < 3 or not parts[2].isdigit():
                continue
            key = (parts[0], parts[1], int(parts[2]))
            if b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == "median":
                    medians[key] = b
            elif not b.get("error_occurred"):
                runs[key].append(b)
    out = {}
    for key, bs in runs.items():
        out[key] = medians.get(key, bs[-1] if len(bs) == 1 else mean_entry(bs))
    for key, b in medians.items():
        out.setdefault(key, b)
    return out, context


def mean_entry(bs):
    m = dict(bs[-1])
    for field in ("real_time", "cpu_time", "bytes_per_entry"):
        vals = [b[field] for b in bs if field in b]
        if vals:
            m[field] = sum(vals) / len(vals)
    return m


def ns_per_item(b, n):
    return b["real_time"] * TO_NS[b.get("time_unit", "ns")] / n


def fmt(x, digits=1):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def ratio(a, b):
    return a / b if a is not None and b else None


def n_label(n):
    e = len(str(n)) - 1
    return f"1e{e}" if n == 10**e else str(n)


def times(res, op, n, containers):
    return {c: ns_per_item(res[(op, c, n)], n) if (op, c, n) in res else None for c in containers}


def fastest_peer(t):
    """(name, ns) of the fastest peer measured (absl, frozenca; std::map never is)."""
    best = None
    for c in ("absl", "frozenca"):
        if t.get(c) is not None and (best is None or t[c] < best[1]):
            best = (c, t[c])
    return best


def time_table(res):
    ns = sorted({k[2] for k in res})
    lines = [
        "| op | n | jbtree | jbtree csum | absl | frozenca | std::map "
        "| jbtree/absl | jbtree/frozenca | jbtree/fastest peer | csum/jbtree |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = {}
    for op in OPS:
        for n in ns:
            t = times(res, op, n, CONTAINERS)
            if all(v is None for v in t.values()):
                continue
            fp = fastest_peer(t)
            r = {
                "absl": ratio(t[JB], t["absl"]),
                "frozenca": ratio(t[JB], t["frozenca"]),
                "fastest": ratio(t[JB], fp[1]) if fp else None,
                "fastest_name": fp[0] if fp else None,
                "csum": ratio(t[CSUM], t[JB]),
            }
            rows[(op, n)] = (t, r)
            lines.append(
                f"| {op} | {n_label(n)} | {fmt(t[JB])} | {fmt(t[CSUM])} | {fmt(t['absl'])} | {fmt(t['frozenca'])} "
                f"| {fmt(t['std'])} | {fmt(r['absl'], 2)} | {fmt(r['frozenca'], 2)} "
                f"| {fmt(r['fastest'], 2)}{' (' + fp[0] + ')' if fp else ''} | {fmt(r['csum'], 2)} |"
            )
    return "\n".join(lines), rows


def memory_table(res):
    ns = sorted({k[2] for k in res})
    lines = [
        "| fill | n | jbtree B/entry | absl B/entry | frozenca B/entry | std::map B/entry "
        "| jbtree leaf fill (permille) | jbtree stats B/record |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = {}
    for op in FILLS:
        for n in ns:
            b = {c: res.get((op, c, n), {}).get("bytes_per_entry") for c in CONTAINERS}
            if all(v is None for v in b.values()):
                continue
            jb = res.get((op, JB, n), {})
            fill = jb.get("leaf_fill_permille")
            bpr = jb.get("bytes_per_record_x100")
            rows[(op, n)] = b[JB]
            label = op if op != "bulk_load" else "bulk_load (jbtree fill 100; others emplace_hint(end) or ascending)"
            lines.append(
                f"| {label} | {n_label(n)} | {fmt(b[JB], 2)} | {fmt(b['absl'], 2)} | {fmt(b['frozenca'], 2)} "
                f"| {fmt(b['std'], 2)} | {fmt(fill, 0)} | {fmt(bpr / 100 if bpr is not None else None, 2)} |"
            )
    return "\n".join(lines), rows


def node_size_table(res):
    sizes = sorted({int(c.split("_")[1]) for (_, c, _) in res if c.startswith("jbtree_") and c.split("_")[1].isdigit()})
    if not sizes:
        return ""
    sizes = sorted(set(sizes) | {4096})
    names = {s: JB if s == 4096 else f"jbtree_{s}" for s in sizes}
    ns = sorted({k[2] for k in res})
    head = "| op | n | " + " | ".join(f"{s} B" for s in sizes) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(sizes)]
    for op in ("insert_random", "find", "erase", "iterate"):
        for n in ns:
            t = [ns_per_item(res[(op, names[s], n)], n) if (op, names[s], n) in res else None for s in sizes]
            if all(v is None for v in t):
                continue
            lines.append(f"| {op} ns/item | {n_label(n)} | " + " | ".join(fmt(v) for v in t) + " |")
    for n in ns:
        b = [res.get(("insert_random", names[s], n), {}).get("bytes_per_entry") for s in sizes]
        if any(v is not None for v in b):
            lines.append(f"| B/entry, random | {n_label(n)} | " + " | ".join(fmt(v, 2) for v in b) + " |")
    return "\n".join(lines)


def targets(trows, mrows):
    lines = ["| target | n | value | status |", "|---|---:|---:|---|"]

    def add(name, n, value, ok):
        if value is None:
            return
        lines.append(f"| {name} | {n_label(n)} | {value:.2f} | {'met' if ok else 'MISSED'} |")

    for n in (10**6, 10**7):
        for op, name in (("find", "find"), ("insert_random", "insert (random)"), ("erase", "erase")):
            r = trows.get((op, n))
            if not r:
                continue
            add(f"{name} jbtree/absl <= 0.90", n, r[1]["absl"], r[1]["absl"] is not None and r[1]["absl"] <= 0.90)
            if r[1]["fastest"] is not None:
                add(f"{name} jbtree/fastest peer ({r[1]['fastest_name']}) <= 1.00", n, r[1]["fastest"],
                    r[1]["fastest"] <= 1.0)
        for op, name, limit in (("find", "find", 1.15), ("insert_random", "insert (random)", 1.3), ("erase", "erase", 1.3)):
            r = trows.get((op, n))
            if r and r[1]["csum"] is not None:
                add(f"{name} checksums on/off <= {limit:.2f}", n, r[1]["csum"], r[1]["csum"] <= limit)
        r = trows.get(("iterate", n))
        if r and r[1]["absl"] is not None:
            add("iterate jbtree/absl <= 1.00", n, r[1]["absl"], r[1]["absl"] <= 1.0)
        v = mrows.get(("insert_random", n))
        add("B/entry after random inserts <= 19", n, v, v is not None and v <= 19)
        v = mrows.get(("bulk_load", n))
        add("B/entry after bulk load (fill 100) <= 16.5", n, v, v is not None and v <= 16.5)
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    res, context = load(argv[1:])
    if not res:
        print("ratios.py: no <op>/<container>/<n> benchmarks in the input", file=sys.stderr)
        return 1
    tt, trows = time_table(res)
    mt, mrows = memory_table(res)
    clock = context.get("jbtree_bench_clock", "wall (steady_clock)")
    print(f"### Time (ns per item, clock: {clock}; ratio < 1.0: jbtree faster)\n")
    print(tt)
    print("\n### Heap bytes per entry\n")
    print(mt)
    nt = node_size_table(res)
    if nt:
        print("\n### jbtree block size (checksums off)\n")
        print(nt)
    tg = targets(trows, mrows)
    if tg:
        print("\n### Targets\n")
        print(tg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
