"""Decode images in child processes that are killed past a deadline or stopped at a memory cap.

Pillow parses some headers in Python (JPEG markers, GIF blocks) while holding the GIL, and a hostile
file can make that slow or large however small it is. In a child process neither touches the server:
each decode must finish within ``deadline`` seconds and ``memory`` bytes of address space, else the
child is replaced and the image refused.
"""

import ctypes
import ctypes.util
import multiprocessing
import os
import queue
import resource
from dataclasses import dataclass

from runtime.errors import ImageError

STARTUP = 60.0


@dataclass(frozen=True)
class SandboxLimits:
    """Child processes, seconds and bytes of address space one decode may take."""

    workers: int = 2
    deadline: float = 2.0
    memory: int = 512 * 1024 * 1024


def _child(conn, memory: int):
    """The child's loop: (source, spec, limits) in, ("ok", array) or ("error", text) out."""
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    conn.send("ready")
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            source, spec, limits = args
            conn.send(("ok", spec.load(source, limits)))
        except ImageError as e:
            conn.send(("error", str(e)))
        except MemoryError:
            conn.send(("error", f"image needs more than {memory >> 20} MB to decode"))
        libc.malloc_trim(0)  # give a large image's memory back to the system, not to the next image


class _Worker:
    """One child process and the pipe to it, once the child has imported what it needs."""

    def __init__(self, memory: int):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_child, args=(child, memory), daemon=True, name="decoder")
        self.process.start()
        child.close()
        try:
            ready = self.conn.poll(STARTUP) and self.conn.recv() == "ready"
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
        """The model input of one image, as ``spec.load`` computes it."""
        worker = self.idle.get()
        try:
            worker.conn.send((source, spec, decode_limits))
            if not worker.conn.poll(self.limits.deadline):
                worker = self._replace(worker)
                raise ImageError(f"image took over {self.limits.deadline:g} s to decode")
            status, value = worker.conn.recv()
        except (EOFError, OSError):
            worker = self._replace(worker)
            raise ImageError("the decoder died on this image") from None
        finally:
            self.idle.put(worker)
        if status == "error":
            raise ImageError(value)
        return value

    def _replace(self, worker: _Worker) -> _Worker:
        """A fresh child in place of one that overran or died."""
        worker.stop()
        return _Worker(self.limits.memory)

    def close(self):
        """Stop every child."""
        for _ in range(self.limits.workers):
            self.idle.get().stop()
