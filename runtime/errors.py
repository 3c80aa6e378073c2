"""Typed errors of the runtime; the library raises, the command lines print one line."""


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


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
