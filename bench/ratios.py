#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Summarise jbtree-bench JSON output as markdown tables.

Usage:
    jbtree-bench --benchmark_out=run.json --benchmark_out_format=json
    python3 bench/ratios.py run.json [more.json ...]      # or '-' for stdin

Benchmarks are named <op>/<container>/<n>[/...]. For every op and n this
prints ns/item (real time / n) for jbtree, absl::btree_map and std::map and
the ratios jbtree/absl and jbtree/std::map (below 1.0: jbtree is faster),
then bytes per entry after each kind of fill, then the status of the
project's performance targets. With repetitions, the median aggregate is used.
"""

import json
import sys
from collections import defaultdict

CONTAINERS = ("jbtree", "absl", "std")
OPS = ("insert_random", "insert_ascending", "bulk_load", "find", "iterate", "erase")
FILLS = ("insert_random", "insert_ascending", "bulk_load")
TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def load(paths):
    """{(op, container, n): benchmark entry}, medians preferred."""
    runs = defaultdict(list)
    medians = {}
    for path in paths:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
        # Tolerate console output before the JSON document.
        data = json.loads(text[text.index("{"):])
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
    return out


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


def time_table(res):
    ns = sorted({k[2] for k in res})
    lines = [
        "| op | n | jbtree ns/item | absl ns/item | std::map ns/item | jbtree/absl | jbtree/std::map |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = {}
    for op in OPS:
        for n in ns:
            t = {c: ns_per_item(res[(op, c, n)], n) if (op, c, n) in res else None for c in CONTAINERS}
            if all(v is None for v in t.values()):
                continue
            ra, rs = ratio(t["jbtree"], t["absl"]), ratio(t["jbtree"], t["std"])
            rows[(op, n)] = (t, ra, rs)
            lines.append(
                f"| {op} | {n_label(n)} | {fmt(t['jbtree'])} | {fmt(t['absl'])} | {fmt(t['std'])} "
                f"| {fmt(ra, 2)} | {fmt(rs, 2)} |"
            )
    return "\n".join(lines), rows


def memory_table(res):
    ns = sorted({k[2] for k in res})
    lines = [
        "| fill | n | jbtree B/entry | absl B/entry | std::map B/entry | jbtree leaf fill (permille) | jbtree stats B/record |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = {}
    for op in FILLS:
        for n in ns:
            b = {c: res.get((op, c, n), {}).get("bytes_per_entry") for c in CONTAINERS}
            if all(v is None for v in b.values()):
                continue
            jb = res.get((op, "jbtree", n), {})
            fill = jb.get("leaf_fill_permille")
            bpr = jb.get("bytes_per_record_x100")
            rows[(op, n)] = b["jbtree"]
            label = op if op != "bulk_load" else "bulk_load (jbtree fill 100; others emplace_hint(end))"
            lines.append(
                f"| {label} | {n_label(n)} | {fmt(b['jbtree'], 2)} | {fmt(b['absl'], 2)} | {fmt(b['std'], 2)} "
                f"| {fmt(fill, 0)} | {fmt(bpr / 100 if bpr is not None else None, 2)} |"
            )
    return "\n".join(lines), rows


def targets(trows, mrows):
    lines = ["| target | n | value | status |", "|---|---:|---:|---|"]

    def add(name, n, value, ok):
        if value is None:
            return
        lines.append(f"| {name} | {n_label(n)} | {value:.2f} | {'met' if ok else 'MISSED'} |")

    for n in (10**6, 10**7):
        for op, name in (("find", "find jbtree/absl <= 1.0"), ("insert_random", "insert (random) jbtree/absl <= 1.0"),
                         ("iterate", "iterate jbtree/absl <= 1.0")):
            r = trows.get((op, n))
            if r and r[1] is not None:
                add(name, n, r[1], r[1] <= 1.0)
        v = mrows.get(("insert_random", n))
        add("B/entry after random inserts <= 20", n, v, v is not None and v <= 20)
        v = mrows.get(("bulk_load", n))
        add("B/entry after bulk load (fill 100) <= 16.5", n, v, v is not None and v <= 16.5)
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    res = load(argv[1:])
    if not res:
        print("ratios.py: no <op>/<container>/<n> benchmarks in the input", file=sys.stderr)
        return 1
    tt, trows = time_table(res)
    mt, mrows = memory_table(res)
    print("### Time (ns per item; ratio < 1.0: jbtree faster)\n")
    print(tt)
    print("\n### Heap bytes per entry\n")
    print(mt)
    tg = targets(trows, mrows)
    if tg:
        print("\n### Targets\n")
        print(tg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
