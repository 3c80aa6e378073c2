"""Any Keras image classifier: a plain CNN through the int8 path, x/255 preprocessing, softmax outputs, and
the model's own input as the truth about its size."""

import json
import time

import numpy as np
import pytest

from runtime.bundle import Manifest
from runtime.classifier import Classifier
from runtime.images import list_images, load_images
from runtime.preprocessing import ImageSpec
from tests.conftest import COLOURS, run_module
from tests.test_bundle import edited

keras = pytest.importorskip("keras")


def fitted(model, tiny_data, spec: ImageSpec):
    """``model`` fitted for a few epochs on the tiny training images through ``spec``."""
    train = load_images(tiny_data / "train", spec, list(COLOURS), 1000)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=model.layers[-1].get_config().get(
        "activation") != "softmax")
    model.compile(keras.optimizers.Adam(3e-3), loss)
    model.fit(train.batch, np.asarray(train.labels), epochs=6, batch_size=16, verbose=0)
    return model


@pytest.fixture(scope="module")
def plain(tiny_data, tmp_path_factory):
    """A Conv-ReLU-MaxPool-Conv-ReLU-GAP-Dense CNN at 32 px trained on x/255 pixels: no depthwise convolution,
    no residual Add, nothing of Xception's."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.MaxPooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(inputs))
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    path = tmp_path_factory.mktemp("plain") / "plain.keras"
    fitted(model, tiny_data, ImageSpec(32, 32, "unit")).save(path)
    return path


def test_a_plain_cnn_converts_all_six_files_and_answers_like_keras(plain, tiny_data, tmp_path):
    out = tmp_path / "plain"
    res = run_module("convert", plain, "--classes", "blue,green,red", "--preprocessing", "unit", "--calibration",
                     tiny_data / "train", "--out", out)
    assert "export failed" not in res.stderr and "Traceback" not in res.stderr, res.stderr[-3000:]
    m = Manifest.read(out)
    assert m.preprocessing.mode == "unit" and m.output == "logits"
    assert {a.file for a in m.artifacts} == {f"model.{p}.{f}" for p in ("fp32", "fp16", "int8")
                                             for f in ("onnx", "tflite")}
    for a in m.artifacts:
        assert a.parity.images == 210 and (a.parity.passed or a.precision == "int8"), a
    onnx_int8 = m.entry("model.int8.onnx").notes["quantization"]
    assert set(onnx_int8["not_applied"]) == {"equalize_relu"}  # no Conv -> Relu -> depthwise chain here
    files = list_images(tiny_data / "test")
    x = np.stack([ImageSpec(32, 32, "unit").load(f) for f in files])
    expected = keras.models.load_model(plain).predict(x, verbose=0).argmax(1)
    res = run_module("runtime.predict", tiny_data / "test", "--model", out, "--json")
    labels = [json.loads(line)["label"] for line in res.stdout.splitlines()]
    assert res.returncode == 0 and len(labels) == len(files)
    assert np.mean([label == list(COLOURS)[i] for label, i in zip(labels, expected, strict=True)]) >= 17 / 18


def test_a_softmax_model_is_recorded_as_probabilities_and_not_softmaxed_again(tiny_data, tmp_path):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    fitted(model, tiny_data, ImageSpec(24, 24)).save(tmp_path / "soft.keras")
    out = tmp_path / "soft"
    res = run_module("convert", tmp_path / "soft.keras", "--classes", "blue,green,red", "--formats", "onnx",
                     "--precisions", "fp32", "--parity", tiny_data / "validation", "--out", out)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "preprocessing xception (x / 127.5 - 1) assumed" in res.stderr
    assert Manifest.read(out).output == "probabilities"
    image = list_images(tiny_data / "test")[0]
    probs = model.predict(ImageSpec(24, 24).load(image)[None], verbose=0)[0]
    answer = Classifier.load(out).predict([image], top_k=3)[0]
    expected = dict(zip(COLOURS, probs, strict=True))
    assert {t["label"]: t["score"] for t in answer.top} == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("build, flags, expected", [
    (lambda: keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                               keras.layers.Dense(3)]), ["--size", "150"],
     "error: the model's input is 64x64; --size 150 disagrees"),
    (lambda: keras.Model(i := keras.Input((16, 16, 3)), [keras.layers.Dense(3)(keras.layers.Flatten()(i)),
                                                         keras.layers.Dense(3)(keras.layers.Flatten()(i))]), [],
     "error: two.keras: 1 inputs and 2 outputs; an image classifier has one of each"),
    (lambda: keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(3, 3)]), [],
     "error: two.keras: output (14, 14, 3) is not one row of class scores (batch, classes)"),
    (lambda: keras.Sequential([keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D(),
                               keras.layers.Dense(3)]), ["--size", "5000"],
     "error: --size 5000: at most 4096 pixels per side"),
])
def test_shapes_that_disagree_are_one_line_and_leave_no_bundle(tmp_path, build, flags, expected):
    build().save(tmp_path / "two.keras")
    out = tmp_path / "b"
    start = time.perf_counter()
    res = run_module("convert", tmp_path / "two.keras", "--classes", "a,b,c", "--out", out, *flags)
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1] == expected
    assert not out.exists() and time.perf_counter() - start < 60


def test_a_rescaling_model_is_told_to_use_none(tmp_path):
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    model.save(tmp_path / "r.keras")
    res = run_module("convert", tmp_path / "r.keras", "--classes", "a,b,c", "--preprocessing", "unit", "--out",
                     tmp_path / "b", "--formats", "onnx", "--precisions", "fp32")
    assert ("note: the model scales its own input (Rescaling 'rescaling'); --preprocessing unit scales it too: use "
            "--preprocessing none if it was trained on raw 0-255 pixels") in res.stderr


def test_a_manifest_size_the_model_contradicts_is_refused_before_any_image(converted, tiny_data, tmp_path):
    bundle = edited(converted, tmp_path, lambda d: d["input"].update(height=60000, width=60000))
    start = time.perf_counter()
    res = run_module("runtime.predict", tiny_data / "test", "--model", bundle, "--precision", "fp32",
                     "--format", "onnx")
    assert res.returncode == 2 and time.perf_counter() - start < 30
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: {bundle}/model.fp32.onnx: the model's input is 71x71; the manifest says 60000x60000")
    res = run_module("runtime.predict", list_images(tiny_data / "test")[0], "--model", converted / "model.fp32.onnx",
                     "--size", "150")
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1] == (
        f"error: {converted}/model.fp32.onnx: the model's input is 71x71; --size says 150x150")


def test_every_kind_of_layer_of_the_matrix_converts_without_an_internal_error(tiny_data, tmp_path):
    """One small model with the layers the architecture matrix brings (benchmarks/architectures.py):
    Rescaling and Normalization inside, ReLU6, depthwise, residual Add, swish, squeeze-excite Multiply,
    hard-swish, Concatenate, BatchNorm; each file is published or refused by parity, never an export error."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Normalization(mean=0.5, variance=0.1)(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(keras.layers.Conv2D(16, 3, strides=2)(x)))
    y = keras.layers.ReLU(6.0)(keras.layers.DepthwiseConv2D(3, padding="same")(x))
    x = keras.layers.Add()([x, keras.layers.Conv2D(16, 1)(y)])
    s = keras.layers.Activation("swish")(keras.layers.Conv2D(16, 3, padding="same")(x))
    se = keras.layers.Dense(16, activation="sigmoid")(keras.layers.GlobalAveragePooling2D(keepdims=True)(s))
    h = keras.layers.Activation("hard_swish")(keras.layers.Multiply()([s, se]))
    x = keras.layers.Concatenate()([x, h])
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    fitted(model, tiny_data, ImageSpec(32, 32, "none")).save(tmp_path / "kinds.keras")
    out = tmp_path / "kinds"
    res = run_module("convert", tmp_path / "kinds.keras", "--classes", "blue,green,red", "--preprocessing", "none",
                     "--calibration", tiny_data / "train", "--out", out)
    assert res.returncode in (0, 1) and "Traceback" not in res.stderr, res.stderr[-3000:]
    m = Manifest.read(out)
    assert "export failed" not in res.stderr, res.stderr[-3000:]
    assert {a.file for a in m.artifacts} == {f"model.{p}.{f}" for p in ("fp32", "fp16", "int8")
                                             for f in ("onnx", "tflite")}
    # Keras' ONNX exporter makes the Normalization layer's captured mean and variance graph inputs; the
    # converter folds them back into constants, so the ONNX files compute the model's function
    assert {"model.fp32.tflite", "model.fp16.tflite", "model.fp32.onnx"} <= {a.file for a in m.verified()}


def test_a_grayscale_model_converts_and_reads_every_image_as_one_channel(tiny_data, tmp_path):
    keras.utils.set_random_seed(3)
    spec = ImageSpec(24, 24, "unit", color="L")
    inputs = keras.Input((24, 24, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(inputs))
    model = fitted(keras.Model(inputs, keras.layers.Dense(3)(x)), tiny_data, spec)
    model.save(tmp_path / "gray.keras")
    out = tmp_path / "gray"
    res = run_module("convert", tmp_path / "gray.keras", "--classes", "blue,green,red", "--preprocessing", "unit",
                     "--calibration", tiny_data / "train", "--out", out)
    assert "export failed" not in res.stderr and "Traceback" not in res.stderr, res.stderr[-3000:]
    m = Manifest.read(out)
    assert (m.input.channels, m.preprocessing.color) == (1, "L")
    assert {"model.fp32.tflite", "model.fp32.onnx"} <= {a.file for a in m.verified()}
    files = list_images(tiny_data / "test")
    x = np.stack([spec.load(f) for f in files])
    assert x.shape == (len(files), 24, 24, 1)
    expected = [list(COLOURS)[i] for i in model.predict(x, verbose=0).argmax(1)]
    for fmt in ("onnx", "tflite"):
        res = run_module("runtime.predict", tiny_data / "test", "--model", out, "--format", fmt, "--precision",
                         "fp32", "--json")
        assert res.returncode == 0, res.stderr[-2000:]
        assert [json.loads(line)["label"] for line in res.stdout.splitlines()] == expected


def test_a_grayscale_model_refuses_a_per_channel_mean_and_an_rgb_manifest(tmp_path):
    keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]).save(
        tmp_path / "g.keras")
    res = run_module("convert", tmp_path / "g.keras", "--classes", "a,b,c", "--preprocessing", "caffe", "--out",
                     tmp_path / "b")
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1] == (
        "error: g.keras: preprocessing caffe subtracts a mean per RGB channel: a one-channel (L) input cannot use it")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_size_the_file_contradicts_is_refused_before_tensorflow_is_imported(tmp_path, suffix):
    import subprocess
    import sys

    from tests.conftest import ROOT

    keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Flatten(), keras.layers.Dense(3)]).save(
        tmp_path / f"m{suffix}")
    code = ("import sys\nfor m in ('tensorflow', 'keras', 'tf2onnx'):\n    sys.modules[m] = None\n"
            "from convert.__main__ import main\n"
            f"sys.exit(main([{str(tmp_path / f'm{suffix}')!r}, '--classes', 'a,b,c', '--size', '150']))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.strip() == "error: the model's input is 64x64; --size 150 disagrees"
