"""``python -m benchmarks BUNDLE|MODEL --images DIR``: Keras and every artifact, side by side, one report.

A bundle gives the Keras rows (the reference) and one row per artifact; a bare model file
(.onnx, .tflite or .keras) gives its own rows, with --classes/--size/--preprocessing where it
carries no metadata. The terminal shows a narrow table; report.md has every column.
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from runtime.cli import (
    add_bare_model_args,
    add_model_positional,
    command_parser,
    import_tensorflow_quietly,
    model_positional,
    positive_float,
    positive_int,
)
from runtime.formats import DEVICES


@dataclass
class Timing:
    """How long to measure each row."""

    runs: int
    throughput_s: float
    cold_start: bool = True


FULL, QUICK = Timing(50, 3.0), Timing(20, 1.0, cold_start=False)
QUICK_LIMIT = 50  # --limit at or under it: a quick look, measured with QUICK


def parser():
    p = command_parser("python -m benchmarks", __doc__)
    add_model_positional(p, "bundle", "bundle folder, or one model file (.onnx, .tflite, .keras)")
    p.add_argument("--images", type=Path, required=True, help="labelled images, e.g. the dataset's test/")
    p.add_argument("--limit", type=positive_int, default=10_000, help="at most this many images (default all)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where every row runs (default cpu)")
    p.add_argument("--out", type=Path, default=Path("runs/benchmarks"),
                   help="OUT/<bundle>[-gpu]/ is written here (default runs/benchmarks, not tracked by git)")
    p.add_argument("--runs", type=positive_int,
                   help=f"batch-1 latency runs per row (default 50; {QUICK.runs} with --limit <= {QUICK_LIMIT})")
    p.add_argument("--throughput-seconds", type=positive_float,
                   help=f"seconds of batch-32 inference per row (default 3; {QUICK.throughput_s:g} with "
                        f"--limit <= {QUICK_LIMIT})")
    p.add_argument("--cold-start", action=argparse.BooleanOptionalAction,
                   help=f"each row's fresh-process cold start (default on; off with --limit <= {QUICK_LIMIT})")
    add_bare_model_args(p)
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    return p


@dataclass
class Subject:
    """What is benchmarked: a bundle or one bare model file, with what its images need."""

    name: str
    classes: list[str]
    spec: object  # runtime.preprocessing.ImageSpec, imported with the rest when the benchmark runs
    targets: list
    macs_file: Path | None  # the fp32 ONNX (else the .keras model) whose multiply-adds are counted
    overrides: object  # runtime.bundle.Overrides of a bare file's flags, or None


def subject(args) -> Subject:
    """The Subject of ``args.bundle``: a bundle folder (its manifest) or a bare file (its metadata or flags)."""
    from benchmarks.rows import file_target, targets
    from runtime.bundle import Manifest
    from runtime.classifier import Classifier
    from runtime.cli import model_overrides
    from runtime.errors import ModelError

    if args.bundle.is_dir():
        m = Manifest.read(args.bundle)
        onnx = m.entry("model.fp32.onnx")
        counted = [args.bundle / onnx.file] if onnx else []
        counted.append(args.bundle / m.source.file)
        return Subject(m.name, list(m.classes), m.spec(), targets(args.bundle),
                       next((f for f in counted if f.is_file()), None), None)
    if not args.bundle.is_file():
        raise ModelError(f"no bundle or model file at {args.bundle}")
    overrides = model_overrides(args)
    info = Classifier.load(args.bundle, overrides=overrides).info
    return Subject(args.bundle.stem, list(info.classes), info.spec, file_target(args.bundle), args.bundle, overrides)


def op_profiles(rows, sub, one) -> dict:
    """Per-operator milliseconds of the fp32 and int8 ONNX files, when both were measured."""
    from benchmarks.measure.op_profile import op_times

    by = {r.name: r for r in rows if r.status == "ok"}
    targets = {t.name: t for t in sub.targets}
    names = [n for n in ("onnx fp32", "onnx int8") if n in by and n in targets]
    return {n: op_times(targets[n].file, one) for n in names} if len(names) == 2 else {}


def main(argv=None) -> int:
    p = parser()
    args = model_positional(p, p.parse_args(argv), "bundle")
    import_tensorflow_quietly(args.verbose)
    import numpy as np
    from tqdm import tqdm

    from benchmarks.goals import goals
    from benchmarks.measure.flops import count_file_macs
    from benchmarks.measure.provenance import provenance
    from benchmarks.measure.timing import gpu_matmul_peak_gflops, int8_peak_gops, matmul_peak_gflops
    from benchmarks.report import terminal, write
    from benchmarks.rows import measure
    from runtime.cli import error, progress_options
    from runtime.errors import RuntimeToolkitError
    from runtime.images import load_images

    if not args.images.is_dir():
        return error(f"--images {args.images}: no such folder")
    try:
        sub = subject(args)
        images = load_images(args.images, sub.spec, sub.classes, args.limit)
    except RuntimeToolkitError as e:
        return error(str(e))
    macs = count_file_macs(sub.macs_file)
    peaks = {"jax gpu": gpu_matmul_peak_gflops()} if args.device == "gpu" else matmul_peak_gflops()
    peak = {"fp32": max(peaks.values()), "int8": int8_peak_gops() if "onnxruntime" in peaks else float("nan")}
    quick = args.limit <= QUICK_LIMIT
    timing = Timing(args.runs or (QUICK.runs if quick else FULL.runs),
                    args.throughput_seconds or (QUICK.throughput_s if quick else FULL.throughput_s),
                    args.cold_start if args.cold_start is not None else not quick)
    if quick:
        print(f"quick mode (--limit {args.limit}): {timing.runs} runs, {timing.throughput_s:g} s of batch 32, "
              f"cold starts {'on' if timing.cold_start else 'off'} per row", file=sys.stderr)
    rows, diffs, ref = [], {}, None
    for target in (bar := tqdm(sub.targets, desc="benchmark", unit="row", **progress_options())):
        bar.set_postfix_str(target.name)
        row, out = measure(target, args.device, images, sub.spec, ref, macs, peak,
                           timing, sub.overrides)
        if target.name == "keras predict" and out is not None:
            ref = out
        if out is not None and ref is not None:
            diffs[target.name] = np.abs(out - ref).ravel()
        rows.append(row)
    head = {"bundle": sub.name, "device": args.device, "provenance": provenance(), "images": len(images.files),
            "images_dir": str(args.images), "input": f"{sub.spec.height}x{sub.spec.width}", "gmacs": macs / 1e9,
            "matmul_peak_gflops": peak["fp32"], "matmul_gflops_by_library": peaks, "int8_peak_gops": peak["int8"],
            "op_ms": op_profiles(rows, sub, images.batch[:1]), "internal_goals": None,
            "logit_range": float(np.ptp(ref)) if ref is not None else None}
    head["internal_goals"] = goals(rows, head["op_ms"])
    out = args.out / (sub.name + ("-gpu" if args.device == "gpu" else ""))
    md = write(rows, head, diffs, out)
    print("\n" + terminal(rows))
    print("\n" + "\n".join(line.replace("**", "") for line in md.split("\n\n")[1].splitlines()))
    ok = sum(r.status == "ok" for r in rows)
    print(f"\n{ok}/{len(rows)} rows measured; every column in {out}/report.md (also report.json, results.csv, "
          "report.html, latency_vs_accuracy.png, logit_diffs.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
