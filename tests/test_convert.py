"""Conversion of a tiny bundle: six verified artifacts, hashes, metadata, tampering, interruption, .h5."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from convert.errors import CalibrationError
from runtime.bundle import Manifest
from runtime.classifier import Classifier
from runtime.engines.tflite_metadata import read_metadata
from runtime.files import sha256
from runtime.formats import FORMATS
from runtime.images import list_images
from runtime.parity import THRESHOLDS, compare, judge, wilson
from runtime.preprocessing import ImageSpec, preprocess_batch
from tests.conftest import ROOT, clone

keras = pytest.importorskip("keras")
ALL = {(f, p) for f in FORMATS for p in FORMATS[f].precisions}


def keras_logits(bundle, images):
    model = keras.models.load_model(bundle / "model.keras", compile=False)
    return model.predict(images, verbose=0)


def test_six_artifacts_with_matching_hashes(converted):
    m = Manifest.read(converted)
    assert {(a.format, a.precision) for a in m.artifacts} == ALL
    for a in m.artifacts:
        path = converted / a.file
        assert a.file == FORMATS[a.format].file(a.precision)
        assert sha256(path) == a.sha256 and path.stat().st_size == a.bytes
        assert a.parity.passed and a.latency_ms > 0
    assert m.source.sha256 == sha256(converted / "model.keras")
    assert not [p for p in converted.iterdir() if p.name.startswith(".")]


def test_every_artifact_agrees_with_keras_independently(converted, tiny_data):
    files = list_images(tiny_data / "test")
    x = preprocess_batch(files, (71, 71))
    ref = keras_logits(converted, x)
    logit_range = np.ptp(ref)
    assert logit_range > 1.0, "the tiny model must have separated logits for parity to mean anything"
    for a in Manifest.read(converted).artifacts:
        out = Classifier.load(converted, a.format, a.precision).runner.infer(x)
        agree = np.mean(out.argmax(1) == ref.argmax(1))
        assert agree >= THRESHOLDS[a.precision].min_top1_agreement, a.file
        if a.precision == "fp32":
            assert np.abs(out - ref).max() <= 1e-4 * logit_range, a.file


def test_metadata_is_read_from_each_file_alone(converted, tmp_path):
    for a in Manifest.read(converted).artifacts:
        alone = tmp_path / a.file
        os.link(converted / a.file, alone)
        clf = Classifier.load(alone)
        assert clf.info.classes == ("blue", "green", "red")
        assert (clf.info.input.height, clf.info.input.width, clf.info.preprocessing.mode) == (71, 71, "xception")


def test_tflite_metadata_reader_matches_tensorflow_schema(converted):
    from tensorflow.lite.python import schema_py_generated as fb

    data = (converted / "model.int8.tflite").read_bytes()
    model = fb.Model.GetRootAsModel(data, 0)
    expected = {}
    for i in range(model.MetadataLength()):
        meta = model.Metadata(i)
        expected[meta.Name().decode()] = model.Buffers(meta.Buffer()).DataAsNumpy().tobytes()
    assert read_metadata(data) == expected
    assert json.loads(expected["edge_classifier"])["precision"] == "int8"


def test_an_accuracy_drop_fails_only_when_the_lost_answers_are_not_chance():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(1000, 10))
    labels = list(ref.argmax(1))
    lost = ref.copy()
    lost[:15] = lost[:15, ::-1]  # 15 right answers turned wrong: 1.5 points, p = 2**-15
    p = judge(compare(ref, lost, labels), "int8")
    assert (p.only_ref_right, p.only_export_right) == (15, 0) and p.loss_p_value == 2 ** -15
    assert p.failures == ["accuracy drop 1.5 points > 1, and no coin toss: 15 images only the reference got right, "
                          "0 only the export (sign test p = 0.000 < 0.05)"]
    labels[20:26] = [(label + 1) % 10 for label in labels[20:26]]  # the reference wrong on 6 images ...
    mixed = lost.copy()
    mixed[:15] = ref[:15]
    mixed[30:38] = mixed[30:38, ::-1]  # ... 8 right answers lost, and the export right on 3 of those 6
    mixed[20:23] = np.where(np.arange(10) == np.array(labels[20:23])[:, None], 99.0, mixed[20:23])
    p = judge(compare(ref, mixed, labels), "int8")  # 11 flips, net 5 lost: 0.5 points, under the limit
    assert (p.only_ref_right, p.only_export_right, p.passed) == (8, 3, True)
    mixed[40:48] = mixed[40:48, ::-1]  # 16 lost, 3 gained: 1.3 points, p = 0.0022
    p = judge(compare(ref, mixed, labels), "int8")
    assert p.accuracy_drop == pytest.approx(1.3) and not p.passed
    assert p.loss_p_value == pytest.approx(sum(math.comb(19, k) for k in range(16, 20)) / 2 ** 19)


def test_parity_numbers_match_a_direct_computation():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(100, 10))
    out = ref + rng.normal(scale=0.01, size=ref.shape)
    out[3] = out[3][::-1]
    labels = list(ref.argmax(1))
    p = compare(ref, out, labels)
    assert p.max_abs_logit_diff == pytest.approx(np.abs(ref - out).max())
    assert p.top1_agreement == pytest.approx(np.mean(ref.argmax(1) == out.argmax(1)))
    assert p.accuracy_ref == 1.0 and p.accuracy == pytest.approx(p.top1_agreement)
    assert p.top1_agreement == 0.99 and p.accuracy_drop == pytest.approx(1.0)
    low = wilson(99, 100)[0]  # 94.5%: above int8's 92%, under fp16's 97% and fp32's 98%
    assert judge(p, "int8").passed and not judge(p, "fp16").passed
    failed = judge(p, "fp32").failures
    assert failed[0] == (f"top-1 agreement 99.0% [{low:.1%}-{wilson(99, 100)[1]:.1%}] of 100: its 95% lower bound is "
                         "under 98% (no score on 100 images can show it: 189 needed)")
    assert failed[1].startswith("max logit diff") and len(failed) == 2 and judge(p, "fp32").passed is False
    out[7] = out[7][::-1]  # 2 of 100 lost: over 1 point, yet as likely as 2 heads in 2 tosses
    assert judge(compare(ref, out, labels), "int8").passed
    out[[11, 12, 13]] = out[[11, 12, 13], ::-1]  # 95 of 100: lower bound 88.8%
    assert judge(compare(ref, out), "int8").failures == [
        f"top-1 agreement 95.0% [{wilson(95, 100)[0]:.1%}-{wilson(95, 100)[1]:.1%}] of 100: its 95% lower bound is "
        "under 92%"]


def _tamper_onnx(exporter):
    """The real ONNX exporter, then the logits layer's weights changed in the written file."""
    import onnx
    from onnx import numpy_helper

    def export(source, precision, calibration, dest):
        notes = exporter(source, precision, calibration, dest)
        model = onnx.load(str(dest))
        for init in model.graph.initializer:
            w = numpy_helper.to_array(init)
            if w.ndim == 2 and w.shape[1] == 3:
                init.CopyFrom(numpy_helper.from_array((w * 1.01).astype(w.dtype), init.name))
        onnx.save(model, str(dest))
        return notes
    return export


def test_tampered_export_is_rejected_and_not_published(tiny_bundle, tiny_data, tmp_path):
    from benchmarks.rows import measure, targets
    from convert.pipeline import EXPORTERS, convert
    from convert.source import open_source

    bundle = tmp_path / "b"
    clone(tiny_bundle, bundle, ignore=shutil.ignore_patterns("checkpoints"))
    source = open_source(bundle)
    try:
        results = convert(source, bundle, ["onnx"], ["fp32"], tiny_data / "validation", None,
                          exporters={**EXPORTERS, "onnx": _tamper_onnx(EXPORTERS["onnx"])})
    finally:
        source.close()
    assert results[0].error.startswith("model.fp32.onnx: parity failed: max logit diff")
    assert not (bundle / "model.fp32.onnx").exists()
    m = Manifest.read(bundle)
    assert m.verified() == [] and [p.name for p in bundle.iterdir() if p.name.startswith(".")] == []
    (refused,) = m.refused()  # its numbers are kept, without a hash: no file was published
    assert refused.file == "model.fp32.onnx" and refused.sha256 is None and refused.bytes > 0
    assert refused.parity.failures == results[0].parity.failures and refused.parity.rel_logit_diff > 1e-4
    assert refused.latency_ms > 0
    row, out = measure(next(t for t in targets(bundle) if t.name == "onnx fp32"), "cpu", None, None, None, 0, 0,
                       None)
    assert out is None and row.status == "refused" and "failed parity at conversion" in row.reason
    assert row.max_abs_diff == refused.parity.max_abs_logit_diff and row.p50_ms == refused.latency_ms


def test_file_changed_after_publishing_is_refused(converted, tmp_path):
    from runtime.errors import ModelError

    bundle = tmp_path / "b"
    clone(converted, bundle, own=("model.fp32.onnx",))
    data = bytearray((bundle / "model.fp32.onnx").read_bytes())
    data[-100] ^= 0xFF
    (bundle / "model.fp32.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="hash differs"):
        Classifier.load(bundle, "onnx", "fp32")


def test_interrupted_conversion_leaves_no_final_file(tiny_bundle, tiny_data, tmp_path):
    bundle = tmp_path / "b"
    clone(tiny_bundle, bundle, ignore=shutil.ignore_patterns("checkpoints"))
    proc = subprocess.Popen([sys.executable, "-m", "convert", str(bundle), "--formats", "onnx",
                             "--calibration", str(tiny_data / "train")], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.name.endswith(".partial") for p in bundle.iterdir()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert time.time() < deadline, "the conversion never started writing"
    listed = {a.file: a.sha256 for a in Manifest.read(bundle).artifacts}
    finals = {p.name for p in bundle.glob("model.*.*") if p.suffix in (".onnx", ".tflite")}
    assert finals == set(listed)
    for name, digest in listed.items():
        assert sha256(bundle / name) == digest


def test_legacy_h5_model_converts(tiny_bundle, tiny_data, tmp_path):
    from convert.__main__ import main

    model = keras.models.load_model(tiny_bundle / "model.keras", compile=False)
    h5 = tmp_path / "legacy.h5"
    model.save(h5)
    import h5py

    with h5py.File(h5) as f:
        assert "model_config" in f.attrs
    out = tmp_path / "from-h5"
    rc = main([str(h5), "--classes", "blue,green,red", "--out", str(out), "--precisions", "fp32",
               "--formats", "onnx", "--parity", str(tiny_data / "validation")])
    assert rc == 0
    m = Manifest.read(out)
    assert {a.file for a in m.artifacts} == {"model.fp32.onnx"}
    assert all(a.parity.passed and a.parity.top1_agreement == 1.0 for a in m.artifacts)


def test_calibration_refuses_repeated_images(tiny_data, tmp_path):
    from convert.calibration import calibration_set

    one = next((tiny_data / "train" / "red").iterdir())
    for i in range(150):
        shutil.copy(one, tmp_path / f"{i}.jpg")
    with pytest.raises(CalibrationError, match="needs 100 distinct images"):
        calibration_set(tmp_path, ImageSpec(71, 71), ["red"], 200)


def test_cli_says_in_one_line_what_is_missing(tiny_bundle, tmp_path):
    from tests.conftest import run_module

    bundle = tmp_path / "b"
    clone(tiny_bundle, bundle, ignore=shutil.ignore_patterns("checkpoints"))
    res = run_module("convert", bundle, "--parity", tmp_path / "nothing-here")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nothing-here'}: no such folder"
    res = run_module("convert", bundle, "--precisions", "int8")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == ("error: int8 needs --calibration DIR (at least 100 real images), "
                                                   "or leave it out: --precisions fp32,fp16")


def test_a_second_convert_of_a_bundle_refuses_in_one_line_and_nothing_published_goes_missing(tiny_bundle, tiny_data,
                                                                                           tmp_path):
    bundle = tmp_path / "b"
    clone(tiny_bundle, bundle, ignore=shutil.ignore_patterns("checkpoints"))
    lock = tmp_path / ".b.lock"
    first = subprocess.Popen([sys.executable, "-m", "convert", str(bundle), "--formats", "tflite", "--precisions",
                              "fp16", "--parity", str(tiny_data / "validation")], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not lock.exists():
        time.sleep(0.02)
    second = subprocess.run([sys.executable, "-m", "convert", str(bundle), "--formats", "onnx", "--precisions",
                             "fp16", "--parity", str(tiny_data / "validation")], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert second.returncode == 2, second.stderr[-2000:]
    assert second.stderr.strip().splitlines()[-1].startswith(
        f"error: {bundle}: another convert is writing this bundle (pid {first.pid}, since ")
    listed = {a.file: a.sha256 for a in Manifest.read(bundle).artifacts}
    on_disk = {p.name for p in bundle.glob("model.*.*") if p.suffix in (".onnx", ".tflite")}
    assert on_disk == set(listed) and "model.fp16.tflite" in listed and "model.fp16.onnx" not in listed
    assert all(sha256(bundle / name) == digest for name, digest in listed.items())
    assert not lock.exists() and not list(bundle.glob(".*.partial*"))
