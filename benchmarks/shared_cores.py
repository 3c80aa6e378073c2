"""``python -m benchmarks.shared_cores BUNDLE``: batch-1 latency of each thread count and spinning choice,
on an idle machine and beside a busy neighbour process (one CPU-bound Python loop), per verified artifact.

It is the measurement behind the deployment profiles in runtime/machine/threads.py (server, lambda, shared).
"""

import functools
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.measure.timing import latency
from runtime.bundle import Manifest, artifact_path
from runtime.cli import command_parser, positive_int
from runtime.errors import ModelError, RuntimeToolkitError, one_line_errors
from runtime.formats import FORMATS
from runtime.machine.cpuinfo import cpu_info
from runtime.machine.threads import PROFILES, available_cpus


@dataclass
class SharedRow:
    """One artifact under one (threads, spinning) choice: p50/p99 idle and beside a busy process."""

    artifact: str
    format: str
    threads: int
    spinning: bool
    idle_p50_ms: float
    idle_p99_ms: float
    busy_p50_ms: float
    busy_p99_ms: float


@contextmanager
def busy_neighbour():
    """A CPU-bound process beside the measurement, killed afterwards."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.3)
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def choices(fmt: str) -> list[tuple[int, bool]]:
    """(threads, spinning) pairs to try; LiteRT has no spinning switch."""
    counts = sorted({1, available_cpus()})
    spins = (True, False) if fmt == "onnx" else (True,)
    return [(n, s) for n in counts for s in spins]


def measure(path: Path, fmt: str, size: int, runs: int) -> list[SharedRow]:
    """Every choice of ``fmt`` on one artifact, idle then beside a busy neighbour."""
    x = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    rows = []
    for threads, spinning in choices(fmt):
        call = functools.partial(FORMATS[fmt].load(path, threads, "cpu", spinning).infer, x)
        call()
        idle = latency(call, runs=runs)
        with busy_neighbour():
            busy = latency(call, runs=runs)
        rows.append(SharedRow(path.name, fmt, threads, spinning, idle.p50, idle.p99, busy.p50, busy.p99))
    return rows


def parser():
    p = command_parser("python -m benchmarks.shared_cores", __doc__)
    p.add_argument("bundle", type=Path, help="a converted bundle folder")
    p.add_argument("--runs", type=positive_int, default=50, help="timed calls per cell (default 50)")
    p.add_argument("--out", type=Path, help="write shared_cores.{md,json} here")
    return p


def table(rows: list[SharedRow]) -> str:
    """The rows as Markdown, with the profile that picks each choice."""
    picked = {}
    for name, p in PROFILES.items():
        for fmt in FORMATS:
            picked.setdefault((fmt, p.threads_for(fmt) or available_cpus(), p.spinning or fmt != "onnx"),
                              []).append(name)
    lines = ["| artifact | threads | spinning | idle p50 ms | idle p99 ms | busy neighbour p50 ms | busy p99 ms "
             "| profile |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        key = (r.format, r.threads, r.spinning)
        names = ", ".join(picked.get(key, []))
        lines.append(f"| {r.artifact} | {r.threads} | {'on' if r.spinning else 'off'} | {r.idle_p50_ms:.1f} | "
                     f"{r.idle_p99_ms:.1f} | {r.busy_p50_ms:.1f} | {r.busy_p99_ms:.1f} | {names} |")
    return "\n".join(lines)


def run(args) -> int:
    """Measure every verified artifact and print the table."""
    manifest = Manifest.read(args.bundle)
    if not manifest.verified():
        raise ModelError(f"{args.bundle}: no verified artifact to measure")
    rows = []
    for entry in manifest.verified():
        print(f"measuring {entry.file} ...", file=sys.stderr)
        rows += measure(artifact_path(args.bundle, entry), entry.format, manifest.input.height, args.runs)
    text = table(rows)
    print(text + f"\n\nCPU: {cpu_info().model}, {available_cpus()} usable; {args.runs} runs per cell")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "shared_cores.md").write_text(text + "\n")
        (args.out / "shared_cores.json").write_text(json.dumps(
            {"cpu": asdict(cpu_info()), "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return one_line_errors(lambda: run(args), (RuntimeToolkitError, OSError))


if __name__ == "__main__":
    sys.exit(main())
