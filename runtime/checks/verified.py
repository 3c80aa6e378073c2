"""Which model files were already hashed and found as recorded, so a restart need not hash them again.

Like git's index, a file counts as unchanged while its identity (device, inode, size, modification and
change times in nanoseconds) is the one noted when its hash last matched: rewriting, replacing, touching
or renaming it changes one of those and it is hashed again. Records live in ``$RUNTIME_VERIFY_CACHE``
(default ``~/.cache/edge-classifier/verified``), one small file per expected sha256; ``off`` hashes on
every load. Where the folder cannot be written (a Lambda's read-only home), every load hashes.
"""

import os
from pathlib import Path

KEEP = 8  # identities remembered per hash (copies of one model in several places)


def folder(sha256: str) -> Path | None:
    """The records' folder, or None when ``$RUNTIME_VERIFY_CACHE`` is ``off`` or ``sha256`` is not a
    hash (a manifest's text never becomes a path)."""
    where = os.environ.get("RUNTIME_VERIFY_CACHE", "").strip()
    if where == "off" or len(sha256) != 64 or sha256.strip("0123456789abcdef"):
        return None
    if where:
        return Path(where)
    try:
        return Path.home() / ".cache" / "edge-classifier" / "verified"
    except RuntimeError:  # no home to find: nothing is noted
        return None


def identity(path) -> str:
    """What changes when the file at ``path`` is rewritten, replaced, touched or renamed."""
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def known(path, sha256: str) -> bool:
    """Whether ``path``, as it is now, was hashed to ``sha256`` before."""
    where = folder(sha256)
    try:
        return where is not None and identity(path) in (where / sha256).read_text().split()
    except (OSError, ValueError):
        return False


def remember(path, sha256: str, seen: str) -> None:
    """Note that ``path`` hashed to ``sha256`` while its identity was ``seen`` (taken before hashing): not
    noted if the file changed meanwhile; a folder that cannot be written is left alone."""
    where = folder(sha256)
    try:
        if where is None or identity(path) != seen:
            return
        record = where / sha256
        lines = record.read_text().split() if record.is_file() else []
        where.mkdir(parents=True, exist_ok=True)
        tmp = where / f".{sha256}.{os.getpid()}"
        tmp.write_text("\n".join([x for x in lines if x != seen][-(KEEP - 1):] + [seen]) + "\n")
        os.replace(tmp, record)
    except OSError:
        return
