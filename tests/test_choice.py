"""Which artifact answers: verified, on the device asked for, with its runtime installed, fast here."""

import dataclasses
import json
import sys

import pytest

from runtime.bundle import Artifact, Manifest, Source
from runtime.choice import choose, this_machine
from runtime.classifier import Classifier
from runtime.errors import BackendUnavailable
from runtime.parity import Parity
from tests.conftest import run_module


def bundle(*entries) -> Manifest:
    """A manifest with artifacts given as (format, precision, latency_ms, measured_on, passed)."""
    m = Manifest.for_model("b", ["a", "b"], 150, Source("model.keras", "x"))
    return dataclasses.replace(m, artifacts=tuple(
        Artifact(f"model.{p}.{f}", f, p, 1, "x", Parity(1, 0, 0, 0, 1, 1, passed=ok), ms, on)
        for f, p, ms, on, ok in entries))


def test_latencies_measured_on_this_cpu_decide():
    here = this_machine()
    m = bundle(("onnx", "fp32", 30.0, here, True), ("tflite", "fp16", 40.0, here, True),
               ("onnx", "int8", 5.0, here, False))
    choice = choose(m)
    assert choice.entry.file == "model.fp32.onnx" and "on this CPU" in choice.reason


def test_latencies_from_another_cpu_give_way_to_the_documented_order():
    m = bundle(("onnx", "fp32", 30.0, "another CPU", True), ("tflite", "fp16", 40.0, "another CPU", True))
    choice = choose(m)
    assert choice.entry.file == "model.fp16.tflite" and "another CPU" in choice.reason


def test_the_gpu_takes_only_formats_that_run_there():
    m = bundle(("tflite", "fp16", 1.0, None, True), ("onnx", "fp32", 9.0, None, True))
    assert choose(m, device="gpu").entry.file == "model.fp32.onnx"
    with pytest.raises(BackendUnavailable, match="no verified any artifact runs on gpu .tflite runs on the CPU"):
        choose(bundle(("tflite", "fp16", 1.0, None, True)), device="gpu")


def test_a_missing_runtime_moves_the_choice_or_names_what_to_install(monkeypatch):
    m = bundle(("onnx", "fp32", 1.0, None, True), ("tflite", "fp32", 9.0, None, True))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert choose(m).entry.file == "model.fp32.tflite"
    for module in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(BackendUnavailable, match=r"edge-classifier\[litert\].*; or pip install 'edge-classifier\[onnx"):
        choose(m)


def test_predict_and_server_name_the_artifact_and_why(converted, tiny_data):
    from tests.test_serve import start_server, stop

    clf = Classifier.load(converted)
    assert "on this CPU" in clf.reason
    image = sorted((tiny_data / "test" / "red").iterdir())[0]
    res = run_module("runtime.predict", image, "--model", converted, "--json")
    line = json.loads(res.stdout)
    assert res.returncode == 0 and line["model"] == clf.file.rsplit("/", 1)[1]
    assert f"chosen: {clf.reason}" in res.stderr
    proc, base = start_server(converted)
    try:
        import httpx

        assert httpx.get(f"{base}/health").json()["chosen"] == clf.reason
        assert httpx.post(f"{base}/predict", content=image.read_bytes(), timeout=30).json()["model"] == line["model"]
    finally:
        stop(proc)


def with_int8_agreeing(m: Manifest, agreeing: int, images: int) -> Manifest:
    """``m`` with an int8 ONNX file that agreed with the source model on ``agreeing`` of ``images`` parity images."""
    p = Parity(images, 0.1, 0.01, 0.01, agreeing / images, 1.0, passed=True)
    return dataclasses.replace(m, artifacts=(*m.artifacts, Artifact("model.int8.onnx", "onnx", "int8", 1, "x", p, 5.0,
                                                                    this_machine())))


def test_an_int8_file_that_clears_the_cascades_threshold_alone_answers_alone_and_one_that_does_not_gives_way():
    from runtime.parity import THRESHOLDS, wilson

    m = bundle(("onnx", "fp32", 30.0, this_machine(), True))
    need = THRESHOLDS["cascade"].min_top1_agreement
    assert wilson(341, 341)[0] >= need > wilson(339, 341)[0]  # 341 images can tell the two apart
    alone = choose(with_int8_agreeing(m, 341, 341))
    assert alone.entry.file == "model.int8.onnx" and alone.cascade is None
    assert "one faithful int8 file" in alone.reason and "341" in alone.reason
    assert "faithful" not in choose(with_int8_agreeing(m, 339, 341)).reason  # the usual choice: the fastest
    assert choose(with_int8_agreeing(m, 341, 341), precision="fp32").entry.file == "model.fp32.onnx"
