"""Feature caching: run the frozen base once, then train only the head on its outputs."""

import time
from dataclasses import dataclass

import keras
import numpy as np

from train.data import Batches, ImageFolder


@dataclass
class FeatureCache:
    """Pooled base outputs of the train and validation images, and the base that made them."""

    base: keras.Model
    size: int
    train: np.ndarray
    val: np.ndarray
    seconds: float


def pooled_features(base, folder: ImageFolder, size: int, batch_size=32) -> np.ndarray:
    """GlobalAveragePooling of the base's output for every image of ``folder``, in order."""
    inputs = keras.Input((size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
    extractor = keras.Model(inputs, pooled)
    return extractor.predict(Batches(folder, size, batch_size, labels=False), verbose=1)


def extract(base, train: ImageFolder, val: ImageFolder, size: int, batch_size=32):
    """Cache the frozen base's features for the train and validation images."""
    t = time.perf_counter()
    print(f"caching base features of {len(train.paths)} train and {len(val.paths)} validation images")
    tr = pooled_features(base, train, size, batch_size)
    va = pooled_features(base, val, size, batch_size)
    return FeatureCache(base, size, tr, va, time.perf_counter() - t)
