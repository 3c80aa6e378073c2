"""Run a conversion from parsed flags and print its summary table."""

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from convert.errors import ConvertError
from convert.lock import bundle_lock
from convert.pipeline import Export, convert
from convert.source import make_bundle, open_source
from runtime.bundle import Manifest
from runtime.cli import progress_options


@contextmanager
def bundle_of(args):
    """The bundle to convert: the folder given, or one made from a bare model file, removed again
    when the conversion stops with an error before anything was published."""
    if args.source.is_dir():
        yield args.source
        return
    if not args.source.is_file():
        raise ConvertError(f"no bundle or model at {args.source}")
    classes = [c for c in (args.classes or "").split(",") if c]
    out = args.out or Path("artifacts") / args.source.stem  # the same folder as run()'s lock
    made = not out.exists()
    try:
        yield make_bundle(args.source, out, classes, args.size, args.preprocessing)
    except BaseException:
        if made:
            shutil.rmtree(out, ignore_errors=True)
        raise
    if made and not Manifest.read(out).verified():
        shutil.rmtree(out, ignore_errors=True)
        print(f"note: no artifact passed, so {out} was removed again", file=sys.stderr)


def parity_folder(args) -> Path | None:
    """``--parity``, else ``validation/`` beside ``--calibration``, else ``--calibration``, else None (noise)."""
    for folder in (args.parity, args.calibration):
        if folder is not None and not folder.is_dir():
            raise ConvertError(f"{folder}: no such folder")
    if args.parity:
        return args.parity
    if args.calibration is None:
        return None
    sibling = args.calibration.parent / "validation"
    return sibling if sibling.is_dir() and sibling != args.calibration else args.calibration


def precisions(args) -> list[str]:
    """``--precisions``, else all of them with calibration images and the float ones without (none with
    ``--cascades-only``)."""
    if args.cascades_only:
        return []
    if args.precisions:
        return args.precisions
    if args.calibration is None:
        print("note: int8 skipped: it needs --calibration DIR (real images)", file=sys.stderr)
        return ["fp32", "fp16"]
    return ["fp32", "fp16", "int8"]


def table(results: list[Export]) -> str:
    """Markdown: format, precision, size, seconds to convert, parity against Keras."""
    rows = ["| file | MB | convert s | max abs diff | mean abs diff | diff / range | top-1 agree [95%] of n "
            "| top-5 overlap "
            "| accuracy keras -> export | b1 ms | parity |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in results:
        p = a.parity
        acc = f"{p.accuracy_ref:.3f} -> {p.accuracy:.3f}" if p and p.accuracy is not None else "-"
        cells = ([f"{p.max_abs_logit_diff:.2e}", f"{p.mean_abs_logit_diff:.2e}", f"{p.rel_logit_diff:.1e}",
                  p.agreement_text(), f"{p.top5_overlap:.1%}", acc] if p else ["-"] * 6)
        cells.append(f"{a.latency_ms:.1f}" if a.latency_ms else "-")
        cells.append("passed" if a.error is None else f"FAILED: {a.error}")
        rows.append(f"| {a.file} | {a.bytes / 1e6:.1f} | {a.seconds:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def cascade_table(pairs) -> str:
    """Markdown: each cascade's gate, re-check rate, held-out agreement and its trade-off table."""
    rows = ["| cascade | gate | re-checked | agreement (held-out halves) | halves: gate fitted -> agreement on the "
            "other | expected b1 ms | published |", "|---|---|---|---|---|---|---|"]
    for c in pairs:
        halves = "; ".join(f"{h.margin:.2f} on {h.fitted_images} -> {h.agreement:.1%} of {h.checked_images}"
                           for h in c.halves)
        gate = f"{c.margin:.2f} ({c.set_by}" + (f", widened by {c.widened_by:.2f})" if c.set_by == "fitted" else ")")
        rows.append(f"| {c.name} | {gate} | {c.recheck_rate:.1%} | {c.parity.agreement_text()} | {halves} | "
                    f"{f'{c.latency_ms:.1f}' if c.latency_ms else '-'} | "
                    f"{'yes' if c.parity.passed else 'no: ' + '; '.join(c.parity.failures)} |")
    for c in pairs:
        rows += ["", f"{c.name}: gate -> re-checked, agreement on all parity images", "| gate | re-checked | "
                 "agreement |", "|---|---|---|"]
        rows += [f"| {r.margin:.2f}{' (chosen)' if r.margin == c.margin else ''} | {r.recheck_rate:.1%} | "
                 f"{r.agreement:.1%} |" for r in c.tradeoff]
    return "\n".join(rows)


def int8_report(args) -> int:
    """Write the per-layer int8 error report of a bundle and print its worst layers."""
    from convert.calibration import calibration_set
    from convert.int8.layer_report import onnx_layers, tflite_layers, write
    from runtime.machine.cpuinfo import cpu_info

    if not args.source.is_dir():
        raise ConvertError(f"--int8-report needs a bundle folder; {args.source} is not one")
    if args.calibration is None or not args.calibration.is_dir():
        raise ConvertError(f"--int8-report needs --calibration DIR (real images); got {args.calibration}")
    source = open_source(args.source)
    try:
        m = source.manifest
        images = calibration_set(args.calibration, m.spec(), m.classes, args.calibration_images)
        n = min(args.report_images, len(images.files))
        layers = {fmt: [] for fmt in args.formats}
        for fmt in (bar := tqdm(args.formats, desc="int8 report", unit="format", **progress_options())):
            bar.set_postfix_str(fmt)
            layers[fmt] = {"onnx": onnx_layers, "tflite": tflite_layers}[fmt](source, images, n)
    finally:
        source.close()
    out = args.int8_report / m.name
    head = {"bundle": m.name, "images": n, "calibration": str(args.calibration), "cpu": cpu_info().model}
    write([r for fmt in args.formats for r in layers[fmt]], head, out)
    for fmt, rows in layers.items():
        known = [r for r in rows if r.output_sqnr_db is not None]
        worst = sorted(known, key=lambda r: r.output_sqnr_db)[:3]
        print(f"{fmt}: {len(rows)} quantized layers; most error added by "
              + ", ".join(f"{r.name} ({r.op}, {r.output_sqnr_db:.1f} dB)" for r in worst))
    print(f"per-layer report in {out}/int8_layers.md (also .json, .png)")
    return 0


def qat_minutes(args) -> float | None:
    """The fine-tuning budget asked for: ``--qat-minutes``, or the default with ``--qat``; None without either."""
    from convert.__main__ import DEFAULT_QAT_MINUTES

    if args.qat_minutes is not None:
        return args.qat_minutes
    return DEFAULT_QAT_MINUTES if args.qat else None


def adopt_weights(source, folder: Path):
    """Copy fine-tuned weights made elsewhere into BUNDLE/qat/ (whole or not at all) and have both int8 exports
    use them; ConvertError when they are missing or were trained for another model."""
    from convert.int8.qat_graph import read_record
    from convert.pipeline import qat_methods
    from runtime.files import replacing_folder

    read_record(folder, source.manifest.source.sha256)
    if folder.resolve() != (source.bundle / "qat").resolve():
        with replacing_folder(source.bundle / "qat", "qat.json") as tmp:
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
    source.int8_methods.update(qat_methods(source))


def run(args) -> int:
    """Convert, print the table and one line per failed artifact; non-zero if any failed."""
    if args.int8_report:
        return int8_report(args)
    wanted, images = precisions(args), parity_folder(args)
    target = args.source if args.source.is_dir() else args.out or Path("artifacts") / args.source.stem
    with bundle_lock(target), bundle_of(args) as bundle:
        source = open_source(bundle)
        source.reduce_range = {"auto": None, "on": True, "off": False}[args.int8_reduce_range]
        try:
            if args.qat_from:
                adopt_weights(source, args.qat_from)
            results = convert(source, bundle, args.formats, wanted, images, args.parity_images,
                              args.calibration, args.calibration_images, cascade_margin=args.cascade_margin,
                              qat_minutes=qat_minutes(args))
        finally:
            source.close()
        pairs = Manifest.read(bundle).cascades
    if images is None:
        print("note: parity was checked on noise images (no --parity or --calibration): "
              "it proves the same function, not the same accuracy", file=sys.stderr)
    if results:
        print("\n" + table(results))
    if pairs:
        print("\n" + cascade_table(pairs))
    if run := source.fine_tuning:
        print(f"\n{run.summary()}; int8 files made from it: "
              + (", ".join(sorted(source.int8_methods)) or "none"))
        if "onnx" in args.formats and "onnx" not in source.int8_methods and not run.worse():
            print("note: the ONNX int8 file keeps its default method: without VNNI onnxruntime stores 7-bit weights, "
                  "which the fine-tuning's 8-bit grid does not match (--int8-reduce-range off would saturate)",
                  file=sys.stderr)
        if run.worse():
            print("warning: fine-tuning refused (it lowered the validation agreement): the int8 files were made "
                  "without it", file=sys.stderr)
    failed = [a for a in results if a.error]
    for a in failed:
        print(f"error: {a.error}", file=sys.stderr)
    published = sum(c.parity.passed for c in pairs)
    print(f"\n{len(results) - len(failed)}/{len(results)} artifacts published in {bundle}, {published} cascade"
          f"{'' if published == 1 else 's'}")
    return 1 if failed else 0
