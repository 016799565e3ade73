#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Plot jbtree-bench JSON output as SVG with gnuplot.

Usage:
    python3 bench/plot.py OUTDIR run.json [more.json ...]

Writes into OUTDIR, for every op of the run (insert_random, find, erase,
iterate, insert_ascending, bulk_load), <op>.svg: ns per item against n, one
line per container, both axes logarithmic; and bytes_per_entry.svg: heap
bytes per entry after random inserts and after the sorted fill, against n.
The data files (<op>.dat, bytes_per_entry.dat) and the gnuplot script
(plots.gp) stay next to them. Needs gnuplot (Debian: gnuplot-nox). With
repetitions the medians are plotted (as in ratios.py).
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ratios  # noqa: E402  (same loading and median rules)

LABELS = {
    "jbtree": "jbtree (checksums off)",
    "jbtree_csum": "jbtree (checksums on)",
    "absl": "absl::btree_map",
    "frozenca": "frozenca::BTreeMap",
    "std": "std::map",
}
TITLES = {
    "insert_random": "random inserts into an empty map",
    "insert_ascending": "ascending inserts into an empty map",
    "bulk_load": "sorted fill (jbtree bulk_load; absl/std emplace_hint(end); frozenca ascending inserts)",
    "find": "successful lookups in random order",
    "iterate": "full in-order scan",
    "erase": "erasing every key in random order",
}


def containers_in(res):
    seen = {c for (_, c, _) in res}
    order = [c for c in ratios.CONTAINERS if c in seen]
    order += sorted(c for c in seen if c not in order)
    return order


def write_dat(path, ns, columns):
    with open(path, "w", encoding="utf-8") as f:
        f.write("# n " + " ".join(name for name, _ in columns) + "\n")
        for n in ns:
            vals = []
            for _, col in columns:
                v = col.get(n)
                vals.append("NaN" if v is None else f"{v:.6g}")
            f.write(f"{n} " + " ".join(vals) + "\n")


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 and argv[1] in ("-h", "--help") else 2
    outdir = argv[1]
    res, context = ratios.load(argv[2:])
    if not res:
        print("plot.py: no <op>/<container>/<n> benchmarks in the input", file=sys.stderr)
        return 1
    os.makedirs(outdir, exist_ok=True)
    ns = sorted({k[2] for k in res})
    cs = containers_in(res)
    clock = context.get("jbtree_bench_clock", "wall (steady_clock)")
    gp = [
        "set terminal svg size 760,480 dynamic noenhanced font 'sans,12' background rgb 'white'",
        "set logscale x 10",
        "set format x '1e%L'",
        "set grid xtics ytics mytics",
        "set key top left box opaque",
        "set datafile missing 'NaN'",
        "set xlabel 'n (records in the map)'",
    ]
    styles = ["lc rgb '#1f77b4' lw 2 pt 7", "lc rgb '#aec7e8' lw 2 pt 6 dt 2", "lc rgb '#d62728' lw 2 pt 5",
              "lc rgb '#2ca02c' lw 2 pt 9", "lc rgb '#7f7f7f' lw 2 pt 4"]
    made = []
    for op in ratios.OPS:
        cols = []
        for c in cs:
            col = {n: ratios.ns_per_item(res[(op, c, n)], n) for n in ns if (op, c, n) in res}
            if col:
                cols.append((c, col))
        if not cols:
            continue
        write_dat(os.path.join(outdir, f"{op}.dat"), ns, cols)
        plots = ", ".join(
            f"'{op}.dat' using 1:{i + 2} with linespoints title '{LABELS.get(c, c)}' {styles[i % len(styles)]}"
            for i, (c, _) in enumerate(cols)
        )
        gp += [
            f"set output '{op}.svg'",
            f"set title '{op}: {TITLES.get(op, op)} (u64 -> u64; {clock})' noenhanced",
            "set logscale y 10",
            "set ylabel 'ns per item (lower is better)'",
            f"plot {plots}",
        ]
        made.append(f"{op}.svg")
    # Bytes per entry: random inserts, and the sorted fill.
    cols = []
    for op, tag in (("insert_random", "random"), ("bulk_load", "sorted")):
        for c in cs:
            col = {n: res[(op, c, n)].get("bytes_per_entry") for n in ns if (op, c, n) in res}
            col = {n: v for n, v in col.items() if v is not None}
            if col and c != "jbtree_csum":  # same layout as jbtree
                cols.append((f"{c}_{tag}", col))
    if cols:
        write_dat(os.path.join(outdir, "bytes_per_entry.dat"), ns, cols)
        plots = []
        for i, (name, _) in enumerate(cols):
            c, tag = name.rsplit("_", 1)
            dash = "" if tag == "random" else " dt 3"
            color = styles[cs.index(c) % len(styles)].split(" lw")[0] if c in cs else "lc rgb 'black'"
            plots.append(
                f"'bytes_per_entry.dat' using 1:{i + 2} with linespoints title '{LABELS.get(c, c)}, {tag}' "
                f"{color} lw 2{dash}"
            )
        gp += [
            "set output 'bytes_per_entry.svg'",
            "set title 'heap bytes per entry after random inserts (solid) and a sorted fill (dotted)' noenhanced",
            "unset logscale y",
            "set yrange [0:*]",
            "set ylabel 'bytes per entry (lower is better)'",
            "set key top right box opaque",
            "plot " + ", ".join(plots),
        ]
        made.append("bytes_per_entry.svg")
    with open(os.path.join(outdir, "plots.gp"), "w", encoding="utf-8") as f:
        f.write("\n".join(gp) + "\n")
    try:
        subprocess.run(["gnuplot", "plots.gp"], cwd=outdir, check=True)
    except FileNotFoundError:
        print("plot.py: gnuplot not found (Debian: apt-get install gnuplot-nox); data and plots.gp are in "
              + outdir, file=sys.stderr)
        return 1
    for m in made:
        print(os.path.join(outdir, m))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
