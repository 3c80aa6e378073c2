"""What every command line shares: checked number types, the model flags, quiet logs and SIGPIPE."""

import argparse
import os
import signal
import sys
from contextlib import contextmanager


def command_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A parser whose description is the module's docstring as plain text (no RST double backticks)."""
    return argparse.ArgumentParser(prog=prog, description=(doc or "").replace("``", "") or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    return _number(int, text, "a positive integer", lambda v: v >= 1)


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    return _number(int, text, "an integer >= 0", lambda v: v >= 0)


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    return _number(float, text, "a number > 0", lambda v: v > 0)


def non_negative_float(text: str) -> float:
    """An argparse type: a number >= 0."""
    return _number(float, text, "a number >= 0", lambda v: v >= 0)


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    return _number(float, text, "a number in [0, 1)", lambda v: 0 <= v < 1)


def share(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    return _number(float, text, "a number in [0, 1]", lambda v: 0 <= v <= 1)


def _number(kind, text: str, what: str, ok) -> int | float:
    """``kind(text)`` when ``ok`` accepts it (NaN never is: every comparison with it is false)."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def add_thread_args(p: argparse.ArgumentParser):
    """``--threads`` and ``--profile`` (runtime/threads.py: threads and spinning per deployment)."""
    from runtime.threads import PROFILES

    p.add_argument("--threads", type=positive_int, help="inference threads (default: the profile's)")
    p.add_argument("--profile", choices=tuple(PROFILES),
                   help="server (cores to itself), lambda, shared (other busy processes on the cores); "
                        "default $RUNTIME_PROFILE, else server")


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


@contextmanager
def quiet_stderr(enabled: bool = True):
    """Send file descriptor 2 to /dev/null inside the block (TensorFlow's C++ logs and CUDA probes at
    import ignore TF_CPP_MIN_LOG_LEVEL); Python errors raised inside still reach the caller."""
    if not enabled:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def import_tensorflow_quietly(verbose: bool = False):
    """Import TensorFlow (and probe its devices, where CUDA logs) with its C++ logs silenced; for
    train, convert and benchmarks only: the runtime itself never calls this."""
    with quiet_stderr(not verbose):
        try:
            import tensorflow as tf
        except ImportError:
            return
        tf.config.list_physical_devices()


def progress_options() -> dict:
    """tqdm options: a live bar on a terminal, a line every 30 s in a redirected log."""
    return {} if sys.stderr.isatty() else {"mininterval": 30, "ascii": True}


def keras_verbosity() -> int:
    """Keras' progress bar on a terminal (1), one line per epoch or call in a redirected log (2)."""
    return 1 if sys.stdout.isatty() else 2


def end_quietly_on_broken_pipe():
    """``cmd | head`` ends the command without a traceback (the default SIGPIPE action)."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def error(message: str, status: int = 2) -> int:
    """Print one ``error:`` line on stderr and return the exit status."""
    print(f"error: {message}", file=sys.stderr)
    return status
