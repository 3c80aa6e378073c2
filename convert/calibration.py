"""Images for conversion: at least 100 distinct real ones for int8 calibration; noise for float parity
when the user gave no images."""

import numpy as np
from PIL import Image

from convert.errors import CalibrationError
from runtime.images import ImageSet, load_images
from runtime.preprocessing import ImageSpec, to_array

MIN_CALIBRATION = 100


def calibration_set(folder, spec: ImageSpec, classes, n: int) -> ImageSet:
    """At least MIN_CALIBRATION distinct real images, or CalibrationError."""
    images = load_images(folder, spec, classes, max(n, MIN_CALIBRATION))
    if len(images.files) < MIN_CALIBRATION:
        raise CalibrationError(f"int8 calibration needs {MIN_CALIBRATION} distinct images; "
                               f"{folder} has {len(images.files)}")
    return images


def synthetic_set(spec: ImageSpec, n: int, seed=0) -> ImageSet:
    """``n`` seeded random images (RGB or L, as the model takes) through the model's preprocessing: enough to
    prove a float export computes the same function (not to measure accuracy)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, spec.height, spec.width, spec.channels), dtype=np.uint8)
    batch = np.stack([to_array(Image.fromarray(x.squeeze(-1) if spec.channels == 1 else x), spec.mode)
                      for x in pixels])
    return ImageSet(batch, [f"<noise {i}>" for i in range(n)], [None] * n)
