"""Keep the heap's resident size near what is in use, where the C library is glibc.

ONNX Runtime frees the copies its graph optimizations make while building a session (for an fp32
Xception more than its weights), but glibc keeps those pages for later allocations, so they stay resident until trimmed.
A server's threads each get a malloc arena of their own, and glibc raises its threshold for mapping a
large block (a request body, an image) on its own each time one is freed, so such blocks end up in the
arenas and stay resident after the request; the server bounds both.
"""

import ctypes
import ctypes.util
import functools

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt's parameters (malloc.h)


@functools.cache
def _glibc():
    """The C library when it has glibc's ``malloc_trim`` and ``mallopt``, else None (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if libc.malloc_trim and libc.mallopt else None
    except (OSError, AttributeError):
        return None


def give_back() -> bool:
    """Return the free pages of every malloc arena to the system; True when it could be asked."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def bound_for_serving(arenas: int = 2, mmap_above: int = 1024 * 1024) -> bool:
    """At most ``arenas`` malloc arenas for all threads started from now on, and every block over
    ``mmap_above`` bytes mapped on its own (handed back whole when freed); True when glibc took both."""
    libc = _glibc()
    return libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1 and libc.mallopt(M_MMAP_THRESHOLD,
                                                                                          mmap_above) == 1
