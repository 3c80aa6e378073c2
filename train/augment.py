"""The course's ``ImageDataGenerator`` augmentations as Keras preprocessing layers."""

import math

import keras

from train.config import AUGMENTATIONS


def _layer(name: str, size: int):
    """One augmentation, with ImageDataGenerator's ``fill_mode="nearest"``."""
    fill = {"fill_mode": "nearest"}
    if name == "rotation":
        return keras.layers.RandomRotation(30 / 360, **fill)
    if name == "shift":
        return keras.layers.RandomTranslation(10.0 / size, 10.0 / size, **fill)
    if name == "shear":  # shear_range=10 degrees along x; the float is the symmetric range [-t, t]
        return keras.layers.RandomShear(x_factor=math.tan(math.radians(10)), **fill)
    if name == "zoom":
        return keras.layers.RandomZoom(0.1, **fill)
    if name == "vflip":
        return keras.layers.RandomFlip("vertical")
    if name == "hflip":
        return keras.layers.RandomFlip("horizontal")
    raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(AUGMENTATIONS)}")


def make_augmenter(names, size: int):
    """A Sequential of the named augmentations, or None when there are none."""
    if not names:
        return None
    return keras.Sequential([_layer(n, size) for n in names], name="augment")
