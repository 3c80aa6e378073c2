"""``python -m benchmarks.runtime_bench BUNDLE --image IMG``: what the deployable runtime costs.

Per backend (the fastest verified artifact of each format), and for the bundle's default cascade: cold start
of ``runtime.predict`` against a minimal script on the same file (a cascade's int8 file; time and peak RSS,
alternately, median of --cold-runs), end-to-end latency from JPEG bytes to label against the bare
``session.run``/``invoke`` on the same tensor, and, with --install-size, the size of a fresh virtual
environment holding the runtime and that backend (``pip install .[extra]``) against the slim folder of
``runtime.package install`` for this machine and for ARM64.
"""

import io
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.cold_minimal import ColdPair, compare
from benchmarks.measure.timing import latency
from benchmarks.rows import ROOT
from runtime.bundle import Manifest
from runtime.choice import choose
from runtime.classifier import Classifier
from runtime.cli import command_parser, positive_int
from runtime.errors import BackendUnavailable, ModelError, RuntimeToolkitError, one_line_errors
from runtime.formats import FORMATS, PRECISIONS
from runtime.machine.cpuinfo import cpu_info
from runtime.package.build import slim
from runtime.package.wheels import Target
from runtime.preprocessing import preprocess

ARM64_GLIBC = "2.34"  # Graviton Lambdas on Amazon Linux 2023; Raspberry Pi OS bookworm has 2.36


@dataclass
class RuntimeRow:
    """One backend's cold start against a minimal script, latencies and installed sizes."""

    artifact: str
    cold: ColdPair
    bare_ms: float
    wrapped_ms: float
    e2e_ms: float
    overhead_vs_bare: float
    install_mb: float | None = None
    slim_mb: float | None = None
    arm64_slim_mb: float | None = None


def bare_call(clf: Classifier, x):
    """The backend's own call on a preprocessed tensor, without the runtime around it (a cascade: its int8
    file's)."""
    r = clf.runner.fast if clf.exact_file else clf.runner
    if r.backend == "onnxruntime":
        return lambda: r.session.run(None, {r.input_name: x})
    it = r.interpreter
    r.infer(x)  # resize the interpreter for this batch once
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    def call():
        it.set_tensor(inp, x)
        it.invoke()
        return it.get_tensor(out)
    return call


def install_size_mb(extra: str) -> float:
    """MB added to a fresh venv by ``pip install .[extra]`` (pip's own files excluded)."""
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        site = next(venv.glob("lib/python*/site-packages"))
        before = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
        res = subprocess.run([str(venv / "bin/pip"), "install", "-q", "-c", str(ROOT / "constraints.txt"),
                              f"{ROOT}[{extra}]"], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            tail = (res.stderr.strip().splitlines() or ["?"])[-1]
            raise BackendUnavailable(f"--install-size: pip could not install .[{extra}] (offline?): {tail}")
        after = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
        return (after - before) / 1e6


def slim_mb(fmt: str, target: Target) -> float:
    """MB of ``runtime.package install`` for ``target`` (wheels from the registry, pruned)."""
    with tempfile.TemporaryDirectory() as tmp:
        return slim(fmt, Path(tmp) / "slim", target).bytes / 1e6


def measure(bundle: Path, fmt: str | None, precision: str | None, image: str, cold_runs: int, runs: int,
            with_size: bool) -> RuntimeRow:
    """All figures for the artifact of ``fmt`` at ``precision`` (None: the one the runtime chooses; ``fmt``
    None: the bundle's default cascade)."""
    manifest = Manifest.read(bundle)
    art = choose(manifest, fmt, precision).entry
    clf = Classifier.load(bundle, fmt, art.precision if fmt else None)
    jpeg = Path(image).read_bytes()
    x = clf.preprocess(io.BytesIO(jpeg))[None]
    bare = latency(bare_call(clf, x), runs=runs).p50
    wrapped = latency(lambda: clf.predict_batch(x), runs=runs).p50
    e2e = latency(lambda: clf.predict([io.BytesIO(jpeg)]), runs=runs).p50
    cold = compare(bundle, bundle / art.file, art.format, art.precision if fmt else None, manifest.input.height,
                   image, cold_runs)
    row = RuntimeRow(clf.name.split("/")[-1] if fmt is None else art.file, cold, bare, wrapped, e2e, e2e / bare - 1)
    if with_size and fmt:
        here = Target.here()
        row.install_mb, row.slim_mb = install_size_mb(FORMATS[fmt].extra), slim_mb(fmt, here)
        row.arm64_slim_mb = slim_mb(fmt, Target("arm64", here.python, ARM64_GLIBC))
    return row


def parser():
    p = command_parser("python -m benchmarks.runtime_bench", __doc__)
    p.add_argument("bundle", type=Path, help="a converted bundle folder")
    p.add_argument("--image", required=True, help="a JPEG to classify")
    p.add_argument("--precision", choices=PRECISIONS, help="artifact precision (default: the runtime's choice)")
    p.add_argument("--cold-runs", type=positive_int, default=5, help="fresh processes per backend (default 5)")
    p.add_argument("--runs", type=positive_int, default=100, help="timed calls per latency (default 100)")
    p.add_argument("--install-size", action="store_true", help="also pip-install each backend into a fresh venv")
    p.add_argument("--out", type=Path, help="write runtime.json here")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return one_line_errors(lambda: run(args), (RuntimeToolkitError, OSError))


def run(args) -> int:
    """Check the inputs, measure each backend, print the table."""
    if not args.bundle.is_dir():
        raise ModelError(f"no bundle folder at {args.bundle}")
    preprocess(args.image, (8, 8))  # a missing or broken image fails here, in one line
    rows = [measure(args.bundle, f, args.precision, args.image, args.cold_runs, args.runs, args.install_size)
            for f in FORMATS]
    if args.precision is None and Manifest.read(args.bundle).published_cascades():
        rows.append(measure(args.bundle, None, None, args.image, args.cold_runs, args.runs, False))
    lines = ["| artifact | first start s (hashes) | cold start s | minimal script s | ratio | peak RSS MB "
             "| minimal RSS MB | bare run ms | JPEG to label ms | e2e over bare | venv MB | slim MB | arm64 slim MB |",
             "|---" * 13 + "|"]
    for r in rows:
        sizes = [f"{v:.0f}" if v else "-" for v in (r.install_mb, r.slim_mb, r.arm64_slim_mb)]
        lines.append(f"| {r.artifact} | {r.cold.runtime_first_s:.2f} | {r.cold.runtime_s:.2f} | "
                     f"{r.cold.minimal_s:.2f} | {r.cold.ratio:.2f} | "
                     f"{r.cold.runtime_rss_mb:.0f} | {r.cold.minimal_rss_mb:.0f} | {r.bare_ms:.2f} | {r.e2e_ms:.2f} | "
                     f"{r.overhead_vs_bare:+.0%} | {' | '.join(sizes)} |")
    lines.append(f"\nCPU: {cpu_info().model}; flags {', '.join(k for k, v in cpu_info().flags.items() if v)}; "
                 f"cold starts: median of {args.cold_runs}, alternately (ratio: median of each pair's), after a "
                 f"first start that hashes the model; runtime bytecode compiled; arm64 slim: glibc <= {ARM64_GLIBC}")
    print("\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "runtime.json").write_text(json.dumps(
            [asdict(r) for r in rows], indent=2) + "\n")
        (args.out / "runtime.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
