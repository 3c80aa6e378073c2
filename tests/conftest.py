"""Shared fixtures: a tiny generated dataset and the path of the real one when it is there."""

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Conversions of one test session share their exports (convert/cache.py), and leave none behind.
_CACHE = tempfile.TemporaryDirectory(prefix="edge-cache-")
os.environ["EDGE_EXPORT_CACHE"] = _CACHE.name
# Loads note the model files they verified (runtime/checks/verified.py) here, not in the user's home.
_VERIFIED = tempfile.TemporaryDirectory(prefix="edge-verified-")
os.environ["RUNTIME_VERIFY_CACHE"] = _VERIFIED.name

ROOT = Path(__file__).resolve().parents[1]
DATASET = Path(os.environ.get("CLOTHING_DATASET",
                              ROOT.parent / "shared/datasets/clothing-dataset-small"))
COLOURS = {"blue": (40, 40, 210), "green": (40, 190, 40), "red": (210, 40, 40)}


def make_folder(root: Path, per_class: dict[str, int], size=(71, 71), seed=0):
    """Noisy images of one dominant colour per class: learnable, yet not constant."""
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for name, colour in COLOURS.items():
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                x = rng.integers(-60, 60, (size[1], size[0], 3)) + np.array(colour)
                Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(d / f"{i:03d}.jpg")
    return root


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder that ``build(folder)`` fills once per test run: under pytest-xdist the workers share it (in
    the run's common temporary folder), the first to ask builds it while the others wait on a lock."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    root = tmp_path_factory.getbasetemp().parent / SHARED
    root.mkdir(exist_ok=True)
    folder, done = root / name, root / f"{name}.built"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build of another worker left
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


SHARED = "shared-fixtures"


def pytest_sessionfinish(session, exitstatus):
    """After a passing xdist run its controller removes the fixtures the workers shared."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if not os.environ.get("PYTEST_XDIST_WORKER") and exitstatus == 0 and factory is not None:
        shutil.rmtree(factory.getbasetemp() / SHARED, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """3 classes at 71 px: 34 train (enough to calibrate int8), 70 validation (enough for fp32's agreement
    bound: 189), 6 test images per class."""
    return built_once(tmp_path_factory, "tiny", lambda f: make_folder(f, {"train": 34, "validation": 70, "test": 6}))


def clone(src, dst, own=(), ignore=None):
    """A copy of bundle ``src`` at ``dst`` that costs no disk: its model files are hard links to the shared
    ones, its JSON and the files named in ``own`` (those a test rewrites in place) real copies."""
    def link(s, d):
        if s.endswith(".json") or Path(s).name in own:
            return shutil.copy2(s, d)
        os.link(s, d)
        return d
    return shutil.copytree(src, dst, copy_function=link, ignore=ignore)


def unchanged(folder: Path):
    """Yield, then fail if a test rewrote a file of the shared ``folder`` (through a hard link of ``clone``)."""
    from runtime.files import sha256

    before = {p: sha256(p) for p in folder.rglob("*") if p.is_file() and p.suffix != ".json"}
    yield folder
    assert [p.name for p, digest in before.items() if not p.is_file() or sha256(p) != digest] == []


@pytest.fixture(scope="session")
def tiny_bundle(tiny_data, tmp_path_factory):
    """A bundle trained on the tiny folder with well separated logits (model.keras + manifest)."""
    from train.__main__ import main

    def train(folder):
        assert main(["--data", str(tiny_data), "--size", "71", "--epochs", "8", "--weights", "none", "--lr", "0.01",
                     "--inner", "none", "--dropout", "0", "--recalibrate-bn", "--out", str(folder / "tiny")]) == 0
    yield from unchanged(built_once(tmp_path_factory, "bundles", train) / "tiny")


@pytest.fixture(scope="session")
def converted(tiny_bundle, tiny_data, tmp_path_factory):
    """A copy of the tiny bundle with all six artifacts (calibrated on train/, parity on validation/), its int8
    files recorded as Xception's are (``short_of_faithful``), so that its cascade answers by default."""
    from convert.__main__ import main

    def convert(folder):
        clone(tiny_bundle, folder / "tiny", ignore=shutil.ignore_patterns("checkpoints"))
        assert main([str(folder / "tiny"), "--calibration", str(tiny_data / "train")]) == 0
        short_of_faithful(folder / "tiny")
    yield from unchanged(built_once(tmp_path_factory, "converted", convert) / "tiny")


def short_of_faithful(bundle: Path, changed: int = 3):
    """Record each int8 file of ``bundle`` as changing ``changed`` of its parity images, as the real models' int8
    files do (2-5%): the tiny model's int8 files agree on every image, which makes one of them faithful enough to
    answer alone, and the cascade, which the real models answer with, would go untested."""
    from dataclasses import replace

    from runtime.bundle import Manifest

    m = Manifest.read(bundle)

    def short(a):
        n = a.parity.images
        return replace(a, parity=replace(a.parity, top1_agreement=min(a.parity.top1_agreement, (n - changed) / n)))
    replace(m, artifacts=tuple(short(a) if a.precision == "int8" else a for a in m.artifacts)).write(bundle)


@pytest.fixture(scope="session")
def small_bundle(tiny_data, tmp_path_factory):
    """A bundle of a small model of Xception's kinds of layer (convolutions with batch normalization and
    Relu, separable convolutions, a residual Add, max pooling, the pooled dense head), fitted to the tiny
    images: what the int8 methods do to each layer, in seconds instead of Xception's minutes."""
    import keras

    from convert.source import make_bundle
    from runtime.bundle import Manifest
    from runtime.images import load_images
    from runtime.preprocessing import ImageSpec

    def build(root):
        def unit(x, conv):
            return keras.layers.ReLU()(keras.layers.BatchNormalization()(conv(x)))

        keras.utils.set_random_seed(0)
        inputs = keras.Input((71, 71, 3))
        x = unit(inputs, keras.layers.Conv2D(8, 3, strides=2, use_bias=False))
        y = unit(x, keras.layers.SeparableConv2D(16, 3, padding="same", use_bias=False))
        y = keras.layers.BatchNormalization()(keras.layers.SeparableConv2D(16, 3, padding="same", use_bias=False)(y))
        y = keras.layers.MaxPooling2D(3, strides=2, padding="same")(y)
        shortcut = keras.layers.BatchNormalization()(keras.layers.Conv2D(16, 1, strides=2, use_bias=False)(x))
        x = keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))
        for width in (512, 512):  # like Xception's exit flow: weights, not the graph, make most of the file
            x = unit(x, keras.layers.SeparableConv2D(width, 3, padding="same", use_bias=False))
        model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
        spec = ImageSpec(71, 71)  # a new bundle's preprocessing, checked below
        train = load_images(tiny_data / "train", spec, list(COLOURS), 1000)
        model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(train.batch, np.asarray(train.labels), epochs=10, batch_size=16, verbose=0)
        model.save(root / "small.keras")
        assert Manifest.read(make_bundle(root / "small.keras", root / "small", list(COLOURS))).spec() == spec

    bundle = built_once(tmp_path_factory, "small", build) / "small"
    yield from unchanged(bundle)


@pytest.fixture(scope="session")
def dataset():
    """The clothing dataset beside the checkout, or skip."""
    if not (DATASET / "validation").is_dir():
        pytest.skip(f"clothing dataset not found at {DATASET}")
    return DATASET


def run_module(*args, env=None, timeout=600, input_bytes=None):
    """Run ``python -m ARGS`` from the repository root; text output, or bytes when ``input_bytes`` is given."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, env=full_env, input=input_bytes,
                          capture_output=True, text=input_bytes is None, timeout=timeout, check=False)


SLOW_FIXTURES = {"tiny_bundle", "converted", "small_bundle"}  # a trained and converted model per session
SLOW_MODULES = {"test_any_model", "test_train", "test_qat", "test_imagenet", "test_fuzz_regressions"}


def pytest_collection_modifyitems(items):
    """Mark ``slow`` what trains, converts or soaks: ``make check`` (-m "not slow") leaves it out."""
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames) or item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
