"""``python -m benchmarks.runtime_bench BUNDLE --image IMG``: what the deployable runtime costs.

Per backend (the fastest verified artifact of each format): cold start of a fresh process
(import, load, first prediction; median of --cold-runs), end-to-end latency from JPEG bytes
to label against the bare ``session.run``/``invoke`` on the same tensor, and, with
--install-size, the size of a fresh virtual environment holding the runtime and that backend.
"""

import io
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.rows import ROOT, Target, cold_start
from benchmarks.timing import latency
from runtime.bundle import Manifest
from runtime.choice import choose
from runtime.classifier import Classifier
from runtime.cli import command_parser, positive_int
from runtime.errors import BackendUnavailable, ModelError, RuntimeToolkitError, one_line_errors
from runtime.formats import FORMATS
from runtime.preprocessing import preprocess


@dataclass
class RuntimeRow:
    """One backend's cold start, latencies and installed size."""

    artifact: str
    cold_start_s: float
    bare_ms: float
    wrapped_ms: float
    e2e_ms: float
    overhead_vs_bare: float
    install_mb: float | None = None


def bare_call(clf: Classifier, x):
    """The backend's own call on a preprocessed tensor, without the runtime around it."""
    r = clf.runner
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


def measure(bundle: Path, fmt: str, image: str, cold_runs: int, runs: int, with_size: bool) -> RuntimeRow:
    """All figures for the fastest verified artifact of ``fmt``."""
    art = choose(Manifest.read(bundle), fmt).entry
    clf = Classifier.load(bundle, fmt, art.precision)
    jpeg = Path(image).read_bytes()
    x = clf.preprocess(io.BytesIO(jpeg))[None]
    bare = latency(bare_call(clf, x), runs=runs).p50
    wrapped = latency(lambda: clf.predict_batch(x), runs=runs).p50
    e2e = latency(lambda: clf.predict([io.BytesIO(jpeg)]), runs=runs).p50
    target = Target(art.file, fmt, art.precision, bundle / art.file)
    cold = statistics.median(cold_start(target, image, "cpu")[0] for _ in range(cold_runs))
    return RuntimeRow(art.file, cold, bare, wrapped, e2e, e2e / bare - 1,
                      install_size_mb(FORMATS[fmt].extra) if with_size else None)


def parser():
    p = command_parser("python -m benchmarks.runtime_bench", __doc__)
    p.add_argument("bundle", type=Path, help="a converted bundle folder")
    p.add_argument("--image", required=True, help="a JPEG to classify")
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
    rows = [measure(args.bundle, f, args.image, args.cold_runs, args.runs, args.install_size)
            for f in FORMATS]
    lines = ["| artifact | cold start s | bare run ms | runtime on tensor ms | JPEG to label ms | e2e over bare "
             "| venv MB |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.artifact} | {r.cold_start_s:.2f} | {r.bare_ms:.2f} | {r.wrapped_ms:.2f} | {r.e2e_ms:.2f} | "
              f"{r.overhead_vs_bare:+.0%} | " + (f"{r.install_mb:.0f} |" if r.install_mb else "- |") for r in rows]
    print("\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "runtime.json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
