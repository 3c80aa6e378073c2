"""Real images for int8 calibration: at least 100 distinct ones."""

from convert.errors import CalibrationError
from runtime.images import ImageSet, load_images

MIN_CALIBRATION = 100


def calibration_set(folder, size, classes, n: int, mode="xception") -> ImageSet:
    """At least MIN_CALIBRATION distinct real images, or CalibrationError."""
    images = load_images(folder, size, classes, max(n, MIN_CALIBRATION), mode)
    if len(images.files) < MIN_CALIBRATION:
        raise CalibrationError(f"int8 calibration needs {MIN_CALIBRATION} distinct images; "
                               f"{folder} has {len(images.files)}")
    return images
