#!/usr/bin/env python3
"""Per-kernel timeline of one decode step from a CROSSPOOL_TRACE build.

crosspool-decode-bench built with -DCROSSPOOL_TRACE (CUDA and C++ flags)
and run with CROSSPOOL_TRACE_OUT=<prefix> writes one CSV per point: a row
per block of every kernel (grid id, globaltimer before and after its PDL
wait, block, SM) and per traceMark() call (block field with the high bit
set). Grids are ordered by their first wait release; with the per-layer
kernel names given (e.g. norm1,qkv,qk,attend,merge,o,norm2,route,gateup,
down) this prints, per kernel, the median over the middle layers of
  step      its first release to the next kernel's first release (us): the
            time the kernel holds the dependency chain;
  launched  how long before its release its first block started (PDL);
  mK        traceMark K relative to the release (first..last block).

usage: trace_timeline.py CSV NAMES [FIRST]   FIRST: grids before layer 0 (1)
"""
import collections
import csv
import statistics
import sys


def main():
    path, names = sys.argv[1], sys.argv[2].split(",")
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    per = len(names)
    waits = collections.defaultdict(list)
    marks = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in csv.DictReader(open(path)):
        grid, block = int(r["grid"]), int(r["block"])
        if block & 0x80000000:
            marks[grid][(block >> 24) & 0x7F].append(int(r["t_after"]))
        else:
            waits[grid].append((int(r["t_before"]), int(r["t_after"])))
    grids = sorted(waits, key=lambda g: min(t for _, t in waits[g]))
    rel = [min(t for _, t in waits[g]) for g in grids]
    launch = [min(t for t, _ in waits[g]) for g in grids]
    layers = (len(grids) - first) // per
    print(f"{len(grids)} grids, {layers} layers of {per} kernels")
    total = 0.0
    for k in range(per):
        step, lead = [], []
        mk = collections.defaultdict(lambda: ([], []))
        for layer in range(2, layers - 1):
            i = first + layer * per + k
            step.append((rel[i + 1] - rel[i]) / 1e3)
            lead.append((rel[i] - launch[i]) / 1e3)
            for mid, ts in marks[grids[i]].items():
                mk[mid][0].append((min(ts) - rel[i]) / 1e3)
                mk[mid][1].append((max(ts) - rel[i]) / 1e3)
        s = statistics.median(step)
        total += s
        ms = "  ".join(
            f"m{m}: {statistics.median(a):.2f}..{statistics.median(b):.2f}"
            for m, (a, b) in sorted(mk.items()))
        print(f"{names[k]:8s} blocks {len(waits[grids[first + 2 * per + k]]):5d}"
              f"  step {s:6.2f} us  launched {statistics.median(lead):5.2f}"
              f" us before  {ms}")
    print(f"layer total {total:.2f} us")


if __name__ == "__main__":
    main()
