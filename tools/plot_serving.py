#!/usr/bin/env python3
"""Plots a `crosspool-bench serve --json-out` report (one or more files).

    python3 tools/plot_serving.py serve.json [more.json ...] -o OUTDIR

Writes, for every input file (prefixed by its stem when several are given):
  tbt_cdf.png   CDF of every inter-token gap (TBT), one curve per memory mode,
                log-scale milliseconds; the SLO is drawn when the run had one.
  kv_pages.png  KV pages in use over (virtual) time, one panel per mode, the
                mode's capacity dashed.
Needs matplotlib. Exit status 1 with one line on a bad input.
"""
import argparse
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"plot_serving.py: error: cannot read {path}: {e}")
    if not isinstance(report, dict) or not report.get("runs"):
        raise SystemExit(f"plot_serving.py: error: {path}: expects a "
                         "crosspool-bench serve JSON report with 'runs'")
    return report


def plot_tbt_cdf(plt, report, out):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for run in report["runs"]:
        tbt = run["overall"]["tbt_sorted_samples_s"]
        if not tbt:
            continue
        ms = [t * 1e3 for t in tbt]
        n = len(ms)
        p99 = run["overall"]["tbt_s"]["p99"] * 1e3
        ax.step(ms, [(i + 1) / n for i in range(n)], where="post",
                label=f"{run['mode']} (P99 {p99:.2f} ms)")
    slo = report.get("config", {}).get("slo_tbt_ms", 0)
    if slo:
        ax.axvline(slo, color="gray", linestyle=":", label=f"SLO {slo:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel("time between tokens (ms)")
    ax.set_ylabel("fraction of gaps")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("TBT CDF per memory mode")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_kv_pages(plt, report, out):
    runs = report["runs"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(6.4, 2.2 * len(runs) + 0.6),
                             sharex=True, squeeze=False)
    for ax, run in zip(axes[:, 0], runs):
        kv = run["kv_over_time"]
        # KV in physical chunks (CUDA: 2 MiB chunks; CPU: pages).
        ax.plot([s["t"] for s in kv], [s["chunks"] for s in kv],
                drawstyle="steps-post", label="in use (all)")
        names = run["kv_groups"]["names"]
        if len(names) > 1:  # per-GPU / per-partition budgets
            for g, name in enumerate(names):
                ax.plot([s["t"] for s in kv],
                        [s["group_chunks"][g] for s in kv],
                        drawstyle="steps-post", linewidth=0.7, alpha=0.7,
                        label=f"{name} (cap {run['kv_groups']['chunks'][g]})")
        ax.axhline(run["kv_chunks_capacity"], color="gray", linestyle="--",
                   label="capacity")
        gib = run.get("kv_chunk_bytes", 0) / 2**30
        ax.set_ylabel("KV chunks")
        ax.set_title(f"{run['mode']}: peak {run['kv_chunks_peak']} of "
                     f"{run['kv_chunks_capacity']} chunks "
                     f"({run['kv_chunks_peak'] * gib:.2f} of "
                     f"{run['kv_chunks_capacity'] * gib:.2f} GiB), "
                     f"{run['overall']['preemptions']} preemptions"
                     + (", STOPPED BY WALL CAP"
                        if run.get("stopped_by_wall_cap") else ""),
                     fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="JSON from --json-out")
    parser.add_argument("-o", "--out-dir", default=".", help="where PNGs go")
    args = parser.parse_args(argv)
    reports = [(path, load(path)) for path in args.reports]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("plot_serving.py: error: needs matplotlib "
                         "(apt-get install python3-matplotlib)")
    os.makedirs(args.out_dir, exist_ok=True)
    for path, report in reports:
        prefix = ""
        if len(args.reports) > 1:
            prefix = os.path.splitext(os.path.basename(path))[0] + "_"
        for name, fn in (("tbt_cdf.png", plot_tbt_cdf),
                         ("kv_pages.png", plot_kv_pages)):
            out = os.path.join(args.out_dir, prefix + name)
            fn(plt, report, out)
            print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
