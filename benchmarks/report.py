"""The report: a Markdown table (stdout and report.md), report.json, results.csv and two PNG plots."""

import csv
import json
from dataclasses import asdict, fields
from pathlib import Path

from benchmarks.rows import Row
from runtime.files import write_json

COLUMNS = [("name", "target", "{}"), ("status", "status", "{}"), ("size_mb", "MB", "{:.1f}"),
           ("max_abs_diff", "max abs diff", "{:.2e}"), ("top1_agreement", "top-1 agree [95%]", "{:.1%}"),
           ("accuracy", "accuracy", "{:.3f}"), ("p50_ms", "p50 ms", "{:.1f}"), ("p90_ms", "p90 ms", "{:.1f}"),
           ("p99_ms", "p99 ms", "{:.1f}"), ("mean_ms", "mean ms", "{:.1f}"),
           ("recheck_rate", "re-checked", "{:.1%}"), ("e2e_p50_ms", "e2e p50 ms", "{:.1f}"),
           ("throughput_b32", "img/s b32", "{:.1f}"), ("gflops", "GFLOP/s", "{:.1f}"),
           ("peak_share", "of peak", "{:.0%}"), ("cold_start_s", "cold s", "{:.2f}"),
           ("peak_rss_mb", "RSS MB", "{:.0f}"), ("threads", "threads", "{}"), ("provider", "provider", "{}")]


def cell(row: Row, key: str, fmt: str) -> str:
    """A formatted value; '-' where it does not apply."""
    value = getattr(row, key)
    if key == "status" and row.status != "ok":
        return f"{row.status}: {row.reason}"
    if key == "top1_agreement" and value is not None and row.agreement_interval:
        return f"{value:.1%} [{row.agreement_interval[0]:.1%}-{row.agreement_interval[1]:.1%}]"
    return "-" if value is None or value == "" else fmt.format(value)


def terminal(rows: list[Row]) -> str:
    """The narrow table for the terminal: format, status, MB, agreement, accuracy, ms, speed-up over Keras."""
    keras = next((r.p50_ms for r in rows if r.name == "keras predict" and r.p50_ms), None)
    lines = [f"{'target':<16} {'status':<12} {'MB':>6} {'agree':>7} {'acc':>6} {'p50 ms':>8} {'x keras':>8}"]
    for r in rows:
        lines.append(f"{r.name[:16]:<16} {r.status:<12} {_f(r.size_mb, '{:.1f}'):>6} "
                     f"{_f(r.top1_agreement, '{:.1%}'):>7} {_f(r.accuracy, '{:.3f}'):>6} {_f(r.p50_ms, '{:.1f}'):>8} "
                     f"{_f(keras / r.p50_ms if keras and r.p50_ms else None, '{:.1f}x'):>8}")
    reasons = [f"  {r.name}: {r.reason}" for r in rows if r.reason]
    return "\n".join(lines + (["", "not measured (or only in part):"] + reasons if reasons else []))


def _f(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def markdown(rows: list[Row], head: dict) -> str:
    """Provenance lines, the table, then the goals and how far each is met."""
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in head["provenance"]["flags"].items())
    lines = [f"# Benchmark: {head['bundle']} on {head['device']}", "",
             f"- date: {head['provenance']['date']}; CPU: {head['provenance']['cpu']} "
             f"({head['provenance']['usable_cpus']} usable of {head['provenance']['cores']} cores)",
             f"- flags: {flags}",
             "- GPU: " + ("; ".join(head["provenance"].get("gpus", [])) or "none seen by nvidia-smi"),
             "- versions: " + ", ".join(f"{k} {v}" for k, v in head["provenance"]["versions"].items()),
             f"- images: {head['images']} from {head['images_dir']}; input {head['input']}; "
             f"{head['gmacs']:.2f} GMAC/image; float32 matmul peak {head['matmul_peak_gflops']:.1f} GFLOP/s (best of "
             + ", ".join(f"{k} {v:.0f}" for k, v in head["matmul_gflops_by_library"].items())
             + f"); int8 matmul peak {head.get('int8_peak_gops', float('nan')):.0f} GOP/s (ORT MatMulInteger u8s8; "
             "int8 rows' share is of this one)",
             "", "| " + " | ".join(c[1] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r, k, f) for k, _, f in COLUMNS) + " |" for r in rows]
    if any(r.recheck_rate is not None for r in rows):
        lines += ["", "Cascade rows: the int8 file answers, the float file answers again where the int8 file's "
                  "top-2 logit margin is under the gate. Their batch-1 calls take each image in turn (the cost "
                  "depends on the image): the mean is int8 plus the re-check rate times the float file, and the "
                  "p90/p99 are int8 plus a whole float run."]
        lines += [f"- {r.name}: {r.about}" for r in rows if r.about]
    if head.get("goals"):
        lines += ["", "## Goals", ""] + [f"- {g}" for g in head["goals"]]
    return "\n".join(lines) + "\n"


def plots(rows: list[Row], diffs: dict, out: Path, logit_range: float | None = None):
    """latency_vs_accuracy.png and logit_diffs.png (absolute differences, log axis, fp32 limit drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, ScalarFormatter

    ok = [r for r in rows if r.status == "ok" and r.accuracy is not None]
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in ok:
        ax.scatter(r.p50_ms, r.accuracy, s=50, label=f"{r.name}: {r.p50_ms:.1f} ms, {r.accuracy:.3f}")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set(xlabel="p50 latency at batch 1, ms (log scale)", ylabel="accuracy", title="latency vs accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    fig.savefig(out / "latency_vs_accuracy.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(9, 5))
    names = [n for n in diffs if n != "keras predict"]
    floor = 1e-9  # identical logits would vanish from a log axis
    ax.boxplot([diffs[n] + floor for n in names], showfliers=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
    ax.set_yscale("log")
    if logit_range:
        ax.axhline(1e-4 * logit_range, color="red", ls="--",
                   label=f"fp32 limit: 1e-4 of the logit range ({logit_range:.1f})")
        ax.legend(fontsize="small")
    ax.set(ylabel="|logit - Keras logit| (log scale)", title="logit differences against Keras predict")
    ax.grid(alpha=0.3, axis="y")
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
    plots(rows, diffs, out, head.get("logit_range"))
    return md


def load(out: Path) -> dict:
    """Read a written report.json back."""
    return json.loads((out / "report.json").read_text())
