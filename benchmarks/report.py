"""The report: a Markdown table (stdout and report.md), report.json, results.csv and two PNG plots."""

import csv
import json
from dataclasses import asdict, fields
from pathlib import Path

from benchmarks.rows import Row
from runtime.files import write_json

COLUMNS = [("name", "target", "{}"), ("status", "status", "{}"), ("size_mb", "MB", "{:.1f}"),
           ("max_abs_diff", "max abs diff", "{:.2e}"), ("top1_agreement", "top-1 agree", "{:.1%}"),
           ("accuracy", "accuracy", "{:.3f}"), ("p50_ms", "p50 ms", "{:.1f}"), ("p90_ms", "p90 ms", "{:.1f}"),
           ("p99_ms", "p99 ms", "{:.1f}"), ("e2e_p50_ms", "e2e p50 ms", "{:.1f}"),
           ("throughput_b32", "img/s b32", "{:.1f}"), ("gflops", "GFLOP/s", "{:.1f}"),
           ("peak_share", "of peak", "{:.0%}"), ("cold_start_s", "cold s", "{:.2f}"),
           ("peak_rss_mb", "RSS MB", "{:.0f}"), ("threads", "threads", "{}"), ("provider", "provider", "{}")]


def cell(row: Row, key: str, fmt: str) -> str:
    """A formatted value; '-' where it does not apply."""
    value = getattr(row, key)
    if key == "status" and row.status != "ok":
        return f"{row.status}: {row.reason}"
    return "-" if value is None or value == "" else fmt.format(value)


def markdown(rows: list[Row], head: dict) -> str:
    """Provenance lines, the table, then the goals and how far each is met."""
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in head["provenance"]["flags"].items())
    lines = [f"# Benchmark: {head['bundle']} on {head['device']}", "",
             f"- date: {head['provenance']['date']}; CPU: {head['provenance']['cpu']} "
             f"({head['provenance']['usable_cpus']} usable of {head['provenance']['cores']} cores)",
             f"- flags: {flags}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in head["provenance"]["versions"].items()),
             f"- images: {head['images']} from {head['images_dir']}; input {head['input']}; "
             f"{head['gmacs']:.2f} GMAC/image; float32 matmul peak {head['matmul_peak_gflops']:.1f} GFLOP/s (best of "
             + ", ".join(f"{k} {v:.0f}" for k, v in head["matmul_gflops_by_library"].items()) + ")",
             "", "| " + " | ".join(c[1] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r, k, f) for k, _, f in COLUMNS) + " |" for r in rows]
    if head.get("goals"):
        lines += ["", "## Goals", ""] + [f"- {g}" for g in head["goals"]]
    return "\n".join(lines) + "\n"


def plots(rows: list[Row], diffs: dict, out: Path):
    """latency_vs_accuracy.png and logit_diffs.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.status == "ok" and r.accuracy is not None]
    fig, ax = plt.subplots(figsize=(7, 5))
    for r in ok:
        ax.scatter(r.p50_ms, r.accuracy, label=f"{r.name} ({r.p50_ms:.0f} ms)")
    ax.set(xscale="log", xlabel="p50 latency, batch 1 (ms, log)", ylabel="accuracy", title="latency vs accuracy")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "latency_vs_accuracy.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 5))
    names = [n for n in diffs if n != "keras predict"]
    ax.boxplot([diffs[n] for n in names], showfliers=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
    ax.set(yscale="symlog", ylabel="|logit - keras logit|", title="logit differences against Keras predict")
    fig.tight_layout()
    fig.savefig(out / "logit_diffs.png", dpi=100)
    plt.close(fig)


def write(rows: list[Row], head: dict, diffs: dict, out: Path) -> str:
    """Write every output file; return the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(rows, head)
    (out / "report.md").write_text(md)
    write_json(out / "report.json", {**head, "rows": [asdict(r) for r in rows]})
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, [x.name for x in fields(Row)])
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    plots(rows, diffs, out)
    return md


def load(out: Path) -> dict:
    """Read a written report.json back."""
    return json.loads((out / "report.json").read_text())
