"""Small file helpers: hashing and atomic writes (temporary name, then rename)."""

import json
import mmap
import os
from contextlib import contextmanager
from pathlib import Path


def sha256(path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    import hashlib  # here: a start whose model was verified before (runtime/checks/verified.py) needs none

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_mapped(path, chunk=16 << 20) -> str:  # chunk: a multiple of the page size
    """Hex SHA-256 of a file hashed from a memory map, 16 MB per call (each runs without the GIL), each
    chunk's pages dropped from this process once hashed so its resident memory does not grow by the file."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return h.hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m, memoryview(m) as view:
            for start in range(0, size, chunk):
                h.update(view[start:start + chunk])
                m.madvise(mmap.MADV_DONTNEED, start, min(chunk, size - start))
    return h.hexdigest()


@contextmanager
def replacing(path, suffix=""):
    """A temporary path beside ``path`` (named for this process) that is renamed onto it if the block
    succeeds, else removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def replacing_folder(path, marker: str):
    """A new folder beside ``path`` that takes its place if the block succeeds, else is removed. ``path`` may
    be absent, empty or a folder holding ``marker`` (made this way before); anything else: FileExistsError."""
    import shutil

    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} is a file: give a new or empty folder")
    if path.exists() and any(path.iterdir()) and not (path / marker).is_file():
        raise FileExistsError(f"{path} is not empty and has no {marker}: give a new or empty folder")
    tmp, old = path.with_name(f".{path.name}.partial"), path.with_name(f".{path.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_atomic(path, data: bytes):
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_json(path, obj):
    """Atomically write ``obj`` as indented JSON."""
    write_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())
