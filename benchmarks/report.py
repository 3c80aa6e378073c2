"""The report: a verdict, then a Markdown table (stdout and report.md), report.html with the plots in it,
report.json, results.csv and two PNG plots."""

import base64
import csv
import html
import json
from dataclasses import asdict, fields
from pathlib import Path

from benchmarks.rows import Row
from runtime.files import write_json
from runtime.parity import THRESHOLDS, images_needed

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
    if key == "peak_share" and value is not None and value > 1:
        return f"{value:.0%} (noise: over the peak measured before the rows)"
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


def threshold_of(row: Row):
    """The parity threshold of a row's precision (a cascade has its own), or None for Keras' rows."""
    return THRESHOLDS.get("cascade" if row.format == "cascade" else row.precision) if row.format != "keras" else None


def verdict(rows: list[Row], images: int) -> list[str]:
    """What to deploy on this machine, first: the fastest file here that keeps the trained model's answers
    (fp32, fp16 or a cascade, agreeing at least as its threshold asks, and with n large enough, its 95% lower
    bound too), against Keras; then the fastest file of all if it trades answers for speed, and a warning when
    the images cannot tell the thresholds apart."""
    keras = next((r for r in rows if r.name == "keras predict" and r.p50_ms), None)
    needed = images_needed(THRESHOLDS["fp32"].min_top1_agreement)

    def keeps(r: Row) -> bool:
        t = threshold_of(r)
        if r.status != "ok" or not r.p50_ms or r.top1_agreement is None or t is None or r.precision == "int8":
            return False
        return r.top1_agreement >= t.min_top1_agreement and (
            images < needed or r.agreement_interval[0] >= t.min_top1_agreement)

    def said(r: Row) -> str:
        speed = (f"{keras.p50_ms / r.p50_ms:.1f}x faster than Keras at batch 1 ({r.p50_ms:.1f} vs {keras.p50_ms:.1f} "
                 "ms p50)") if keras else f"{r.p50_ms:.1f} ms p50 at batch 1"
        lo, hi = r.agreement_interval or (0, 1)
        accuracy = f", accuracy {r.accuracy:.3f}" if r.accuracy is not None else ""
        return f"{speed}, agrees with Keras on {r.top1_agreement:.1%} [{lo:.1%}-{hi:.1%}] of {images} images{accuracy}"
    fit = sorted((r for r in rows if keeps(r)), key=lambda r: r.p50_ms)
    if not fit:
        lines = [f"**No file to deploy**: none measured here keeps Keras' answers on these {images} images."]
    else:
        best = fit[0]
        default = next((r for r in rows if r.default), None)
        lines = [f"**Deploy {best.name}**: {said(best)}."]
        if default is not None and default is not best:
            lines[0] += (f" (The runtime's default for this bundle is {default.name}, chosen from the conversion's "
                         f"timings; `--format {best.format if best.format != 'cascade' else best.name.split()[-1]}` "
                         "follows this run.)")
        fastest = min((r for r in rows if r.status == "ok" and r.p50_ms and r.top1_agreement is not None),
                      key=lambda r: r.p50_ms)
        if fastest.p50_ms < best.p50_ms and fastest.precision == "int8":
            lines.append(f"Fastest: {fastest.name}, {said(fastest)}; plain int8 changes some answers where the "
                         "model is nearly tied (see the bundle's parity).")
    if images < needed:
        lines.append(f"**Warning**: {images} images cannot tell 97% agreement from 100% (a perfect agreement's "
                     f"lower bound clears 98% only from {needed} images): the agreements here are weak evidence; "
                     "the bundle's conversion checked every file on its parity images.")
    return lines


def markdown(rows: list[Row], head: dict) -> str:
    """The verdict, provenance lines, then the table."""
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in head["provenance"]["flags"].items())
    lines = [f"# Benchmark: {head['bundle']} on {head['device']}", "", *verdict(rows, head["images"]), "",
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
                  "p90/p99 are int8 plus a whole float run. Their GFLOP/s count the float model's work; they have no "
                  "share of a peak, their work being part int8 and part float."]
        lines += [f"- {r.name}: {r.about}" for r in rows if r.about]
    if head.get("op_ms"):
        lines += ["", "## Time by operator (batch 1, onnxruntime's profiler)", "",
                  "Profiled runs are slower than the row's p50 (the profiler times every node); read the "
                  "shares, not the sums."] + [
            f"- {name}: " + ", ".join(f"{op} {ms:.1f} ms ({ms / sum(ops.values()):.0%})" for op, ms in
                                      list(ops.items())[:5]) for name, ops in head["op_ms"].items() if ops]
    return "\n".join(lines) + "\n"


def to_html(md: str, out: Path) -> str:
    """report.md as one self-contained HTML page, with the plots embedded."""
    body, table = [], []

    def flush_table():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            cells = [[html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows]
            body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cells[0]) + "</tr>" + "".join(
                "<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:]) + "</table>")
            table.clear()
    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        text = html.escape(line)
        text = text.replace("**", "<b>", 1).replace("**", "</b>", 1) if text.count("**") >= 2 else text
        if line.startswith("# "):
            body.append(f"<h1>{text[2:]}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{text[3:]}</h2>")
        elif line.startswith("- "):
            body.append(f"<li>{text[2:]}</li>")
        elif line:
            body.append(f"<p>{text}</p>")
    flush_table()
    for png in ("latency_vs_accuracy.png", "logit_diffs.png"):
        if (out / png).is_file():
            data = base64.b64encode((out / png).read_bytes()).decode()
            body.append(f'<p><img alt="{png}" src="data:image/png;base64,{data}"></p>')
    style = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto}table{border-collapse:collapse;"
             "font-size:90%}td,th{border:1px solid #ccc;padding:3px 6px}th{background:#eee}")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>benchmark</title><style>{style}</style>"
            "</head><body>\n" + "\n".join(body) + "\n</body></html>\n")


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
    (out / "report.html").write_text(to_html(md, out))
    return md


def load(out: Path) -> dict:
    """Read a written report.json back."""
    return json.loads((out / "report.json").read_text())
