"""A cache of a source model's slow, deterministic exports (the SavedModel, the fp32 ONNX graph), keyed by
the model file's sha256, the export's kind and the versions of the tools that make it, so converting the
same model again (another int8 method, a report, a re-run) skips them. ``$EDGE_EXPORT_CACHE`` moves it
(default ``~/.cache/edge-classifier/exports``, beside the ImageNet weights; the KEEP most recently used
entries); ``off`` disables it. Every artifact is still checked for parity.
"""

import hashlib
import importlib.metadata
import os
import shutil
from collections.abc import Callable
from pathlib import Path

TOOLS = ("tensorflow", "keras", "tf2onnx", "onnx")
KEEP = 6  # entries kept, most recently used first: two models' worth of exports


def root() -> Path | None:
    """The cache folder, or None when ``$EDGE_EXPORT_CACHE`` is ``off``."""
    where = os.environ.get("EDGE_EXPORT_CACHE", "")
    if where.lower() == "off":
        return None
    return Path(where) if where else Path.home() / ".cache" / "edge-classifier" / "exports"


def key(model_sha256: str, kind: str) -> str:
    """The entry name of one export of one model with the tools installed here."""
    versions = []
    for tool in TOOLS:
        try:
            versions.append(f"{tool}={importlib.metadata.version(tool)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{tool}=none")
    return hashlib.sha256("|".join([model_sha256, kind, *versions]).encode()).hexdigest()[:32]


def _copy(src: Path, dest: Path):
    """Copy a file or a folder."""
    shutil.copytree(src, dest) if src.is_dir() else shutil.copyfile(src, dest)


def _remove(path: Path):
    """Remove a file or a folder, if there."""
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def cached(model_sha256: str, kind: str, make: Callable[[Path], None], dest: Path) -> Path:
    """``dest`` copied from the cache, else made by ``make(dest)`` and stored (atomically: a rename)."""
    folder = root()
    entry = folder / key(model_sha256, kind) if folder else None
    if entry and entry.exists():
        _copy(entry, dest)
        os.utime(entry)
        return dest
    make(dest)
    if entry:
        partial = folder / f".{entry.name}.{os.getpid()}.partial"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _copy(dest, partial)
            if not entry.exists():
                os.replace(partial, entry)
            for old in sorted(folder.glob("[!.]*"), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP:]:
                _remove(old)
        except OSError:  # a read-only or full cache only costs the next conversion time
            pass
        _remove(partial)
    return dest
