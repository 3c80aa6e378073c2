"""Quantization-aware fine-tuning on the CPU (``convert --qat``, TensorFlow): the budget, the weights kept, both int8
files made from them, the failure paths."""

import json

import numpy as np
import pytest

from .conftest import clone, run_module

BUDGET_MINUTES = 0.25


@pytest.fixture(scope="module")
def tuned(small_bundle, tiny_data, tmp_path_factory):
    """A copy of the small bundle converted with --qat-minutes BUDGET_MINUTES (int8 only), and the run's output."""
    bundle = tmp_path_factory.mktemp("qat-cpu") / "small"
    clone(small_bundle, bundle)
    res = run_module("convert", bundle, "--qat-minutes", BUDGET_MINUTES, "--precisions", "fp32,int8",
                     "--calibration", tiny_data / "train", "--parity", tiny_data / "validation")
    assert res.returncode == 0, res.stderr
    return bundle, res


def test_fine_tuning_keeps_its_budget_and_the_check_with_the_lowest_validation_error(tuned):
    bundle, res = tuned
    training = json.loads((bundle / "qat" / "qat.json").read_text())["training"]
    checks = training["checks"]
    assert training["minutes"] == BUDGET_MINUTES and training["steps"] > 1
    assert training["seconds"] <= 1.1 * 60 * BUDGET_MINUTES  # the budget holds, validations included
    assert checks[0]["step"] == 0 and checks[-1]["step"] == training["steps"]
    assert training["kept"] == min(checks, key=lambda c: c["rms"])
    assert "fine-tuned" in res.stdout and "qat: step 0" in res.stderr


def test_the_int8_files_carry_the_fine_tuned_weights_and_say_so(tuned):
    """TFLite's always; ONNX's where onnxruntime keeps 8-bit weights (a CPU with VNNI), else it keeps gptq."""
    from runtime.bundle import Manifest
    from runtime.formats import FORMATS
    from runtime.machine.cpuinfo import cpu_info

    bundle, res = tuned
    m = Manifest.read(bundle)
    record = json.loads((bundle / "qat" / "qat.json").read_text())
    tuned_formats = ("onnx", "tflite") if cpu_info().vnni else ("tflite",)
    if not cpu_info().vnni:
        assert m.entry("model.int8.onnx").notes["quantization"]["method"] == "gptq" and "7-bit" in res.stderr
    for fmt in tuned_formats:
        entry = m.entry(f"model.int8.{fmt}")
        assert entry.notes["quantization"]["method"] == "qat", fmt
        assert entry.notes["quantization"]["training"] == record["training"], fmt
        meta = FORMATS[fmt].load(bundle / entry.file, None, "cpu").metadata
        assert meta["quantization"]["training"]["kept"] == record["training"]["kept"], fmt


def test_the_trained_graph_in_tensorflow_computes_what_the_int8_file_computes(tuned, tiny_data):
    """The training optimises the file's own arithmetic: the fake-quantized TensorFlow graph's logits stay much
    closer to the int8 TFLite file's than the int8 file stays to the float model."""
    from convert.int8.onnx_tf import OnnxGraph
    from convert.int8.qat_graph import trained_graph
    from convert.source import open_source
    from convert.to_onnx import prepared_file
    from runtime.bundle import Manifest
    from runtime.formats import FORMATS
    from runtime.images import load_images

    bundle, _ = tuned
    m = Manifest.read(bundle)
    x = load_images(tiny_data / "validation", m.spec(), m.classes, 60).batch
    source = open_source(bundle)
    try:
        model, grid, _ = trained_graph(source, prepared_file(source))
        ref = source.predict(x)
    finally:
        source.close()
    simulated = OnnxGraph(model, grid)(x).numpy()
    file = FORMATS["tflite"].load(bundle / "model.int8.tflite", None, "cpu").infer_batches(x)
    assert np.sqrt(np.mean((simulated - file) ** 2)) < 0.5 * np.sqrt(np.mean((file - ref) ** 2))


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "inf"])
def test_a_budget_that_is_not_a_positive_number_of_minutes_is_one_error_line_and_changes_nothing(
        small_bundle, tiny_data, tmp_path, minutes):
    from runtime.files import sha256

    bundle = tmp_path / "small"
    clone(small_bundle, bundle)
    before = sha256(bundle / "manifest.json")
    res = run_module("convert", bundle, f"--qat-minutes={minutes}", "--calibration", tiny_data / "train",
                     "--parity", tiny_data / "validation")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error: --qat-minutes")
    assert sha256(bundle / "manifest.json") == before and not (bundle / "qat").exists()


def test_weights_fine_tuned_for_another_model_are_refused_in_one_line(tuned, small_bundle, tiny_data, tmp_path):
    from runtime.files import sha256

    bundle, _ = tuned
    other = tmp_path / "weights"
    clone(bundle / "qat", other)
    record = json.loads((other / "qat.json").read_text())
    (other / "qat.json").write_text(json.dumps({**record, "source_sha256": "0" * 64}))
    target = tmp_path / "small"
    clone(small_bundle, target)
    before = sha256(target / "manifest.json")
    res = run_module("convert", target, "--qat-from", other, "--calibration", tiny_data / "train",
                     "--parity", tiny_data / "validation")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "trained for another model" in res.stderr
    assert sha256(target / "manifest.json") == before and not (target / "qat").exists()


def test_weights_from_elsewhere_are_adopted_whole(tuned, small_bundle, tiny_data, tmp_path):
    from runtime.bundle import Manifest

    bundle, _ = tuned
    target = tmp_path / "small"
    clone(small_bundle, target)
    res = run_module("convert", target, "--qat-from", bundle / "qat", "--precisions", "int8", "--formats", "tflite",
                     "--calibration", tiny_data / "train", "--parity", tiny_data / "validation")
    assert res.returncode == 0, res.stderr
    notes = Manifest.read(target).entry("model.int8.tflite").notes["quantization"]
    assert notes["method"] == "qat" and notes["training"] == json.loads((bundle / "qat" / "qat.json").read_text())[
        "training"]


def test_a_fine_tuning_that_lowers_the_validation_agreement_is_refused():
    from convert.int8.qat_tf import Check, FineTuning

    run = FineTuning(1.0, 1e-5, 1e-3, 16, 100, 50, checks=[Check(0, 1.0, 0.96, 0.5), Check(9, 50.0, 0.94, 0.4)])
    run.kept = run.checks[1]
    assert run.worse() and "96.0% -> 94.0%" in run.summary()
    run.kept = run.checks[0]
    assert not run.worse()


def test_fine_tuning_here_and_weights_from_elsewhere_together_are_one_error_line(small_bundle, tmp_path):
    res = run_module("convert", small_bundle, "--qat", "--qat-from", tmp_path)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "give one" in res.stderr
