"""The runtime's preprocessing equals Keras' load_img + xception.preprocess_input, bit for bit."""

import io

import numpy as np
import pytest
from PIL import Image

from runtime.errors import ImageError
from runtime.preprocessing import preprocess

keras = pytest.importorskip("keras")


def keras_reference(source, size):
    """What the course did: load_img (NEAREST) then xception.preprocess_input."""
    img = keras.utils.load_img(source, target_size=size)
    x = keras.utils.img_to_array(img)
    return keras.applications.xception.preprocess_input(x)


def test_equals_keras_on_100_dataset_images(dataset):
    paths = sorted((dataset / "validation").rglob("*.jpg"))[:100]
    assert len(paths) == 100
    for size in [(150, 150), (299, 299), (71, 90)]:
        for p in paths:
            ours = preprocess(p, size)
            assert ours.dtype == np.float32 and ours.shape == (*size, 3)
            np.testing.assert_array_equal(ours, keras_reference(p, size), err_msg=str(p))


def _rgb(seed, w=57, h=43):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def odd_images():
    """Images that are not plain 8-bit RGB, as Pillow writes them."""
    rgb = Image.fromarray(_rgb(1))
    rgba = Image.fromarray(np.dstack([_rgb(2), _rgb(3)[..., 0]]), "RGBA")
    gray16 = Image.fromarray(np.random.default_rng(4).integers(0, 65535, (43, 57), dtype=np.uint16))
    pal_transparent = rgb.quantize(16)
    pal_transparent.info["transparency"] = 3
    yield "palette.png", rgb.quantize(64), "PNG"
    yield "palette-transparency.png", pal_transparent, "PNG"
    yield "rgba.png", rgba, "PNG"
    yield "la.png", rgba.convert("LA"), "PNG"
    yield "gray.png", rgb.convert("L"), "PNG"
    yield "gray16.png", gray16, "PNG"
    yield "cmyk.jpg", rgb.convert("CMYK"), "JPEG"
    yield "bilevel.bmp", rgb.convert("1"), "BMP"
    yield "rgba.webp", rgba, "WEBP"
    yield "palette.gif", rgb.quantize(32), "GIF"


@pytest.mark.parametrize("name,img,fmt", list(odd_images()), ids=lambda v: v if isinstance(v, str) else "")
def test_equals_keras_on_odd_modes(tmp_path, name, img, fmt):
    path = tmp_path / name
    img.save(path, fmt)
    assert Image.open(path).mode != "RGB" or fmt == "WEBP"
    for size in [(64, 64), (43, 57)]:
        np.testing.assert_array_equal(preprocess(path, size), keras_reference(path, size))
        np.testing.assert_array_equal(preprocess(path.read_bytes(), size), keras_reference(path, size))


def test_torch_mode_is_nchw_and_normalised(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(_rgb(5)).save(path)
    x = preprocess(path, (32, 32), mode="torch")
    ref = (np.asarray(Image.open(path).resize((32, 32), Image.NEAREST), np.float32) / 255.0
           - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    assert x.shape == (3, 32, 32)
    np.testing.assert_allclose(x, ref.transpose(2, 0, 1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_non_images_raise_image_error(data):
    with pytest.raises(ImageError):
        preprocess(io.BytesIO(data), (71, 71))
