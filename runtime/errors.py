"""Typed errors of the runtime; the library raises, the command lines print one line."""

import sys


class RuntimeToolkitError(Exception):
    """Base class of every error the runtime raises on purpose."""


class ImageError(RuntimeToolkitError):
    """An input could not be read as an image, or is too large to decode."""


class ModelError(RuntimeToolkitError):
    """A model file or bundle is missing, corrupt or inconsistent."""


class BackendUnavailable(RuntimeToolkitError):
    """The inference library a model format needs is not installed (or no GPU is there)."""


class FetchError(RuntimeToolkitError):
    """A URL was refused or could not be fetched."""


class OutputError(ModelError):
    """A model answered something that is not a row of finite logits, one per class."""


class ConfigError(RuntimeToolkitError):
    """A setting (environment variable or flag) has a value the runtime cannot use."""


def one_line_errors(fn, errors) -> int:
    """Run ``fn()``; an error of ``errors`` becomes one 'error: ...' line and exit status 2, Ctrl-C 130."""
    try:
        return fn()
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
