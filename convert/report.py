"""Run a conversion from parsed flags and print its summary table."""

import sys
from pathlib import Path

from convert.errors import ConvertError
from convert.pipeline import Artifact, convert
from convert.source import make_bundle, open_source


def resolve_bundle(args) -> Path:
    """The bundle to convert: the folder given, or one made from a bare model file."""
    if args.source.is_dir():
        return args.source
    if not args.source.is_file():
        raise ConvertError(f"no bundle or model at {args.source}")
    classes = [c for c in (args.classes or "").split(",") if c]
    return make_bundle(args.source, args.out or Path("artifacts") / args.source.stem, classes)


def parity_folder(args) -> Path:
    """``--parity``, else ``validation/`` beside ``--calibration``, else ``--calibration``."""
    if args.parity:
        return args.parity
    if args.calibration is None:
        raise ConvertError("give --parity DIR or --calibration DIR: parity needs real images")
    sibling = args.calibration.parent / "validation"
    return sibling if sibling.is_dir() and sibling != args.calibration else args.calibration


def table(results: list[Artifact]) -> str:
    """Markdown: format, precision, size, seconds to convert, parity against Keras."""
    rows = ["| file | MB | convert s | max abs diff | mean abs diff | diff / range | top-1 agree | top-5 overlap "
            "| accuracy keras -> export | b1 ms | parity |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in results:
        p = a.parity
        acc = f"{p.accuracy_ref:.3f} -> {p.accuracy:.3f}" if p and p.accuracy is not None else "-"
        cells = ([f"{p.max_abs_logit_diff:.2e}", f"{p.mean_abs_logit_diff:.2e}", f"{p.rel_logit_diff:.1e}",
                  f"{p.top1_agreement:.1%}", f"{p.top5_overlap:.1%}", acc] if p else ["-"] * 6)
        cells.append(f"{a.latency_ms:.1f}" if a.latency_ms else "-")
        cells.append("passed" if a.error is None else f"FAILED: {a.error}")
        rows.append(f"| {a.file} | {a.bytes / 1e6:.1f} | {a.seconds:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def run(args) -> int:
    """Convert, print the table and one line per failed artifact; non-zero if any failed."""
    bundle = resolve_bundle(args)
    source = open_source(bundle)
    source.reduce_range = {"auto": None, "on": True, "off": False}[args.int8_reduce_range]
    try:
        results = convert(source, bundle, args.formats, args.precisions, parity_folder(args), args.parity_images,
                          args.calibration, args.calibration_images)
    finally:
        source.close()
    print("\n" + table(results))
    failed = [a for a in results if a.error]
    for a in failed:
        print(f"error: {a.error}", file=sys.stderr)
    print(f"\n{len(results) - len(failed)}/{len(results)} artifacts published in {bundle}")
    return 1 if failed else 0
