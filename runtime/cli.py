"""What every command line shares: checked number types, the model flags, quiet logs and SIGPIPE."""

import argparse
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path


def command_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A parser whose description is the module's docstring as plain text (no RST double backticks)."""
    return argparse.ArgumentParser(prog=prog, description=(doc or "").replace("``", "") or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_model_positional(p: argparse.ArgumentParser, dest: str, help: str):
    """The model as a positional argument, or as ``--model`` as in predict, serve and package (either)."""
    p.add_argument(dest, type=Path, nargs="?", help=help + " (or give it as --model)")
    p.add_argument("--model", type=Path, dest=f"{dest}_flag", metavar="MODEL", help=f"the same as {dest.upper()}")


def model_positional(p: argparse.ArgumentParser, args, dest: str):
    """The model given either way; argparse's usage error when neither or two different ones are."""
    given, flag = getattr(args, dest), getattr(args, f"{dest}_flag")
    if given and flag and given != flag:
        p.error(f"{dest.upper()} {given} and --model {flag} disagree: give one")
    if not (given or flag):
        p.error(f"the model is missing: give {dest.upper()} or --model")
    setattr(args, dest, given or flag)
    return args


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
    """``--threads`` and ``--profile`` (runtime/machine/threads.py: threads and spinning per deployment)."""
    from runtime.machine.threads import PROFILES

    p.add_argument("--threads", type=positive_int, help="inference threads (default: the profile's)")
    p.add_argument("--profile", choices=tuple(PROFILES),
                   help="server (cores to itself), lambda, shared (other busy processes on the cores); "
                        "default $RUNTIME_PROFILE, else server")


def add_model_args(p: argparse.ArgumentParser, model_help: str):
    """``--model``, the flags that pick a bundle's file (format, precision, device), those that describe a
    bare model file carrying no metadata, and ``--verbose``: the same in every command that loads a model."""
    from runtime.formats import DEVICES, FORMATS, PRECISIONS

    p.add_argument("--model", help=model_help)
    p.add_argument("--format", choices=tuple(FORMATS), help="artifact format to pick from a bundle")
    p.add_argument("--precision", choices=PRECISIONS, help="artifact precision to pick")
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="gpu: ONNX Runtime's TensorRT/CUDA providers (default cpu)")
    p.add_argument("--verbose", action="store_true", help="show the inference libraries' own log lines")
    add_bare_model_args(p)


def add_bare_model_args(p: argparse.ArgumentParser):
    """The flags that describe a bare model file carrying no metadata."""
    from runtime.preprocessing import MODES

    p.add_argument("--classes", help="class names in output order, comma-separated (a bare model file)")
    p.add_argument("--size", type=positive_int, help="input size in pixels, square (a bare model file)")
    p.add_argument("--preprocessing", choices=sorted(MODES),
                   help="pixel scaling of a bare model file, as Keras applications' modes (default xception)")


def add_url_args(p: argparse.ArgumentParser):
    """``--allow-private-urls``, beside its environment variable."""
    p.add_argument("--allow-private-urls", action="store_true",
                   help="fetch URLs that resolve to private or loopback addresses (as RUNTIME_ALLOW_PRIVATE_URLS=1; "
                        "cloud metadata addresses stay refused)")


def runtime_settings(args):
    """The environment's settings with the command line's ``--allow-private-urls`` and ``--verbose`` applied."""
    from dataclasses import replace

    from runtime.settings import from_env

    if getattr(args, "verbose", False):
        os.environ["RUNTIME_VERBOSE"] = "1"
    settings = from_env()
    if getattr(args, "allow_private_urls", False):
        settings = replace(settings, fetch=replace(settings.fetch, allow_private=True))
    return settings


def load_model(args):
    """(settings, classifier) from the flags ``add_model_args``, ``add_thread_args`` and ``add_url_args`` added:
    what predict and serve load the same way."""
    from runtime.classifier import Classifier

    settings = runtime_settings(args)
    return settings, Classifier.load(args.model, args.format, args.precision, args.threads, args.device,
                                     model_overrides(args), settings.limits, args.profile)


def model_overrides(args):
    """What the bare-model flags say (``runtime.bundle.Overrides``)."""
    from runtime.bundle import Overrides

    return Overrides(tuple(args.classes.split(",")) if args.classes else None,
                     None if args.size is None else (args.size, args.size), args.preprocessing)


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
