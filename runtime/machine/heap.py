"""Give freed heap memory back to the system (glibc's ``malloc_trim``), where the C library has it.

ONNX Runtime frees the copies its graph optimizations make while building a session (an fp32 Xception:
about 130 MB), but glibc keeps those pages for later allocations, so they stay resident until trimmed.
"""

import ctypes
import ctypes.util
import functools


@functools.cache
def _trim():
    """glibc's ``malloc_trim``, or None (musl, macOS, no C library found)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def give_back() -> bool:
    """Return the free pages of every malloc arena to the system; True when it could be asked."""
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True
