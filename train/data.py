"""Image folders as Keras batches: what ``flow_from_directory`` did, on the runtime's preprocessing."""

import math
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from runtime.images import SUFFIXES
from runtime.preprocessing import preprocess_batch
from train.errors import DataError


@dataclass
class ImageFolder:
    """Image paths and labels of a ``root/<class>/<image>`` folder; classes sorted by name."""

    paths: list[str]
    labels: np.ndarray
    classes: list[str]

    @classmethod
    def scan(cls, root, classes=None, limit=None):
        """List ``root``; ``classes`` fixes the index order, ``limit`` caps images per class."""
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"no image folder at {root}")
        classes = classes or sorted(p.name for p in root.iterdir() if p.is_dir())
        if not classes:
            raise DataError(f"{root} has no class folders")
        paths, labels = [], []
        for i, name in enumerate(classes):
            files = sorted(p for p in (root / name).glob("*") if p.suffix.lower() in SUFFIXES)
            files = files[:limit] if limit else files
            paths += [str(p) for p in files]
            labels += [i] * len(files)
        if not paths:
            raise DataError(f"{root} holds no images")
        return cls(paths, np.array(labels, dtype=np.int64), list(classes))

    def one_hot(self, idx) -> np.ndarray:
        """Labels of the images at ``idx`` as one-hot float32 rows."""
        return np.eye(len(self.classes), dtype=np.float32)[self.labels[idx]]


class Batches(keras.utils.PyDataset):
    """Batches of (preprocessed images, one-hot labels); shuffled each epoch when asked."""

    def __init__(self, folder: ImageFolder, size: int, batch_size=32, shuffle=False,
                 augment=None, seed=0, labels=True, workers=2):
        super().__init__(workers=workers)
        self.folder, self.size, self.batch_size = folder, size, batch_size
        self.shuffle, self.augment, self.labels = shuffle, augment, labels
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(folder.paths))
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(len(self.order) / self.batch_size)

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        x = preprocess_batch([self.folder.paths[j] for j in idx], (self.size, self.size))
        if self.augment is not None:
            x = keras.ops.convert_to_numpy(self.augment(x, training=True))
        return (x, self.folder.one_hot(idx)) if self.labels else (x,)

    def on_epoch_end(self):
        if self.shuffle:
            self.rng.shuffle(self.order)
