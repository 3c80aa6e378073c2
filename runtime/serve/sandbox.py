"""Decode images in child processes that are killed past a deadline or stopped at a memory cap.

Pillow parses some headers in Python (JPEG markers, GIF blocks) while holding the GIL, and a hostile
file can make that slow or large however small it is. In a child process neither touches the server:
each decode must finish within ``deadline`` seconds and ``memory`` bytes of address space, else the
child is replaced and the image refused.

A child is trusted with nothing: it answers in plain bytes (a fixed header with the array's shape, then
float32 values; or an error text), never a pickle, and the server checks the shape against the one it
asked for, so a decoder compromised by a hostile file cannot run code in the server through its answer.
It holds the fewest rights that work: no network (a network namespace of its own where the kernel allows
one), no files written, no processes started.
"""

import ctypes
import ctypes.util
import multiprocessing
import os
import queue
import resource
import signal
import struct
from dataclasses import dataclass

import numpy as np

from runtime.errors import ImageError
from runtime.machine import heap
from runtime.preprocessing import MODES

STARTUP = 60.0
HEADER = struct.Struct("<2sIII")  # b"ok" and the array's three dimensions, or b"no" and zeros
MAX_ERROR = 1000  # bytes of an error text from a child
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000


@dataclass(frozen=True)
class SandboxLimits:
    """Child processes, seconds and bytes of address space one decode may take."""

    workers: int = 2
    deadline: float = 2.0
    memory: int = 512 * 1024 * 1024


def drop_rights(memory: int, libc) -> bool:
    """Bound the calling process to ``memory`` bytes of address space, no file writes and no new processes,
    and move it to a network namespace of its own (no interface but a down loopback) where the kernel lets
    it; True when the network is cut."""
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    return any(libc.unshare(flags) == 0 for flags in (CLONE_NEWNET, CLONE_NEWUSER | CLONE_NEWNET))


def answer(array: np.ndarray) -> bytes:
    """A decoded image as the child sends it: header, then float32 values."""
    return HEADER.pack(b"ok", *array.shape) + np.ascontiguousarray(array, "<f4").tobytes()


def refusal(text: str) -> bytes:
    """An error as the child sends it."""
    return HEADER.pack(b"no", 0, 0, 0) + text.encode("utf-8", "replace")[:MAX_ERROR]


def read_answer(data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """The array of a child's answer, checked to be the ``shape`` asked for; ImageError with its text for
    a refusal; ImageError for anything else."""
    if len(data) < HEADER.size:
        raise ImageError("the decoder answered garbage")
    kind, *dims = HEADER.unpack_from(data)
    if kind == b"no":
        raise ImageError(data[HEADER.size:HEADER.size + MAX_ERROR].decode("utf-8", "replace"))
    if kind != b"ok" or tuple(dims) != shape or len(data) != HEADER.size + 4 * int(np.prod(shape)):
        raise ImageError("the decoder answered garbage")
    return np.frombuffer(data, "<f4", offset=HEADER.size).reshape(shape).copy()


def _child(conn, memory: int):
    """The child's loop: (source, spec, limits) in, an answer or a refusal out, as plain bytes."""
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    drop_rights(memory, libc)
    conn.send_bytes(b"ready")
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            source, spec, limits = args
            conn.send_bytes(answer(spec.load(source, limits)))
        except ImageError as e:
            conn.send_bytes(refusal(str(e)))
        except MemoryError:
            conn.send_bytes(refusal(f"image needs more than {memory >> 20} MB to decode"))
        heap.give_back()  # give a large image's memory back to the system, not to the next image


class _Worker:
    """One child process and the pipe to it, once the child has imported what it needs."""

    def __init__(self, memory: int):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_child, args=(child, memory), daemon=True, name="decoder")
        self.process.start()
        child.close()
        try:
            ready = self.conn.poll(STARTUP) and self.conn.recv_bytes(16) == b"ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.stop()
            raise RuntimeError(f"a decoding child did not start within {STARTUP} s")

    def stop(self):
        """Kill the child and close the pipe."""
        self.process.kill()
        self.process.join()
        self.conn.close()


class Sandbox:
    """A pool of decoding children; ``preprocess`` is called from any thread, one child per call."""

    def __init__(self, limits: SandboxLimits):
        self.limits = limits
        self.idle = queue.Queue()
        for _ in range(limits.workers):
            self.idle.put(_Worker(limits.memory))

    def preprocess(self, source: bytes, spec, decode_limits):
        """The model input of one image, as ``spec.load`` computes it (CHW for an NCHW mode)."""
        hwc = (spec.height, spec.width, spec.channels)
        shape = (hwc[2], hwc[0], hwc[1]) if MODES[spec.mode].layout == "NCHW" else hwc
        most = HEADER.size + max(4 * int(np.prod(shape)), MAX_ERROR)
        worker = self.idle.get()
        try:
            worker.conn.send((source, spec, decode_limits))
            if not worker.conn.poll(self.limits.deadline):
                worker = self._replace(worker)
                raise ImageError(f"image took over {self.limits.deadline:g} s to decode")
            data = worker.conn.recv_bytes(most)
        except (EOFError, OSError):
            worker = self._replace(worker)
            raise ImageError("the decoder died on this image") from None
        finally:
            self.idle.put(worker)
        return read_answer(data, shape)

    def _replace(self, worker: _Worker) -> _Worker:
        """A fresh child in place of one that overran or died."""
        worker.stop()
        return _Worker(self.limits.memory)

    def close(self):
        """Stop every child."""
        for _ in range(self.limits.workers):
            self.idle.get().stop()
