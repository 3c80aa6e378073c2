"""Broken model files and bundles are refused in one line; a failed conversion keeps the old bundle."""

import dataclasses
import json
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from runtime.bundle import Manifest
from runtime.classifier import Classifier
from runtime.errors import ModelError
from runtime.files import sha256
from tests.conftest import ROOT, clone, run_module

onnx = pytest.importorskip("onnx")


def damaged(data: bytes):
    """Truncated, bit-flipped header, foreign format and empty variants of a model file."""
    yield "truncated", data[: len(data) // 2]
    flipped = bytearray(data)
    for i in range(0, 64, 3):
        flipped[i] ^= 0x5A
    yield "header-flipped", bytes(flipped)
    yield "png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    yield "empty", b""


@pytest.mark.parametrize("name", ["model.fp32.onnx", "model.int8.tflite"])
def test_damaged_model_files_are_refused(converted, tmp_path, name):
    data = (converted / name).read_bytes()
    for kind, bad in damaged(data):
        path = tmp_path / f"{kind}-{name}"
        path.write_bytes(bad)
        with pytest.raises(ModelError):
            Classifier.load(path)
        res = run_module("runtime.predict", converted.parent / "x.jpg", "--model", path)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, (kind, res.stderr)


def test_class_count_mismatch_is_refused(converted, tmp_path):
    bundle = tmp_path / "b"
    clone(converted, bundle)
    m = Manifest.read(bundle)
    dataclasses.replace(m, classes=(*m.classes, "purple")).write(bundle)
    with pytest.raises(ModelError, match="3 outputs but 4 classes"):
        Classifier.load(bundle, "onnx", "fp32")


def test_onnx_with_external_data_is_refused(converted, tmp_path):
    model = onnx.load(str(converted / "model.fp32.onnx"))
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="weights.bin",
                    size_threshold=1024)
    assert (tmp_path / "weights.bin").stat().st_size > 1_000_000
    with pytest.raises(ModelError):
        Classifier.load(tmp_path / "ext.onnx")


def test_onnx_with_a_custom_operator_domain_is_refused(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Steal", ["x"], ["y"], domain="com.example.evil")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example.evil", 1)])
    model.metadata_props.add(key="edge_classifier", value=json.dumps(
        {"classes": ["a", "b", "c"], "input": {"height": 1, "width": 1}}))
    onnx.save(model, str(tmp_path / "custom.onnx"))
    with pytest.raises(ModelError):
        Classifier.load(tmp_path / "custom.onnx")


def test_server_with_a_broken_model_exits_with_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    res = run_module("runtime.serve", "--model", bad, "--port", "0", timeout=60)
    assert res.returncode == 2 and res.stderr.strip().startswith(f"error: cannot load {bad}")


def _limit_file_size():
    """In the child: files may not grow past 20 MB, and writing past it fails (EFBIG) instead of killing."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000_000, 20_000_000))


def test_disk_full_during_conversion_keeps_the_previous_bundle(converted, tiny_data, tmp_path):
    bundle = tmp_path / "b"
    clone(converted, bundle)
    before = {p.name: sha256(p) for p in bundle.iterdir() if p.is_file()}
    res = subprocess.run([sys.executable, "-m", "convert", str(bundle), "--formats", "onnx", "--precisions",
                          "fp32", "--parity", str(tiny_data / "validation")], cwd=ROOT, capture_output=True,
                         text=True, preexec_fn=_limit_file_size, check=False, timeout=600)
    assert res.returncode != 0
    assert "File too large" in res.stderr
    after = {p.name: sha256(p) for p in bundle.iterdir() if p.is_file()}
    assert after == before
    assert not [p for p in bundle.iterdir() if p.name.startswith(".")]
    logits = Classifier.load(bundle, "onnx", "fp32").runner.infer(np.zeros((1, 71, 71, 3), np.float32))
    assert logits.shape == (1, 3)
