"""``python -m runtime.predict IMG [IMG|DIR|URL|- ...]``: labels for images, one line (or JSON) each.

A bad input gets a one-line error; the others are still answered; the exit status is 1
when any input failed, 2 when the model itself cannot be loaded.
"""

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from runtime.errors import RuntimeToolkitError
from runtime.images import list_images


def parser():
    p = argparse.ArgumentParser(prog="python -m runtime.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="image files, folders, http(s) URLs, or - for stdin")
    p.add_argument("--model", help="model file or bundle (default: $RUNTIME_MODEL, else artifacts/default)")
    p.add_argument("--format", choices=("onnx", "tflite"), help="artifact format to pick from a bundle")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), help="artifact precision to pick")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, help="inference threads (default: the CPUs this process may use)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    return p


def expand(inputs):
    """Folders become their images; files, URLs and ``-`` stay as given."""
    for item in inputs:
        path = Path(item)
        if item != "-" and "://" not in item and path.is_dir():
            yield from (str(p) for p in list_images(path))
        else:
            yield item


def read(item: str):
    """The image source of one input: bytes for stdin and URLs, the path otherwise."""
    from runtime.fetch import fetch, is_url

    if item == "-":
        return sys.stdin.buffer.read()
    return fetch(item) if is_url(item) else item


def show(item: str, result, as_json: bool):
    """Print one answer (a Prediction or an error message)."""
    if isinstance(result, str):
        print(json.dumps({"input": item, "error": result}) if as_json else f"{item}: error: {result}",
              flush=True)
    elif as_json:
        print(json.dumps({"input": item, **asdict(result)}), flush=True)
    else:
        others = ", ".join(f"{t['label']} {t['score']:.3f}" for t in result.top[1:])
        print(f"{item}: {result.label} ({result.score:.3f})" + (f"  [{others}]" if others else ""), flush=True)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    import numpy as np

    from runtime.classifier import Classifier

    try:
        clf = Classifier.load(args.model, args.format, args.precision, args.threads, args.device)
    except RuntimeToolkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.device == "gpu" and clf.runner.provider == "CPUExecutionProvider":
        print("warning: asked for the GPU but onnxruntime fell back to the CPU", file=sys.stderr)
    failed, pending = 0, []

    def flush():
        if pending:
            for (item, _), pred in zip(pending, clf.predict_batch(np.stack([x for _, x in pending]), args.top_k),
                                       strict=True):
                show(item, pred, args.json)
            pending.clear()

    for item in expand(args.inputs):
        try:
            pending.append((item, clf.preprocess(read(item))))
        except RuntimeToolkitError as e:
            flush()
            failed += 1
            show(item, str(e), args.json)
        if len(pending) >= args.batch_size:
            flush()
    flush()
    if failed:
        print(f"{failed} input(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
