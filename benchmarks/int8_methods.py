"""``python -m benchmarks.int8_methods BUNDLE --calibration DIR --parity DIR``: every int8 method of
``convert.int8.methods`` against Keras, next to the fp32 export of the same format, measured in one run:
top-1 agreement, accuracy, rows with tied logits, how close Keras's own two best classes were on the images
whose top class changed, batch-1 latency, size, and the parity verdict."""

import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runtime.cli import command_parser, import_tensorflow_quietly, positive_int, progress_options


@dataclass
class MethodRow:
    """One file made by one method, measured against the Keras model on the parity images."""

    format: str
    method: str
    about: str
    diagnostic: bool = False
    mb: float | None = None
    top1_agreement: float | None = None
    accuracy_ref: float | None = None
    accuracy: float | None = None
    logit_rms: float | None = None  # root mean square of the logits' differences from Keras's
    tie_rows: int | None = None
    flip_margins: list[float] = field(default_factory=list)  # Keras's top-2 logit gap on each changed image
    p50_ms: float | None = None
    fp32_p50_ms: float | None = None  # the same format's fp32 file, timed alternately with this one
    speedup_vs_fp32: float | None = None
    passed: bool | None = None
    failures: list[str] = field(default_factory=list)
    convert_s: float | None = None


def tie_rows(logits: np.ndarray, k: int = 5) -> int:
    """Images with two equal logits among their top ``k`` (the order among those is arbitrary)."""
    top = -np.sort(-logits, axis=1)[:, :k]
    return int(np.sum(np.any(top[:, 1:] == top[:, :-1], axis=1)))


def top2_margin(logits: np.ndarray) -> np.ndarray:
    """Each row's gap between its two largest logits: how far a row is from changing its top class."""
    top = -np.sort(-logits, axis=1)
    return top[:, 0] - top[:, 1]


NEAR_TIES = (0.1, 0.2, 0.5)  # Keras top-2 margins counted in the report's head


def make_file(exporter, source, calibration, dest: Path, how) -> Path:
    """Write the fp32 export (``how`` None) or the int8 file of method ``how`` to ``dest``."""
    if how is None:
        exporter.export(source, "fp32", None, dest)
    else:
        exporter.int8(source, calibration, dest, how)
    return dest


def paired_p50(fn, other, runs: int) -> tuple[float, float]:
    """Median milliseconds of ``fn`` and ``other`` timed alternately (after a warm-up of each), so that a
    machine that slows down during the run slows both alike; their runners must not spin (see ``measure``)."""
    fn(), other()
    times = {fn: [], other: []}
    for _ in range(runs):
        for f in (fn, other):
            t = time.perf_counter()
            f()
            times[f].append(time.perf_counter() - t)
    return 1000 * float(np.median(times[fn])), 1000 * float(np.median(times[other]))


def measure(fmt: str, name: str, about: str, make, ref, images, runs: int, fp32=None) -> tuple[MethodRow, object]:
    """Make one file with ``make()``, then measure it (timed alternately with the ``fp32`` runner of its
    format when given); an exporter error becomes the row's failure. Returns the row and its runner."""
    from runtime.errors import first_line
    from runtime.formats import FORMATS
    from runtime.parity import compare, judge

    row = MethodRow(fmt, name, about)
    t = time.perf_counter()
    try:
        path = make()
    except Exception as e:  # the libraries raise many kinds; the row says which
        row.failures = [f"export failed: {first_line(e)}"]
        return row, None
    row.convert_s, row.mb = time.perf_counter() - t, path.stat().st_size / 1e6
    # no spinning: between two alternated calls the idle workers of one onnxruntime session would spin on the
    # cores the other needs (on 2 cores it about doubled the 150 px fp32 ONNX file's time; see the README)
    runner = FORMATS[fmt].load(path, None, "cpu", False)
    out = runner.infer_batches(images.batch)
    p = judge(compare(ref, out, images.labels), "int8")
    row.top1_agreement, row.accuracy_ref, row.accuracy = p.top1_agreement, p.accuracy_ref, p.accuracy
    row.passed, row.failures, row.tie_rows = p.passed, p.failures, tie_rows(out)
    row.logit_rms = float(np.sqrt(np.mean((out.astype(np.float64) - ref) ** 2)))
    changed = out.argmax(1) != ref.argmax(1)
    row.flip_margins = sorted(round(float(g), 4) for g in top2_margin(ref)[changed])
    one = images.batch[:1]
    other = fp32 or runner
    row.p50_ms, row.fp32_p50_ms = paired_p50(lambda: runner.infer(one), lambda: other.infer(one), runs)
    row.speedup_vs_fp32 = row.fp32_p50_ms / row.p50_ms
    return row, runner


def run(args) -> tuple[list[MethodRow], np.ndarray, int]:
    """fp32 then every selected method, per format, on one set of parity and calibration images; the rows,
    the Keras logits they were compared with and the number of calibration images."""
    from convert import to_onnx, to_tflite
    from convert.calibration import calibration_set
    from convert.int8.methods import METHODS
    from convert.source import open_source
    from runtime.images import load_images

    source = open_source(args.bundle)
    m = source.manifest
    exporters = {"onnx": to_onnx, "tflite": to_tflite}
    try:
        images = load_images(args.parity, m.spec(), m.classes, args.parity_images)
        calibration = calibration_set(args.calibration, m.spec(), m.classes, args.calibration_images)
        ref = source.predict(images.batch)
        jobs = [(f, "fp32", "the float export this format's int8 must beat", None) for f in args.formats]
        jobs += [(x.format, x.name, x.about, x) for x in METHODS
                 if x.format in args.formats and (not args.methods or x.name in args.methods)]
        rows, fp32 = [], {}
        for fmt, name, about, how in (bar := tqdm(jobs, desc="int8 methods", unit="file", **progress_options())):
            bar.set_postfix_str(f"{fmt} {name}")
            dest = source.scratch / f"{name}.{fmt}"
            make = partial(make_file, exporters[fmt], source, calibration, dest, how)
            row, runner = measure(fmt, name, about, make, ref, images, args.runs, fp32.get(fmt))
            row.diagnostic = bool(how and how.diagnostic)
            rows.append(row)
            if how is None:
                fp32[fmt] = runner  # its file stays until the run ends: later rows are timed against it
            else:
                dest.unlink(missing_ok=True)
    finally:
        source.close()
    return rows, ref, len(calibration.files)


def markdown(rows: list[MethodRow], head: dict) -> str:
    """The methods table with what it was measured on."""
    lines = [f"# int8 methods: {head['bundle']}", "",
             f"{head['images']} parity images ({head['parity']}), {head['calibration_images']} calibration images "
             f"({head['calibration']}); CPU {head['cpu']} ({head['flags']}); batch-1 p50 over {head['runs']} runs. "
             "Agreement and accuracy against the Keras model; *passed*: the int8 parity thresholds of "
             "runtime/parity.py. Diagnostic rows compute in float and are not int8 files. *fp32 ms*: the same "
             "format's fp32 file timed alternately with this row's, both with onnxruntime's thread spinning off "
             "(*x fp32* is their ratio). *flip margin*: the largest gap between Keras's two best logits on an image "
             "whose top class the file changed. *logit rms*: root mean square of the differences from Keras's logits, "
             "steadier than the agreement, which counts the few images near a tie that the rounding noise flips.", "",
             "Keras's top-2 logit gap is under " + ", ".join(f"{t} on {n}" for t, n in head["near_ties"].items())
             + " of the parity images.", "",
             "| format | method | agreement | logit rms | accuracy keras -> file | top-5 ties | flip margin | b1 ms "
             "| fp32 ms | x fp32 | MB | passed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = f"{r.accuracy_ref:.3f} -> {r.accuracy:.3f}" if r.accuracy is not None else "-"
        verdict = "-" if r.method == "fp32" else "yes" if r.passed else "no"
        verdict += " (diagnostic)" if r.diagnostic else ""
        if r.top1_agreement is None:
            verdict = "; ".join(r.failures)
        cells = [r.format, r.method, _f(r.top1_agreement, "{:.1%}"), _f(r.logit_rms, "{:.3f}"), acc,
                 _f(r.tie_rows, "{}"), _f(max(r.flip_margins, default=None), "{:.2f}"),
                 _f(r.p50_ms, "{:.1f}"), _f(r.fp32_p50_ms, "{:.1f}"), _f(r.speedup_vs_fp32, "{:.2f}"),
                 _f(r.mb, "{:.1f}"), verdict]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Methods:", ""] + [f"- {r.format} **{r.method}**: {r.about}" for r in rows if r.method != "fp32"]
    return "\n".join(lines) + "\n"


def _f(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def check_selection(formats: list[str], methods: list[str] | None):
    """ConvertError naming a format without int8 methods, or a method that none of ``formats`` has."""
    from convert.errors import ConvertError
    from convert.int8.methods import DEFAULT, METHODS

    if bad := [f for f in formats if f not in DEFAULT]:
        raise ConvertError(f"no int8 methods for format {bad[0]!r}; known: {', '.join(DEFAULT)}")
    known = list(dict.fromkeys(x.name for x in METHODS if x.format in formats))
    if bad := [m for m in methods or [] if m not in known]:
        raise ConvertError(f"no int8 method {bad[0]!r} for {','.join(formats)}; known: {', '.join(known)}")


def parser():
    from runtime.formats import FORMATS

    p = command_parser("python -m benchmarks.int8_methods", __doc__)
    p.add_argument("bundle", type=Path, help="a bundle folder (model.keras + manifest)")
    p.add_argument("--calibration", type=Path, required=True, help="folder of real images (>= 100 distinct)")
    p.add_argument("--parity", type=Path, required=True, help="labelled images to compare on")
    p.add_argument("--parity-images", type=positive_int, default=372, help="default 372 (the whole test set)")
    p.add_argument("--calibration-images", type=positive_int, default=200, help="default 200")
    p.add_argument("--formats", default=",".join(f for f in FORMATS if "int8" in FORMATS[f].precisions),
                   type=lambda s: [x for x in s.split(",") if x], help="default onnx,tflite")
    p.add_argument("--methods", type=lambda s: [x for x in s.split(",") if x], help="default: all")
    p.add_argument("--runs", type=positive_int, default=50, help="batch-1 timing runs (default 50)")
    p.add_argument("--out", type=Path, default=Path("reports/int8"), help="writes OUT/<bundle name>/methods.*")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    import_tensorflow_quietly(args.verbose)
    from benchmarks.measure.provenance import provenance
    from convert.errors import ConvertError
    from runtime.errors import RuntimeToolkitError, one_line_errors
    from runtime.files import write_json
    from runtime.machine.cpuinfo import cpu_info

    def go():
        for folder in (args.bundle, args.calibration, args.parity):
            if not folder.is_dir():
                raise ConvertError(f"{folder}: no such folder")
        check_selection(args.formats, args.methods)
        rows, ref, calibrated = run(args)
        margins = top2_margin(ref)
        info = cpu_info()
        flags = ", ".join(k for k, v in info.flags.items() if v)
        head = {"bundle": args.bundle.name, "images": len(ref), "parity": str(args.parity),
                "calibration": str(args.calibration), "calibration_images": calibrated,
                "runs": args.runs, "cpu": info.model, "flags": flags, "provenance": provenance(),
                "near_ties": {str(t): int(np.sum(margins < t)) for t in NEAR_TIES}}
        out = args.out / args.bundle.name
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "methods.json", {**head, "rows": [asdict(r) for r in rows]})
        text = markdown(rows, head)
        (out / "methods.md").write_text(text)
        print("\n" + text.split("\n\n", 2)[2].split("\n\nMethods:")[0])
        passed = [f"{r.format} {r.method}" for r in rows if r.passed and not r.diagnostic and r.method != "fp32"]
        print(f"\n{len(passed)} int8 method(s) pass parity: {', '.join(passed) or 'none'}; report in {out}/methods.md")
        return 0

    return one_line_errors(go, (ConvertError, RuntimeToolkitError))


if __name__ == "__main__":
    sys.exit(main())
