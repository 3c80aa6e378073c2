"""``python -m runtime.compare A B --images DIR``: the parity check as a command, for any two models.

A and B are each a bundle (its chosen artifact), a model file (.onnx, .tflite) or a Keras model
(.keras, run with the installed Keras). Both see the same images through their own preprocessing.
Prints max/mean logit difference, top-1 agreement with its 95% interval, accuracy when the folder
is labelled (class/image), then every image whose top-1 differs. Exit status 1 when a tolerance is
exceeded: by default the lower bound of B's agreement must clear the threshold of B's precision (as
in conversion), on every image of the folder.
"""

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from runtime.cli import (
    add_bare_model_args,
    command_parser,
    end_quietly_on_broken_pipe,
    error,
    model_overrides,
    positive_int,
    share,
)
from runtime.errors import ModelError, RuntimeToolkitError
from runtime.formats import DEVICES, FORMATS, PRECISIONS
from runtime.parity import THRESHOLDS, images_needed


def parser():
    p = command_parser("python -m runtime.compare", __doc__)
    p.add_argument("a", help="reference: bundle folder, model file or .keras")
    p.add_argument("b", help="compared: bundle folder, model file or .keras")
    p.add_argument("--images", required=True, help="folder of images (labelled class/image gives accuracy)")
    p.add_argument("--limit", type=positive_int, help="images used, spread over the folder (default: all)")
    add_bare_model_args(p)
    p.add_argument("--format", choices=tuple(FORMATS), help="the artifact format B picks when it is a bundle")
    p.add_argument("--precision", choices=PRECISIONS, help="the artifact precision B picks when it is a bundle")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where both models run (default cpu)")
    p.add_argument("--verbose", action="store_true", help="show the inference libraries' own log lines")
    p.add_argument("--max-diff", type=float, help="fail when the max |logit difference| is above this")
    p.add_argument("--min-agreement", type=share,
                   help="fail when the measured top-1 agreement is below this fraction (default: the 95%% lower "
                        "bound must clear the threshold of B's precision: " + ", ".join(
                            f"{k} {t.min_top1_agreement:.0%}%" for k, t in THRESHOLDS.items()) + ")")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


def load_pair(args):
    """Both classifiers; B borrows A's classes, size and mode when it carries none of its own."""
    from runtime.bundle import Overrides
    from runtime.classifier import Classifier

    overrides = model_overrides(args)
    a = Classifier.load(args.a, device=args.device, overrides=overrides)
    try:
        b = Classifier.load(args.b, args.format, args.precision, device=args.device, overrides=overrides)
    except ModelError as e:
        if "carries no" not in str(e):
            raise
        info = a.info
        size = (info.input.height, info.input.width)
        borrowed = Overrides(overrides.classes or info.classes, overrides.size or size,
                             overrides.mode or info.preprocessing.mode)
        b = Classifier.load(args.b, args.format, args.precision, device=args.device, overrides=borrowed)
    if a.info.classes != b.info.classes:
        raise ModelError(f"the models name other classes: {a.info.classes} vs {b.info.classes}")
    return a, b


def inputs(a, b, items):
    """Each model's preprocessed batch, files and labels; unreadable images are skipped and counted."""
    from runtime.errors import ImageError

    xa, xb, kept, skipped = [], [], [], 0
    for path, label in items:
        try:
            pa, pb = a.preprocess(path), b.preprocess(path)
        except ImageError:
            skipped += 1
            continue
        xa.append(pa)
        xb.append(pb)
        kept.append((str(path), label))
    if not kept:
        raise ModelError(f"no readable images among {len(items)} files")
    return np.stack(xa), np.stack(xb), kept, skipped


def run(args) -> int:
    from runtime.images import labelled_images, spread
    from runtime.parity import compare

    if not Path(args.images).is_dir():
        raise ModelError(f"--images {args.images}: no such folder")
    a, b = load_pair(args)
    found = labelled_images(args.images, a.info.classes)
    items = spread(found, args.limit or len(found))
    if not items:
        raise ModelError(f"--images {args.images}: the folder holds no images")
    xa, xb, kept, skipped = inputs(a, b, items)
    files, labels = [f for f, _ in kept], [label for _, label in kept]
    ref, out = a.runner.infer_batches(xa), b.runner.infer_batches(xb)
    p = compare(ref, out, labels)
    worse = [f"max |diff| {p.max_abs_logit_diff:.3g} > {args.max_diff}"] if (
        args.max_diff is not None and p.max_abs_logit_diff > args.max_diff) else []
    if args.min_agreement is not None and p.top1_agreement < args.min_agreement:
        worse.append(f"top-1 agreement {p.top1_agreement:.1%} < {args.min_agreement:.1%}")
    if args.min_agreement is None and p.interval[0] < (need := THRESHOLDS[b.precision].min_top1_agreement):
        worse.append(f"top-1 agreement {p.agreement_text()}: the 95% lower bound is under {b.precision}'s "
                     f"{need:.0%}" + (f" ({images_needed(need)} images are needed to show it)"
                                      if p.images < images_needed(need) else ""))
    differ = [{"image": f, "a": a.info.classes[int(x.argmax())], "b": a.info.classes[int(y.argmax())],
               "max_abs_diff": float(np.abs(x - y).max())}
              for f, x, y in zip(files, ref, out, strict=True) if x.argmax() != y.argmax()]
    if args.json:
        low, high = p.interval
        print(json.dumps({"a": a.name, "b": b.name, "b_precision": b.precision, **asdict(p),
                          "agreement_interval": [low, high], "disagreements": differ, "failed": worse}))
    else:
        print(f"A: {a.name} ({a.runner.backend})\nB: {b.name} ({b.runner.backend}, {b.precision})")
        print(f"{p.images} images from {args.images}" + (f", {skipped} unreadable skipped" if skipped else ""))
        print("\n| max abs diff | mean abs diff | top-1 agreement [95%] of n | top-5 overlap | accuracy A "
              "| accuracy B |\n"
              f"|---|---|---|---|---|---|\n| {p.max_abs_logit_diff:.3g} | {p.mean_abs_logit_diff:.3g} | "
              f"{p.agreement_text()} | {p.top5_overlap:.1%} | {_acc(p.accuracy_ref)} | {_acc(p.accuracy)} |")
        for d in differ:
            print(f"differs: {d['image']}: A {d['a']}, B {d['b']} (max |diff| {d['max_abs_diff']:.3g})")
        print("\n" + ("; ".join(worse) if worse else "within tolerances"))
    return 1 if worse else 0


def _acc(x):
    return "-" if x is None else f"{x:.3f}"


def main(argv=None) -> int:
    end_quietly_on_broken_pipe()
    args = parser().parse_args(argv)
    if args.verbose:
        os.environ["RUNTIME_VERBOSE"] = "1"
    try:
        return run(args)
    except RuntimeToolkitError as e:
        return error(str(e))


if __name__ == "__main__":
    sys.exit(main())
