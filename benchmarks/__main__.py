"""``python -m benchmarks BUNDLE --images DIR``: Keras and every artifact, side by side, one report."""

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@dataclass
class Timing:
    """How long to measure each row."""

    runs: int
    throughput_s: float


def parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("bundle", type=Path)
    p.add_argument("--images", type=Path, required=True, help="labelled images, e.g. the dataset's test/")
    p.add_argument("--limit", type=int, default=10_000, help="at most this many images")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--out", type=Path, default=Path("runs/benchmarks"),
                   help="OUT/<bundle>[-gpu]/ is written here (default runs/benchmarks, not tracked by git)")
    p.add_argument("--runs", type=int, default=50, help="batch-1 latency runs per row")
    p.add_argument("--throughput-seconds", type=float, default=3.0)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    import numpy as np
    from tqdm import tqdm

    from benchmarks.flops import count_macs
    from benchmarks.goals import goals
    from benchmarks.provenance import provenance
    from benchmarks.report import write
    from benchmarks.rows import measure, targets
    from benchmarks.timing import matmul_peak_gflops
    from runtime.errors import RuntimeToolkitError
    from runtime.images import load_images
    from runtime.manifest import Manifest

    try:
        m = Manifest.read(args.bundle)
        size = (m.input["height"], m.input["width"])
        images = load_images(args.images, size, m.classes, args.limit, m.preprocessing.get("mode", "xception"))
    except RuntimeToolkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fp32 = args.bundle / "model.fp32.onnx"
    macs = count_macs(fp32) if fp32.exists() else 0
    peaks = matmul_peak_gflops()
    peak = max(peaks.values())
    rows, diffs, ref = [], {}, None
    for target in (bar := tqdm(targets(args.bundle), desc="benchmark", unit="row")):
        bar.set_postfix_str(target.name)
        row, out = measure(target, args.device, images, ref, macs, peak, Timing(args.runs, args.throughput_seconds))
        if target.name == "keras predict" and out is not None:
            ref = out
        if out is not None and ref is not None:
            diffs[target.name] = np.abs(out - ref).ravel()
        rows.append(row)
    head = {"bundle": m.name, "device": args.device, "provenance": provenance(), "images": len(images.files),
            "images_dir": str(args.images), "input": f"{size[0]}x{size[1]}", "gmacs": macs / 1e9,
            "matmul_peak_gflops": peak, "matmul_gflops_by_library": peaks, "goals": goals(rows)}
    out = args.out / (m.name + ("-gpu" if args.device == "gpu" else ""))
    print("\n" + write(rows, head, diffs, out))
    ok = sum(r.status == "ok" for r in rows)
    print(f"{ok}/{len(rows)} rows measured; report.md, report.json, results.csv and plots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
