"""The project's one preprocessing: Keras ``load_img`` + ``preprocess_input``, bit for bit.

Only numpy and Pillow are used, so training, conversion and serving share it.
"""

import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from runtime.errors import ImageError, first_line

Source = str | os.PathLike | bytes | io.IOBase

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG covers MPO (multi-picture) files
DEFAULT_MAX_PIXELS = 40_000_000
RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def _xception(x: np.ndarray) -> np.ndarray:
    """``keras.applications.xception.preprocess_input``: in place, float32."""
    x /= 127.5
    x -= 1.0
    return x


def _torch(x: np.ndarray) -> np.ndarray:
    """ImageNet mean/std on [0, 1] pixels, as Keras' ``mode="torch"``."""
    x /= 255.0
    x -= np.array([0.485, 0.456, 0.406], dtype=np.float32)
    x /= np.array([0.229, 0.224, 0.225], dtype=np.float32)
    return x


def _caffe(x: np.ndarray) -> np.ndarray:
    """Keras' ``mode="caffe"`` (VGG, ResNet50): BGR, ImageNet channel means subtracted, no scaling."""
    x = x[..., ::-1].copy()
    x -= np.array([103.939, 116.779, 123.68], dtype=np.float32)
    return x


def _none(x: np.ndarray) -> np.ndarray:
    """Raw 0..255 pixels as float32 (models that rescale inside, e.g. EfficientNet)."""
    return x


@dataclass(frozen=True)
class Mode:
    """A preprocessing mode: the pixel scaling and the tensor layout it feeds."""

    scale: Callable[[np.ndarray], np.ndarray]
    layout: str


MODES = {"xception": Mode(_xception, "NHWC"), "tf": Mode(_xception, "NHWC"), "caffe": Mode(_caffe, "NHWC"),
         "torch": Mode(_torch, "NCHW"), "none": Mode(_none, "NHWC")}


def max_pixels() -> int:
    """The pixel cap, from ``$RUNTIME_MAX_PIXELS`` (default 40 megapixels)."""
    return int(os.environ.get("RUNTIME_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def open_image(source: Source) -> Image.Image:
    """Open and decode an image of an accepted format; refuse it before decoding if it is too large."""
    try:
        if isinstance(source, (bytes, bytearray)):
            source = io.BytesIO(source)
        elif not isinstance(source, io.IOBase):
            with open(source, "rb") as f:
                source = io.BytesIO(f.read())
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source, formats=FORMATS)
            w, h = img.size
            if w * h > max_pixels():
                raise ImageError(f"image of {w}x{h} pixels is over the cap of {max_pixels()}")
            img.load()
        return img
    except UnidentifiedImageError:
        raise ImageError(f"not an image of an accepted format ({', '.join(FORMATS)})") from None
    except ImageError:
        raise
    except Exception as e:  # Pillow's plugins raise many types on hostile files (fuzzing found TypeError)
        raise ImageError(f"cannot read image: {type(e).__name__}: {first_line(e)}") from None


def load_image(source: Source, size: tuple[int, int], resize: str = "nearest") -> Image.Image:
    """Open an image as RGB and resize it to (height, width), as ``keras.utils.load_img``."""
    img = open_image(source)
    try:
        if img.mode != "RGB":
            img = img.convert("RGB")
        wh = (size[1], size[0])
        if img.size != wh:
            img = img.resize(wh, RESAMPLE[resize])
        return img
    except Exception as e:  # as in open_image: any decoder failure is the input's fault
        raise ImageError(f"cannot decode image: {type(e).__name__}: {first_line(e)}") from None


def to_array(img: Image.Image, mode: str = "xception") -> np.ndarray:
    """Turn an RGB image into the model's float32 input (HWC, or CHW for NCHW modes)."""
    m = MODES[mode]
    x = m.scale(np.array(img, dtype=np.float32))
    return x.transpose(2, 0, 1) if m.layout == "NCHW" else x


def preprocess(source: Source, size: tuple[int, int], mode: str = "xception",
               resize: str = "nearest") -> np.ndarray:
    """One image from path/bytes/file to the model's float32 input, without batch axis."""
    return to_array(load_image(source, size, resize), mode)


def preprocess_batch(sources, size: tuple[int, int], mode: str = "xception") -> np.ndarray:
    """Several images stacked into one float32 batch."""
    return np.stack([preprocess(s, size, mode) for s in sources])
