"""Listing and loading images: files, folders, and labelled ``root/<class>/<image>`` folders."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import ImageError
from runtime.preprocessing import DEFAULT_LIMITS, ImageSpec, read_bounded

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def is_image_file(path: Path) -> bool:
    """Whether a path names a file with an image suffix."""
    return path.is_file() and path.suffix.lower() in SUFFIXES


def list_images(folder) -> list[Path]:
    """Every image file below ``folder``, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if is_image_file(p))


def labelled_images(folder, classes) -> list[tuple[Path, int | None]]:
    """Images below ``folder`` with the index of their class subfolder (None when it is no class)."""
    index = {c: i for i, c in enumerate(classes)}
    return [(p, index.get(p.parent.name)) for p in list_images(folder)]


def spread(items: list, n: int) -> list:
    """``n`` items evenly spread over a sorted list (all of them when there are fewer)."""
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


@dataclass
class ImageSet:
    """Preprocessed images, their files and labels (None where a file is in no class folder)."""

    batch: np.ndarray
    files: list[str]
    labels: list[int | None]


def load_images(folder, spec: ImageSpec, classes, n: int) -> ImageSet:
    """``n`` distinct images (by content) spread over ``folder``; unreadable or oversized files are skipped."""
    import hashlib  # here: runtime.predict imports this module and hashes nothing

    seen, picked = set(), []
    for path, label in labelled_images(folder, classes):
        try:
            digest = hashlib.sha256(read_bounded(path, DEFAULT_LIMITS.max_bytes)).digest()
        except (OSError, ImageError):
            continue
        if digest not in seen:
            seen.add(digest)
            picked.append((path, label))
    arrays, files, labels = [], [], []
    for path, label in spread(picked, n):
        try:
            arrays.append(spec.load(path))
        except ImageError:
            continue
        files.append(str(path))
        labels.append(label)
    if not arrays:
        raise ImageError(f"no readable images in {folder}")
    return ImageSet(np.stack(arrays), files, labels)
