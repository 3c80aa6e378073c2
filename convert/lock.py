"""One writer per bundle: an advisory lock held by a conversion for as long as it writes a bundle, so a
second ``convert`` of the same bundle refuses at once, naming the holder, instead of overwriting the
manifest the first one is writing."""

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

from convert.errors import ConvertError


@contextmanager
def bundle_lock(bundle: Path):
    """Hold the lock of ``bundle``: ``.NAME.lock`` beside it (so the bundle folder itself may still be made or
    removed), deleted on release; ConvertError naming the holder when another run holds it."""
    path = Path(bundle).absolute().with_name(f".{Path(bundle).name}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "holder not known yet"
            os.close(fd)
            raise ConvertError(f"{bundle}: another convert is writing this bundle ({holder}); wait for it to "
                               "finish, or convert into another --out") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its last holder removed it between our open and our lock: take a fresh one
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}".encode())
    try:
        yield
    finally:
        os.unlink(path)
        os.close(fd)
