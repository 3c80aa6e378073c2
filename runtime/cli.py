"""What every command line shares: checked number types, the model flags, quiet logs and SIGPIPE."""

import argparse
import os
import signal
import sys


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    return _bounded(int, text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    return _bounded(int, text, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    value = _bounded(float, text, 0.0, "a number > 0")
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    value = _bounded(float, text, 0.0, "a number in [0, 1)")
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in [0, 1)")
    return value


def _bounded(kind, text: str, low, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not value >= low:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def add_model_args(p: argparse.ArgumentParser, model_help: str):
    """``--model`` and the flags that describe a bare model file carrying no metadata."""
    from runtime.preprocessing import MODES

    p.add_argument("--model", help=model_help)
    p.add_argument("--classes", help="class names in output order, comma-separated (a bare model file)")
    p.add_argument("--size", type=positive_int, help="input size in pixels, square (a bare model file)")
    p.add_argument("--preprocessing", choices=sorted(MODES),
                   help="pixel scaling of a bare model file, as Keras applications' modes (default xception)")


def model_overrides(args) -> dict:
    """The bare-model flags that were given, as ``ModelInfo`` fields."""
    given = {"classes": args.classes.split(",") if args.classes else None,
             "height": args.size, "width": args.size, "mode": args.preprocessing}
    return {k: v for k, v in given.items() if v is not None}


def quiet_tensorflow(verbose: bool = False):
    """Silence TensorFlow's C++ logs and CUDA probes unless ``verbose``; call before importing TF."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def end_quietly_on_broken_pipe():
    """``cmd | head`` ends the command without a traceback (the default SIGPIPE action)."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def error(message: str, status: int = 2) -> int:
    """Print one ``error:`` line on stderr and return the exit status."""
    print(f"error: {message}", file=sys.stderr)
    return status
