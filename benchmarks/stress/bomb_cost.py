"""What a small decode bomb costs the CLI and the Lambda handler, against a normal photo.

``python -m benchmarks.stress.bomb_cost BUNDLE --image IMG [--runs 3] [--out DIR]``: the photo, an RLE BMP
of 68 bytes declaring 16,000,000 x 1 pixels and a 10 MB TIFF of 2.6 M one-byte strips each go through
``runtime.predict`` (a file) and through the Lambda handler (the course's URL event, served on 127.0.0.1),
each run a fresh process, the inputs alternated. Per input and surface: the median wall time from spawn
to exit and peak RSS (the process's own, from wait4), their difference from the photo's, and the answer.
Writes bomb_cost.md and bomb_cost.json.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.lambda_zip import serving
from benchmarks.measure.provenance import provenance
from benchmarks.rows import ROOT, child_env
from benchmarks.stress import bombs
from benchmarks.stress.report_files import write_report
from runtime.cli import command_parser, positive_int
from runtime.errors import ImageError, ModelError, RuntimeToolkitError, one_line_errors

INPUTS = {"photo": None,
          "RLE BMP, 16,000,000 x 1 declared": lambda: bombs.rle_bmp(16_000_000),
          "TIFF, 2.6 M one-byte strips": lambda: bombs.tiff_strips(2_600_000)}
LAMBDA = ("import json, sys; from runtime.package.lambda_function import lambda_handler; "
          "r = lambda_handler({'url': sys.argv[1]}, None); print(json.dumps(r)[:200])")


@dataclass
class Row:
    """One input through one surface: medians over the runs, and what came back."""

    input: str
    surface: str
    bytes: int
    wall_s: float
    peak_rss_mb: float
    answer: str
    wall_over_photo_s: float = 0.0
    rss_over_photo_mb: float = 0.0


def run(argv: list[str], env: dict) -> tuple[float, float, str]:
    """Wall seconds from spawn to exit, the child's own peak RSS in MB, and its exit status and answer (its
    first line that mentions an error, else its last line)."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait for it
        out.seek(0)
        lines = out.read().decode(errors="replace").strip().splitlines()
    said = next((line for line in lines if "error" in line), (lines or ["(nothing)"])[-1])
    return wall, usage.ru_maxrss / 1024, f"exit {proc.returncode}: {said[:160]}"


def measure(bundle: Path, photo: Path, runs: int, work: Path) -> list[Row]:
    """Every input through the CLI and the Lambda handler, ``runs`` times each, alternately."""
    files = {}
    for name, make in INPUTS.items():
        files[name] = photo if make is None else work / f"{len(files)}.{'bmp' if 'BMP' in name else 'tiff'}"
        if make is not None:
            files[name].write_bytes(make())
    env = child_env(os.environ, RUNTIME_MODEL=str(bundle.resolve()), RUNTIME_ALLOW_PRIVATE_URLS="1",
                    TF_CPP_MIN_LOG_LEVEL="3")
    seen = {(name, surface): [] for name in INPUTS for surface in ("cli", "lambda")}
    for i in range(runs):
        for name, path in files.items():
            print(f"... run {i + 1}/{runs}: {name}", file=sys.stderr, flush=True)
            seen[name, "cli"].append(run([sys.executable, "-m", "runtime.predict", str(path), "--model",
                                          str(bundle)], env))
            with serving(path) as url:
                seen[name, "lambda"].append(run([sys.executable, "-c", LAMBDA, url], env))
    rows = [Row(name, surface, files[name].stat().st_size, round(statistics.median(r[0] for r in got), 2),
                round(statistics.median(r[1] for r in got), 1), got[-1][2]) for (name, surface), got in seen.items()]
    for row in rows:
        base = next(r for r in rows if r.input == "photo" and r.surface == row.surface)
        row.wall_over_photo_s = round(row.wall_s - base.wall_s, 2)
        row.rss_over_photo_mb = round(row.peak_rss_mb - base.peak_rss_mb, 1)
    return rows


def markdown(bundle: Path, rows: list[Row], runs: int, machine: dict) -> str:
    """The report as a Markdown table."""
    flags = " ".join(f for f, present in machine["flags"].items() if present)
    lines = [f"# Small decode bombs against `{bundle}`", "",
             f"{machine['cpu']} ({flags}), {machine['usable_cpus']} usable CPUs, {machine['date']}; median of "
             f"{runs} fresh processes per cell, inputs alternated", "",
             "| input | bytes | surface | wall s | over the photo s | peak RSS MB | over the photo MB | answer |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.input} | {r.bytes:,} | {r.surface} | {r.wall_s:.2f} | {r.wall_over_photo_s:+.2f} | "
              f"{r.peak_rss_mb:.0f} | {r.rss_over_photo_mb:+.0f} | {r.answer.replace('|', '/')} |" for r in rows]
    return "\n".join(lines) + "\n"


def parser():
    p = command_parser("python -m benchmarks.stress.bomb_cost", __doc__)
    p.add_argument("bundle", type=Path, help="a converted bundle")
    p.add_argument("--image", type=Path, required=True, help="a normal photo to compare with")
    p.add_argument("--runs", type=positive_int, default=3, help="fresh processes per input and surface (default 3)")
    p.add_argument("--out", type=Path, default=Path("runs/bomb_cost"), help="report folder (default runs/bomb_cost)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return one_line_errors(lambda: report(args), RuntimeToolkitError)


def report(args) -> int:
    """Measure and write the report."""
    if not args.image.is_file():
        raise ImageError(f"no image at {args.image}")
    if not args.bundle.exists():
        raise ModelError(f"no bundle or model file at {args.bundle}")
    with tempfile.TemporaryDirectory() as work:
        rows = measure(args.bundle, args.image, args.runs, Path(work))
    for r in rows:
        if r.input == "photo" and (not r.answer.startswith("exit 0") or '"error"' in r.answer):
            raise ModelError(f"the normal photo was not answered through the {r.surface} ({r.answer}): "
                             "nothing to compare the bombs with")
    machine = provenance()
    write_report(args.out, "bomb_cost", {"bundle": str(args.bundle), "runs": args.runs, "provenance": machine,
                                         "rows": [asdict(r) for r in rows]},
                 markdown(args.bundle, rows, args.runs, machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
