"""Feature caching: run the frozen base once, then train only the head on its outputs.

With augmentation, the base also runs over a few fixed augmented copies ("views") of every training
image; each epoch then shows each image as one of its views, drawn at random.
"""

import math
import time
from dataclasses import dataclass

import keras
import numpy as np

from runtime.cli import keras_verbosity
from train.augment import make_augmenter
from train.data import Batches, ImageFolder


@dataclass
class FeatureCache:
    """Pooled base outputs: ``train`` is (views, images, features), view 0 unaugmented."""

    base: keras.Model
    size: int
    train: np.ndarray
    val: np.ndarray
    seconds: float
    augment: tuple[str, ...] = ()

    @property
    def copies(self) -> int:
        """How many augmented views each training image has."""
        return len(self.train) - 1

    def fits(self, augment: tuple[str, ...], copies: int) -> bool:
        """Whether this cache holds exactly the views a run with these settings trains on."""
        return (self.augment, self.copies) == ((tuple(augment), copies) if augment and copies else ((), 0))

    def plain(self):
        """The same cache without its augmented views."""
        return FeatureCache(self.base, self.size, self.train[:1], self.val, self.seconds)


def pooled_features(base, folder: ImageFolder, size: int, batch_size=32, augment=None) -> np.ndarray:
    """GlobalAveragePooling of the base's output for every image of ``folder``, in order."""
    inputs = keras.Input((size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
    extractor = keras.Model(inputs, pooled)
    return extractor.predict(Batches(folder, size, batch_size, labels=False, augment=augment),
                             verbose=keras_verbosity())


def extract(base, train: ImageFolder, val: ImageFolder, size: int, batch_size=32, augment=(), copies=0,
            reuse: "FeatureCache | None" = None):
    """Cache the base's features of train (plus ``copies`` augmented views) and validation images;
    ``reuse`` supplies the unaugmented ones when a previous cache has them."""
    t = time.perf_counter()
    copies = copies if augment else 0
    print(f"caching base features of {len(train.paths)} train images"
          + (f" and {copies} augmented copies ({'+'.join(augment)}) of each" if copies else "")
          + ("" if reuse else f" and {len(val.paths)} validation images"))
    views = [reuse.train[0]] if reuse else [pooled_features(base, train, size, batch_size)]
    augmenter = make_augmenter(augment, size) if copies else None
    views += [pooled_features(base, train, size, batch_size, augmenter) for _ in range(copies)]
    va = reuse.val if reuse else pooled_features(base, val, size, batch_size)
    spent = time.perf_counter() - t + (reuse.seconds if reuse else 0.0)
    return FeatureCache(base, size, np.stack(views), va, spent, tuple(augment) if copies else ())


class ViewBatches(keras.utils.PyDataset):
    """Shuffled batches of cached features, each image shown as one random view per epoch."""

    def __init__(self, views: np.ndarray, y: np.ndarray, batch_size=32, seed=0):
        super().__init__()
        self.views, self.y, self.batch_size = views, y, batch_size
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(self.views.shape[1] / self.batch_size)

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        return self.views[self.pick[idx], idx], self.y[idx]

    def on_epoch_end(self):
        n = self.views.shape[1]
        self.order = self.rng.permutation(n)
        self.pick = self.rng.integers(0, len(self.views), n)
