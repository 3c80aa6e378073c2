"""``python -m benchmarks.device_profile BUNDLE [BUNDLE ...] --image IMG [--profile pi]``: what a small board
would get, emulated on this machine: each verified artifact runs in a fresh process pinned to the
profile's cores under its memory limit (a cgroup where one is writable, else only compared with peak RSS),
and reports cold start (spawn to first label), JPEG-to-label latency p50/p99 and peak RSS.

This emulates a budget of cores and memory; it does not measure a board: a Cortex-A53 core is several
times slower than one core of this CPU, and ARM64 wheels differ (see ``runtime.package install --arch arm64``).
"""

import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.rows import ROOT, child_env
from runtime.bundle import Manifest
from runtime.cli import command_parser, positive_int
from runtime.errors import ModelError, RuntimeToolkitError, one_line_errors
from runtime.machine.cpuinfo import cpu_info


@dataclass(frozen=True)
class DeviceProfile:
    """A board's budget: how many cores and how much memory."""

    cores: int
    memory_mb: int
    about: str


DEVICES = {"pi": DeviceProfile(1, 512, "one core and 512 MB, a Raspberry-Pi-class budget")}

CHILD = """
import io, json, sys, time
from runtime.classifier import Classifier
bundle, image, fmt, precision, runs = sys.argv[1:6]
clf = Classifier.load(bundle, fmt or None, precision or None, profile="shared")
jpeg = open(image, "rb").read()
answer = clf.predict([io.BytesIO(jpeg)])[0]
label = answer.label
first = time.time()
times = []
for _ in range(int(runs)):
    start = time.perf_counter()
    clf.predict([io.BytesIO(jpeg)])
    times.append((time.perf_counter() - start) * 1000)
from benchmarks.coldstart import peak_rss_mb
print(json.dumps({"first": first, "label": label, "times_ms": times, "peak_rss_mb": peak_rss_mb(),
                  "threads": clf.runner.threads, "rechecked": answer.rechecked}))
"""


@dataclass
class DeviceRow:
    """One artifact under the profile."""

    bundle: str
    artifact: str
    threads: int
    cold_start_s: float
    p50_ms: float
    p99_ms: float
    peak_rss_mb: float
    within_memory: bool
    label: str
    rechecked: bool = False  # a cascade's float file answered this image too


def _cgroup_dir(limit_mb: int) -> tuple[Path, str] | None:
    """A new memory cgroup limited to ``limit_mb`` (v2, else v1) and its procs file, or None."""
    name = f"edge-device-{os.getpid()}"
    for base, limit_file in ((Path("/sys/fs/cgroup"), "memory.max"),
                             (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes")):
        if not (base / "cgroup.procs").exists() or not os.access(base, os.W_OK):
            continue
        try:
            (base / name).mkdir(exist_ok=True)
            (base / name / limit_file).write_text(str(limit_mb * 2 ** 20))
            return base / name, limit_file
        except OSError:
            continue
    return None


@contextmanager
def caged(profile: DeviceProfile):
    """(preexec function for a child, how memory is limited) for the profile's cores and memory."""
    cores = set(sorted(os.sched_getaffinity(0))[:profile.cores])
    group = _cgroup_dir(profile.memory_mb)

    def enter():
        os.sched_setaffinity(0, cores)
        if group:
            (group[0] / "cgroup.procs").write_text(str(os.getpid()))
    how = f"cgroup {group[1]} = {profile.memory_mb} MB" if group else "not enforced (no writable cgroup)"
    try:
        yield enter, how
    finally:
        if group:
            group[0].rmdir()


def measure(bundle: Path, fmt: str, precision: str, image: Path, runs: int, profile: DeviceProfile,
            enter) -> DeviceRow:
    """One fresh, caged process for one artifact (``fmt`` and ``precision`` empty: the bundle's cascade)."""
    env = child_env(os.environ, OMP_NUM_THREADS=str(profile.cores))
    start = time.time()
    res = subprocess.run([sys.executable, "-c", CHILD, str(bundle), str(image), fmt, precision, str(runs)],
                         cwd=ROOT, env=env, preexec_fn=enter, capture_output=True, text=True, timeout=900,
                         check=False)
    name = f"model.{precision}.{fmt}" if fmt else "cascade (default)"
    if res.returncode != 0:
        killed = res.returncode == -9
        why = "killed: over the memory limit" if killed else (res.stderr.strip().splitlines() or ["?"])[-1]
        raise ModelError(f"{bundle.name}/{name}: {why}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    times = sorted(out["times_ms"])
    return DeviceRow(bundle.name, name, out["threads"], out["first"] - start, statistics.median(times),
                     times[min(len(times) - 1, int(0.99 * len(times)))], out["peak_rss_mb"],
                     out["peak_rss_mb"] <= profile.memory_mb, out["label"], out["rechecked"])


def parser():
    p = command_parser("python -m benchmarks.device_profile", __doc__)
    p.add_argument("bundles", type=Path, nargs="+", help="converted bundle folders")
    p.add_argument("--image", type=Path, required=True, help="a JPEG to classify")
    p.add_argument("--profile", choices=tuple(DEVICES), default="pi",
                   help="; ".join(f"{k}: {d.about}" for k, d in DEVICES.items()))
    p.add_argument("--runs", type=positive_int, default=30, help="timed predictions per artifact (default 30)")
    p.add_argument("--out", type=Path, help="write device_<profile>.{md,json} here")
    return p


def run(args) -> int:
    """Measure every verified artifact of every bundle and print the table."""
    if not args.image.is_file():
        raise ModelError(f"--image {args.image}: no such file")
    profile = DEVICES[args.profile]
    rows, failed = [], []
    with caged(profile) as (enter, how):
        for bundle in args.bundles:
            m = Manifest.read(bundle)
            cascade = [("", "")] if m.published_cascades() else []
            for fmt, precision in [(a.format, a.precision) for a in m.verified()] + cascade:
                print(f"{bundle.name}/{fmt and f'model.{precision}.{fmt}' or 'cascade'} ...", file=sys.stderr)
                try:
                    rows.append(measure(bundle, fmt, precision, args.image, args.runs, profile, enter))
                except ModelError as e:
                    failed.append(str(e))
    lines = [f"Profile {args.profile}: {profile.about}; {profile.cores} core(s) of {cpu_info().model}, memory {how}. "
             "Emulated on this machine, not measured on a board.", "",
             "| bundle | artifact | threads | cold start s | p50 ms | p99 ms | peak RSS MB | within memory |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.bundle} | {r.artifact}{' (image re-checked)' if r.rechecked else ''} | {r.threads} | "
              f"{r.cold_start_s:.2f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
              f"{r.peak_rss_mb:.0f} | {'yes' if r.within_memory else 'no'} |" for r in rows]
    if any(r.artifact.startswith("cascade") for r in rows):
        lines.append("\nA cascade row times one image: only its int8 file where the image is not a near-tie, its "
                     "int8 and float files where it is (said in the row); its RSS holds both files.")
    lines += [f"\nfailed: {f}" for f in failed]
    print("\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"device_{args.profile}.md").write_text("\n".join(lines) + "\n")
        (args.out / f"device_{args.profile}.json").write_text(json.dumps(
            {"profile": asdict(profile), "memory": how, "cpu": asdict(cpu_info()),
             "rows": [asdict(r) for r in rows], "failed": failed}, indent=2) + "\n")
    return 1 if failed and not rows else 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return one_line_errors(lambda: run(args), (RuntimeToolkitError, OSError))


if __name__ == "__main__":
    sys.exit(main())
