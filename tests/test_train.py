"""Training on a tiny generated folder: bundle, checkpoints, sweeps, weights, offline errors."""

import json

import h5py
import keras
import numpy as np
import pytest
from PIL import Image

from runtime.bundle import Manifest
from runtime.files import sha256
from tests.conftest import run_module
from train.config import TrainConfig
from train.data import Batches, ImageFolder
from train.evaluation import evaluate
from train.fit import Splits, fit
from train.fitting.bn import recalibrate
from train.fitting.features import pooled_features
from train.model import make_base, make_model

SIZE = 71


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """One CLI training run on the tiny folder (cached path, BN recalibrated)."""
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    res = run_module("train", "--data", tiny_data, "--size", SIZE, "--epochs", 6, "--weights", "none",
                     "--lr", 0.003, "--inner", 8, "--dropout", 0.0, "--recalibrate-bn", "--out", out)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, json.loads((out / "train.json").read_text()), res.stdout


def test_class_indices_follow_sorted_folder_names(tiny_data):
    folder = ImageFolder.scan(tiny_data / "train")
    assert folder.classes == ["blue", "green", "red"]
    assert [folder.labels[folder.paths.index(p)] for p in folder.paths if "/red/" in p] == [2] * 34


def test_only_shuffled_batches_change_order(tiny_data):
    folder = ImageFolder.scan(tiny_data / "train")
    plain = Batches(folder, SIZE, batch_size=8)
    n = len(folder.paths)
    assert list(plain.order) == list(range(n))
    shuffled = Batches(folder, SIZE, batch_size=8, shuffle=True)
    first = list(shuffled.order)
    shuffled.on_epoch_end()
    assert first != list(range(n)) and first != list(shuffled.order)
    assert sorted(first) == list(range(n))
    x, y = plain[len(plain) - 1]
    assert x.shape == (n % 8, SIZE, SIZE, 3) and y.shape == (n % 8, 3) and (y.sum(1) == 1).all()


def test_saved_model_reproduces_recorded_validation_metrics(trained, tiny_data):
    out, record, _ = trained
    best = record["best"]
    ev = evaluate(out / "model.keras", ImageFolder.scan(tiny_data / "validation", record["classes"]), SIZE)
    assert ev.accuracy == pytest.approx(best["val_accuracy"], abs=1e-6)
    assert ev.loss == pytest.approx(best["val_loss"], rel=1e-4, abs=1e-5)
    assert best["file"].endswith(f"xception_v1_{best['epoch']:02d}_{best['val_accuracy']:.3f}.keras")
    assert record["test"]["images"] == 18 and record["classes"] == ["blue", "green", "red"]


def test_evaluate_command_writes_per_class_accuracy_and_confusion(trained, tiny_data, tmp_path):
    out, record, _ = trained
    res = run_module("train", "evaluate", out / "model.keras", "--data", tiny_data / "validation", "--out", tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    line = json.loads(res.stdout.strip().splitlines()[-1])
    ev = json.loads((tmp_path / "evaluation.json").read_text())
    m = np.array(ev["confusion"])
    assert m.shape == (3, 3) and m.sum() == line["images"] == 210 and (m.sum(1) == 70).all()
    assert line["accuracy"] == pytest.approx(np.trace(m) / m.sum())
    assert line["accuracy"] == pytest.approx(record["best"]["val_accuracy"], abs=1e-6)
    assert ev["per_class"] == {c: pytest.approx(m[i, i] / 70) for i, c in enumerate(ev["classes"])}
    assert "| true \\ predicted | blue | green | red |" in (tmp_path / "evaluation.md").read_text()
    assert "| true \\ predicted |" in res.stdout
    with Image.open(tmp_path / "confusion.png") as png:
        assert png.format == "PNG"


def test_best_only_checkpoints_keep_the_best_epoch(trained):
    out, record, _ = trained
    history = json.loads((out / "history.json").read_text())
    val = history["val_accuracy"]
    assert record["best"]["epoch"] == int(np.argmax(val)) + 1
    files = sorted((out / "checkpoints").glob("xception_v1_*.keras"))
    epochs = [int(f.stem.split("_")[2]) for f in files]
    accs = [float(f.stem.split("_")[3]) for f in files]
    assert epochs[0] == 1 and epochs[-1] == record["best"]["epoch"]
    assert accs == sorted(accs) and len(set(accs)) == len(accs)
    expected = [e + 1 for e, acc in enumerate(val) if acc > max(val[:e], default=-1)]
    assert epochs == expected
    assert sha256(out / "model.keras") == sha256(files[-1])
    assert not list(out.rglob(".*partial*"))


def test_bundle_manifest_describes_the_model(trained):
    out, record, stdout = trained
    m = Manifest.read(out)
    assert m.classes == ("blue", "green", "red") and m.input.height == SIZE
    assert m.source.sha256 == sha256(out / "model.keras") and m.artifacts == ()
    assert "best epoch" in stdout and "s/epoch" in stdout
    assert record["separation"]["between_image_std"] > 0.01 and record["separation"]["classes_predicted"] >= 2


def test_recalibrated_base_separates_images(tiny_data):
    folder = ImageFolder.scan(tiny_data / "train")
    keras.utils.set_random_seed(3)
    base = make_base(SIZE, "none")
    before = pooled_features(base, folder, SIZE)
    recalibrate(base, folder, SIZE)
    after = pooled_features(base, folder, SIZE)
    assert before.std(0).mean() < 1e-3 < after.std(0).mean()


def test_uncached_path_with_augmentation_trains_full_model(tiny_data, tmp_path):
    cfg = TrainConfig(data=str(tiny_data), size=SIZE, epochs=2, weights="none", size_inner=None,
                      augment=("rotation", "shift", "shear", "zoom", "vflip"), limit=4)
    res = fit(cfg, Splits.load(tiny_data, 4), checkpoints=tmp_path)
    assert res.cache is None and len(res.epoch_seconds) == 2
    assert (tmp_path / f"xception_v1_01_{res.history['val_accuracy'][0]:.3f}.keras").exists()


def test_augmenter_changes_training_images_only(tiny_data):
    from train.augment import make_augmenter

    x = Batches(ImageFolder.scan(tiny_data / "train"), SIZE, batch_size=4)[0][0]
    aug = make_augmenter(("rotation", "zoom"), SIZE)
    assert not np.allclose(keras.ops.convert_to_numpy(aug(x, training=True)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(aug(x, training=False)), x)
    assert make_augmenter((), SIZE) is None


def test_sweep_writes_table_plot_and_json(tiny_data, tmp_path):
    res = run_module("train", "sweep", "lr", "--data", tiny_data, "--size", SIZE, "--epochs", 2,
                     "--weights", "none", "--limit", 6, "--out", tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [r for r in (tmp_path / "table.md").read_text().splitlines()[2:] if r.strip()]
    assert [r.split("|")[1].strip() for r in rows] == ["0.0001", "0.001", "0.01", "0.1"]
    data = json.loads((tmp_path / "results.json").read_text())
    assert [len(r["history"]["val_accuracy"]) for r in data["rows"]] == [2, 2, 2, 2]
    for r in data["rows"]:
        assert r["best_val_accuracy"] == max(r["history"]["val_accuracy"])
    with Image.open(tmp_path / "accuracy.png") as png:
        assert png.format == "PNG" and png.size[0] > 300
    assert "| learning_rate |" in res.stdout


def _save_legacy_h5(model, path):
    """Write weights in the legacy HDF5 layout (as the ImageNet notop file is)."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.mark.parametrize("suffix", [".h5", ".weights.h5"])
def test_weights_path_loads_those_weights(tmp_path, suffix):
    keras.utils.set_random_seed(7)
    donor = keras.applications.Xception(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    kernel = donor.get_layer("block1_conv1").kernel
    kernel.assign(kernel * 3.0 + 0.05)
    path = tmp_path / f"base{suffix}"
    _save_legacy_h5(donor, path) if suffix == ".h5" else donor.save_weights(path)
    x = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    keras.utils.set_random_seed(1)
    loaded = make_model(SIZE, weights=str(path), n_classes=3)
    keras.utils.set_random_seed(1)
    plain = make_model(SIZE, weights="none", n_classes=3)
    np.testing.assert_array_equal(loaded.get_layer("xception").get_layer("block1_conv1").kernel.numpy(),
                                  kernel.numpy())
    assert np.abs(loaded.predict(x, verbose=0) - plain.predict(x, verbose=0)).max() > 1e-6


def test_missing_weights_file_is_one_line_error(tiny_data, tmp_path):
    res = run_module("train", "--data", tiny_data, "--size", SIZE, "--epochs", 1,
                     "--weights", tmp_path / "nope.h5", "--out", tmp_path / "b")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == f"error: weights file not found: {tmp_path / 'nope.h5'}"


def test_collapsed_logits_are_refused_by_default(tiny_data, tmp_path):
    res = run_module("train", "--data", tiny_data, "--size", SIZE, "--epochs", 1, "--weights", "none",
                     "--limit", 6, "--out", tmp_path / "b")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: logits are not separated: std between images")
    assert not (tmp_path / "b" / "model.keras").exists()


OFFLINE = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}


def test_imagenet_offline_without_a_copy_fails_with_one_line(tiny_data, tmp_path):
    res = run_module("train", "--data", tiny_data, "--size", SIZE, "--epochs", 1, "--out", tmp_path / "b",
                     env={"KERAS_HOME": str(tmp_path / "keras-home"), "EDGE_CLASSIFIER_CACHE": str(tmp_path / "c"),
                          **OFFLINE})
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot get the ImageNet weights: Keras' download failed (offline?)")
    assert "python -m train.imagenet fetch" in last and "--weights none" in last
    assert not (tmp_path / "b" / "model.keras").exists()


def test_help_does_not_import_tensorflow():
    res = run_module("train", "--help", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert res.returncode == 0 and "--weights" in res.stdout
    assert " tensorflow" not in res.stderr


def test_resize_keeps_the_weights_at_another_size(trained, tiny_data, tmp_path):
    from train.bundle import resize

    out, _, _ = trained
    model = resize(out, 96, tmp_path / "tiny-96")
    small = keras.models.load_model(out / "model.keras")
    big = keras.models.load_model(model)
    assert big.input_shape == (None, 96, 96, 3) and Manifest.read(tmp_path / "tiny-96").input.height == 96
    assert big.compiled
    for a, b in zip(small.get_weights(), big.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
