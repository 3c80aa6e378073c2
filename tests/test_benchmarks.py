"""The benchmark on the tiny bundle: columns filled or explained, parity recomputed, unavailable rows."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from runtime.images import list_images
from runtime.parity import THRESHOLDS
from runtime.preprocessing import preprocess_batch
from tests.conftest import clone, run_module

keras = pytest.importorskip("keras")
FAST = ["--runs", "5", "--throughput-seconds", "0.2", "--no-cold-start"]
MEASURED = ["size_mb", "accuracy", "p50_ms", "p90_ms", "p99_ms", "e2e_p50_ms", "throughput_b32", "gflops",
            "peak_share", "threads", "provider"]


@pytest.fixture(scope="module")
def report(converted, tiny_data, tmp_path_factory):
    """One CPU benchmark of the tiny bundle, with the fp16 TFLite file removed from its copy."""
    bundle = tmp_path_factory.mktemp("bench") / "tiny"
    clone(converted, bundle)
    (bundle / "model.fp16.tflite").unlink()
    out = tmp_path_factory.mktemp("reports")
    res = run_module("benchmarks", bundle, "--images", tiny_data / "test", "--out", out, *FAST)
    assert res.returncode == 0, res.stderr[-3000:]
    return bundle, out / "tiny", res.stdout


def test_every_column_is_filled_or_explained(report):
    _, out, stdout = report
    data = json.loads((out / "report.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert list(rows)[:2] == ["keras predict", "keras compiled"] and len(rows) == 10
    for fmt in ("onnx", "tflite"):
        cascade = rows[f"cascade {fmt}"]
        assert cascade["about"].startswith(f"model.int8.{fmt} > model.fp32.")
        assert 0 <= cascade["recheck_rate"] <= 1 and cascade["mean_ms"] > 0
    for name, r in rows.items():
        if name == "tflite fp16":
            assert r["status"] == "unavailable" and "not in the bundle" in r["reason"]
            continue
        assert r["status"] == "ok", r
        assert r["cold_start_s"] is None and r["peak_rss_mb"] is None  # skipped: checked directly below
        cascade = name.startswith("cascade")
        for key in MEASURED + (["max_abs_diff", "top1_agreement"] if name != "keras predict" else []):
            assert (r[key] is None) if cascade and key == "peak_share" else (r[key] is not None), (name, key)
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    assert data["provenance"]["flags"] == {f: f in flags for f in data["provenance"]["flags"]}
    assert data["provenance"]["versions"]["numpy"] == np.__version__
    assert data["gmacs"] > 0 and data["matmul_peak_gflops"] > 0 and data["int8_peak_gops"] > 0
    assert rows["onnx int8"]["peak_share"] == pytest.approx(rows["onnx int8"]["gflops"] / data["int8_peak_gops"])
    assert rows["onnx fp32"]["peak_share"] == pytest.approx(rows["onnx fp32"]["gflops"] / data["matmul_peak_gflops"])
    int8_ops = data["op_ms"]["onnx int8"]
    assert "ConvInteger" in int8_ops or "QLinearConv" in int8_ops, int8_ops
    assert "Conv" in data["op_ms"]["onnx fp32"] and all(v >= 0 for v in int8_ops.values())
    assert any(g.startswith("onnx int8 batch 1") for g in data["internal_goals"])
    md = (out / "report.md").read_text()
    lines = md.split("\n\n")[1].splitlines()
    keeps = [r for r in rows.values() if r["status"] == "ok" and r["format"] != "keras" and r["precision"] != "int8"
             and r["top1_agreement"] >= THRESHOLDS["cascade" if r["format"] == "cascade" else
                                                   r["precision"]].min_top1_agreement]
    best = min(keeps, key=lambda r: r["p50_ms"])
    assert lines[0].startswith(f"**Deploy {best['name']}**: ") and "of 18 images" in lines[0]
    assert lines[-1].startswith("**Warning**: 18 images cannot tell 97% agreement from 100%")
    page = (out / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "<table>" in page and page.count("data:image/png;base64,") == 2
    table = stdout.strip().split("\n\n")[0].splitlines()
    assert table[0].split() == ["target", "status", "MB", "agree", "acc", "p50", "ms", "x", "keras"]
    assert max(map(len, table)) <= 80 and len(table) == 11
    assert table[1].split()[:2] == ["keras", "predict"] and table[1].split()[-1] == "1.0x"
    assert "tflite fp16 unavailable" in " ".join(stdout.split())
    assert "tflite fp16: model.fp16.tflite is not in the bundle" in stdout
    assert "| keras predict | ok |" in (out / "report.md").read_text()
    for name in ("report.md", "results.csv", "latency_vs_accuracy.png", "logit_diffs.png"):
        assert (out / name).stat().st_size > 0
    with Image.open(out / "logit_diffs.png") as png:
        assert png.format == "PNG"


def test_parity_columns_equal_an_independent_computation(report, tiny_data):
    import onnxruntime as ort

    bundle, out, _ = report
    rows = {r["name"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    files = list_images(tiny_data / "test")
    x = preprocess_batch(files, (71, 71))
    labels = np.array([["blue", "green", "red"].index(f.parent.name) for f in files])
    ref = keras.models.load_model(bundle / "model.keras", compile=False).predict(x, verbose=0)
    sess = ort.InferenceSession(str(bundle / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    row = rows["onnx int8"]
    assert row["max_abs_diff"] == pytest.approx(np.abs(got - ref).max(), rel=1e-4)
    assert row["top1_agreement"] == pytest.approx(np.mean(got.argmax(1) == ref.argmax(1)))
    assert row["accuracy"] == pytest.approx(np.mean(got.argmax(1) == labels))
    assert rows["keras predict"]["accuracy"] == pytest.approx(np.mean(ref.argmax(1) == labels))


def test_without_a_gpu_gpu_rows_are_unavailable_with_a_reason(converted):
    from benchmarks.rows import load, targets
    from runtime.errors import BackendUnavailable

    reasons = {}
    for target in targets(converted):
        with pytest.raises(BackendUnavailable) as e:
            load(target, "gpu")
        reasons[target.name] = str(e.value)
    assert reasons["keras predict"] == "no GPU visible to TensorFlow"
    assert reasons["onnx fp32"].startswith("no GPU provider in onnxruntime")
    assert "CPU" in reasons["tflite int8"]


def test_a_file_the_manifest_does_not_list_or_a_changed_one_is_not_measured(converted, tmp_path):
    from benchmarks.rows import load, targets
    from runtime.bundle import Manifest
    from runtime.errors import BackendUnavailable, ModelError

    bundle = tmp_path / "b"
    clone(converted, bundle, own=("model.fp32.onnx",))
    m = Manifest.read(bundle)
    dataclasses.replace(m, artifacts=tuple(a for a in m.artifacts if a.file != "model.int8.onnx"),
                        cascades=tuple(c for c in m.cascades if c.fast != "model.int8.onnx")).write(bundle)
    with open(bundle / "model.fp32.onnx", "ab") as f:
        f.write(b"\0")
    rows = {t.name: t for t in targets(bundle)}
    with pytest.raises(BackendUnavailable, match="model.int8.onnx is not in the manifest .a file left from an"):
        load(rows["onnx int8"], "cpu")
    with pytest.raises(ModelError, match="model.fp32.onnx: its hash differs from the manifest"):
        load(rows["onnx fp32"], "cpu")
    assert load(rows["tflite fp32"], "cpu").infer(np.zeros((1, 71, 71, 3), np.float32)).shape == (1, 3)


def test_cold_start_of_a_runtime_row_and_a_keras_row(converted, tiny_data):
    from benchmarks.rows import cold_start, targets
    from runtime.bundle import Manifest

    rows = {t.name: t for t in targets(converted)}
    image = str(list_images(tiny_data / "test")[0])
    spec = Manifest.read(converted).spec()
    rss = {}
    for name in ("onnx fp32", "keras predict", "tflite int8", next(n for n, t in rows.items() if t.default)):
        seconds, rss[name] = cold_start(rows[name], image, "cpu", spec=spec)
        assert 0 < seconds < 120 and 20 < rss[name] < 4000, (name, seconds, rss[name])
    default = next(n for n, t in rows.items() if t.default)
    assert rss[default] > rss["tflite int8"] + 50  # the cascade's start loads its float file too


def test_multiply_adds_from_keras_layers_equal_the_onnx_count(converted, tmp_path):
    from benchmarks.__main__ import parser, subject
    from benchmarks.measure.flops import count_file_macs, count_keras_macs, count_macs

    onnx_macs = count_macs(converted / "model.fp32.onnx")
    assert onnx_macs > 1e7 and count_keras_macs(converted / "model.keras") == onnx_macs
    bundle = tmp_path / "no-fp32-onnx"
    clone(converted, bundle)
    (bundle / "model.fp32.onnx").unlink()
    sub = subject(parser().parse_args([str(bundle), "--images", str(tmp_path)]))
    assert sub.macs_file == bundle / "model.keras" and count_file_macs(sub.macs_file) == onnx_macs
    (bundle / "model.keras").unlink()
    assert subject(parser().parse_args([str(bundle), "--images", str(tmp_path)])).macs_file is None


def test_a_child_process_keeps_the_callers_python_path_after_this_checkout(tmp_path):
    import os
    import subprocess
    import sys

    from benchmarks.rows import ROOT, child_env

    (tmp_path / "only_here.py").write_text("WHERE = 'caller'\n")
    env = child_env({**os.environ, "PYTHONPATH": str(tmp_path)}, EXTRA="1")
    code = "import only_here, runtime, os; print(only_here.WHERE, runtime.__file__, os.environ['EXTRA'])"
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path.parent, capture_output=True, text=True)
    assert res.stdout.split() == ["caller", str(ROOT / "runtime" / "__init__.py"), "1"], res.stderr
    assert child_env({})["PYTHONPATH"] == str(ROOT)


@pytest.mark.parametrize("accuracy, verdict", [(0.81, "met"), (0.79, "met"), (0.805, "met"),
                                               (0.815, "missed by 0.5 points"), (0.785, "missed by 0.5 points")])
def test_int8_accuracy_goal_is_one_point_either_way_on_exact_points(accuracy, verdict):
    from benchmarks.goals import goals
    from benchmarks.rows import Row

    rows = [Row("keras predict", "keras", "fp32", "cpu", accuracy=0.80),
            Row("onnx int8", "onnx", "int8", "cpu", accuracy=accuracy)]
    (line,) = [g for g in goals(rows) if g.startswith("onnx int8 accuracy")]
    assert line.endswith(f"(goal within 1): {verdict}")
