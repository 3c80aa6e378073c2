"""Quantization-aware fine-tuning: the pack, the JAX graph against onnxruntime, training, and the qat int8
methods of both formats reading the trained weights and grid back."""

import json
import shutil

import numpy as np
import onnx
import pytest

from .conftest import clone, run_module

jax = pytest.importorskip("jax")


@pytest.fixture(scope="module")
def trained(small_bundle, tiny_data, tmp_path_factory):
    """A copy of the small bundle, its pack, and weights trained for 2 epochs in BUNDLE/qat/."""
    from convert.int8 import qat_pack, qat_train

    root = tmp_path_factory.mktemp("qat")
    bundle = root / "small"
    clone(small_bundle, bundle)
    assert qat_pack.main([str(bundle), "--calibration", str(tiny_data / "train"), "--train", str(tiny_data / "train"),
                          "--validation", str(tiny_data / "validation"), "--images", "24", "--validation-images", "6",
                          "--out", str(root / "pack")]) == 0
    assert qat_train.main([str(root / "pack"), str(bundle / "qat"), "--epochs", "2", "--lr", "1e-3",
                           "--lr-scales", "1e-2", "--batch", "16"]) == 0
    return bundle, root / "pack"


def test_pack_holds_the_float_models_logits_and_the_jax_graph_computes_the_trained_onnx_graph(trained):
    import onnxruntime as ort

    from convert.int8.qat_graph import PARTS, trained_graph, weight_values
    from convert.int8.qat_train import forward, hwio, images, load_pack
    from convert.source import open_source
    from convert.to_onnx import prepared_file

    bundle, pack = trained
    head, _ = load_pack(pack)
    x, teacher = images(pack, "train", head["mode"])
    assert teacher.shape == (len(x), 2, 3)
    source = open_source(bundle)
    try:
        keras_logits = source.predict(np.concatenate([x, x[:, :, ::-1]]))
        model, grid, _ = trained_graph(source, prepared_file(source))
    finally:
        source.close()
    assert np.abs(keras_logits - np.concatenate([teacher[:, 0], teacher[:, 1]])).max() < 1e-4 * np.ptp(keras_logits)
    parts = {}
    for i in range(PARTS):
        parts.update(np.load(bundle / "qat" / f"weights.{i}.npz"))
    values = hwio(weight_values(parts), head["graph"])
    want = ort.InferenceSession(model.SerializeToString()).run(None, {model.graph.input[0].name: x})[0]
    got = np.asarray(forward(head["graph"], {}, values, {}, x, quant=False))
    assert np.abs(got - want).max() < 1e-4 * np.ptp(want)
    rounded = np.asarray(forward(head["graph"], {t: float(z) for t, (_, z) in grid.items()}, values,
                                 {t: np.log(s) for t, (s, _) in grid.items()}, x))
    assert np.abs(rounded - want).max() > 1e-3 * np.ptp(want)  # the grid does round


def test_training_lowers_the_loss_and_keeps_the_epoch_with_the_lowest_validation_error(trained):
    bundle, _ = trained
    record = json.loads((bundle / "qat" / "qat.json").read_text())
    log = record["log"]
    assert [r["epoch"] for r in log] == [0, 1, 2] and log[2]["train_mse"] < log[1]["train_mse"]
    assert record["training"]["best_epoch"] == min(log, key=lambda r: r["val_rms"])["epoch"]


def test_qat_methods_of_both_formats_use_the_trained_grid_and_record_the_training(trained, tiny_data):
    from ai_edge_litert.interpreter import Interpreter

    from convert import to_onnx, to_tflite
    from convert.calibration import calibration_set
    from convert.int8.methods import method
    from convert.int8.mixed import activation_grid
    from convert.source import open_source

    bundle, _ = trained
    grid = {t: s for t, (s, _) in json.loads((bundle / "qat" / "qat.json").read_text())["grid"].items()}
    source = open_source(bundle)
    try:
        m = source.manifest
        images = calibration_set(tiny_data / "train", m.spec(), m.classes, 100)
        notes = to_onnx.int8(source, images, bundle / "qat.onnx", method("onnx", "qat"))["quantization"]
        tfl = to_tflite.int8(source, images, bundle / "qat.tflite", method("tflite", "qat"))["quantization"]
    finally:
        source.close()
    assert notes["training"]["epochs"] == 2 and tfl["training"] == notes["training"]
    onnx_grid = activation_grid(onnx.load(str(bundle / "qat.onnx")))
    assert set(onnx_grid) == set(grid) and all(abs(float(s) - grid[t]) <= 1e-6 * grid[t]
                                               for t, (s, _) in onnx_grid.items())
    scales = [float(q["quantization_parameters"]["scales"][0]) for q in
              Interpreter(model_path=str(bundle / "qat.tflite")).get_tensor_details()
              if q["dtype"] == np.int8 and len(q["quantization_parameters"]["scales"]) == 1]
    assert all(any(abs(k - s) <= 1e-6 * s for k in scales) for s in grid.values())


def test_qat_method_without_trained_weights_or_with_another_models_is_refused(trained, tiny_data, tmp_path):
    from convert import to_onnx
    from convert.errors import ConvertError
    from convert.int8.methods import method
    from convert.source import open_source

    bundle, _ = trained
    other = tmp_path / "small"
    clone(bundle, other, ignore=shutil.ignore_patterns("qat*"))
    source = open_source(other)
    try:
        with pytest.raises(ConvertError, match="no trained weights in .*qat_train makes them"):
            to_onnx.int8(source, None, other / "qat.onnx", method("onnx", "qat"))
        shutil.copytree(bundle / "qat", other / "qat")
        record = json.loads((other / "qat" / "qat.json").read_text())
        (other / "qat" / "qat.json").write_text(json.dumps({**record, "source_sha256": "0" * 64}))
        with pytest.raises(ConvertError, match="trained for another model"):
            to_onnx.int8(source, None, other / "qat.onnx", method("onnx", "qat"))
    finally:
        source.close()
    assert not (other / "qat.onnx").exists()
    res = run_module("convert.int8.qat_train", tmp_path / "nowhere", tmp_path / "out")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "not a readable QAT pack" in res.stderr


def test_weights_folder_is_replaced_whole_or_not_at_all_and_a_foreign_folder_is_refused(trained, tmp_path):
    from runtime.files import replacing_folder, sha256

    bundle, pack = trained
    out = tmp_path / "qat"
    shutil.copytree(bundle / "qat", out)
    before = {p.name: sha256(p) for p in out.iterdir()}
    with pytest.raises(RuntimeError), replacing_folder(out, "qat.json") as tmp:
        (tmp / "weights.0.npz").write_bytes(b"half written")
        raise RuntimeError("killed while saving")
    assert {p.name: sha256(p) for p in out.iterdir()} == before and sorted(tmp_path.iterdir()) == [out]
    with replacing_folder(out, "qat.json") as tmp:
        (tmp / "qat.json").write_text("{}")
    assert [p.name for p in out.iterdir()] == ["qat.json"] and sorted(tmp_path.iterdir()) == [out]
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    res = run_module("convert.int8.qat_train", pack, foreign, "--epochs", "1")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "is not empty and has no qat.json" in res.stderr
    assert [p.name for p in foreign.iterdir()] == ["mine.txt"] and "epoch 1" not in res.stdout
