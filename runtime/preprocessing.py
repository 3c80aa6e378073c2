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

from runtime.checks.image_bounds import check_header, check_opened
from runtime.errors import ImageError, first_line

ImageSource = str | os.PathLike | bytes | io.IOBase

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG covers MPO (multi-picture) files
RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
COLORS = {"RGB": 3, "L": 1}  # Pillow's mode -> the model's input channels


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


def _unit(x: np.ndarray) -> np.ndarray:
    """Pixels scaled to [0, 1] (x / 255), the most common choice of models trained from scratch."""
    x /= 255.0
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
         "torch": Mode(_torch, "NCHW"), "unit": Mode(_unit, "NHWC"), "none": Mode(_none, "NHWC")}
RGB_ONLY = ("caffe", "torch")  # modes with a mean per RGB channel: no grayscale


def color_problem(mode: str, color: str) -> str | None:
    """Why a pixel mode and a colour cannot go together, or None."""
    if color not in COLORS:
        return f"colour {color!r:.20} is neither {' nor '.join(COLORS)}"
    if color != "RGB" and mode in RGB_ONLY:
        return f"preprocessing {mode} subtracts a mean per RGB channel: a one-channel ({color}) input cannot use it"
    return None


@dataclass(frozen=True)
class DecodeLimits:
    """What one image may cost before it is decoded: bytes read, pixels, progressive JPEG scans.

    16 MP holds a 4608x3456 phone photo (64 MB of RGBA pixels plus a 48 MB RGB copy; the
    decoders need more on top, which the server bounds per child process); a normal
    progressive JPEG has about 10 scans, while each extra scan costs a full pass over the coefficients.
    """

    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 16_000_000
    max_jpeg_scans: int = 100


DEFAULT_LIMITS = DecodeLimits()


def read_bounded(source: ImageSource, limit: int) -> bytes:
    """The bytes of a source, refused past ``limit`` without reading further (files, pipes, devices)."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, io.IOBase):
        data = source.read(limit + 1)
    else:
        with open(source, "rb") as f:
            data = f.read(limit + 1)
    if len(data) > limit:
        raise ImageError(f"input is over {limit} bytes")
    return data


def check_cost(data: bytes, img: Image.Image, limits: DecodeLimits):
    """Refuse, before decoding, an image over the pixel cap or a JPEG with too many scans."""
    w, h = img.size
    if w * h > limits.max_pixels:
        raise ImageError(f"image of {w}x{h} pixels is over the cap of {limits.max_pixels} (RUNTIME_MAX_PIXELS)")
    if img.format in ("JPEG", "MPO"):
        scans = data.count(b"\xff\xda")  # SOS markers (scan data stuffs its 0xFF bytes)
        if scans > limits.max_jpeg_scans:
            raise ImageError(f"JPEG with {scans} scans is over the cap of {limits.max_jpeg_scans} "
                             "(RUNTIME_MAX_JPEG_SCANS)")


def open_image(source: ImageSource, limits: DecodeLimits = DEFAULT_LIMITS) -> Image.Image:
    """Open and decode an image of an accepted format; refuse it before decoding if it costs too much."""
    try:
        data = read_bounded(source, limits.max_bytes)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            check_header(data)
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            check_cost(data, img, limits)
            check_opened(data, img)
            img.load()
        return img
    except UnidentifiedImageError:
        raise ImageError(f"not an image of an accepted format ({', '.join(IMAGE_FORMATS)})") from None
    except ImageError:
        raise
    except Exception as e:  # Pillow's plugins raise many types on hostile files (fuzzing found TypeError)
        raise ImageError(f"cannot read image: {type(e).__name__}: {first_line(e)}") from None


def load_image(source: ImageSource, size: tuple[int, int], resize: str = "nearest",
               limits: DecodeLimits = DEFAULT_LIMITS, color: str = "RGB") -> Image.Image:
    """Open an image as ``color`` (RGB or L) and resize it to (height, width), as ``keras.utils.load_img``."""
    img = open_image(source, limits)
    try:
        if img.mode != color:
            img = img.convert(color)
        wh = (size[1], size[0])
        if img.size != wh:
            img = img.resize(wh, RESAMPLE[resize])
        return img
    except Exception as e:  # as in open_image: any decoder failure is the input's fault
        raise ImageError(f"cannot decode image: {type(e).__name__}: {first_line(e)}") from None


def to_array(img: Image.Image, mode: str = "xception") -> np.ndarray:
    """Turn an RGB or L image into the model's float32 input (HWC, or CHW for NCHW modes)."""
    m = MODES[mode]
    x = np.array(img, dtype=np.float32)
    x = m.scale(x[..., None] if x.ndim == 2 else x)
    return x.transpose(2, 0, 1) if m.layout == "NCHW" else x


def preprocess(source: ImageSource, size: tuple[int, int], mode: str = "xception", resize: str = "nearest",
               limits: DecodeLimits = DEFAULT_LIMITS, color: str = "RGB") -> np.ndarray:
    """One image from path/bytes/file to the model's float32 input, without batch axis."""
    return to_array(load_image(source, size, resize, limits, color), mode)


@dataclass(frozen=True)
class ImageSpec:
    """How an image becomes one model input: size, pixel mode, resize filter and colour, carried as one
    value from the bundle (or a model file's metadata) to every caller."""

    height: int
    width: int
    mode: str = "xception"
    resize: str = "nearest"
    color: str = "RGB"

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def channels(self) -> int:
        return COLORS[self.color]

    def load(self, source: ImageSource, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
        """One image to the model's float32 input, without batch axis."""
        return preprocess(source, self.size, self.mode, self.resize, limits, self.color)


def preprocess_batch(sources, size: tuple[int, int], mode: str = "xception") -> np.ndarray:
    """Several images stacked into one float32 batch."""
    return np.stack([preprocess(s, size, mode) for s in sources])
