"""Short runs of the fuzz and load scripts, and every kept fuzz finding as a regression case."""

import json
import re
from pathlib import Path

import pytest

from benchmarks.stress.fuzz_http import fuzz_lambda, fuzz_server
from benchmarks.stress.fuzz_images import fuzz, mutate, seeds
from benchmarks.stress.serverload import start
from runtime.errors import ImageError
from runtime.images import list_images
from runtime.preprocessing import preprocess
from tests.conftest import run_module

FOUND = Path(__file__).parent / "regressions"


@pytest.mark.parametrize("path", sorted(FOUND.glob("*.bin")), ids=lambda p: p.stem)
def test_kept_findings_raise_only_image_error(path):
    try:
        preprocess(path.read_bytes(), (71, 71))
    except ImageError:
        pass


def test_seed_files_decode_or_raise_image_error():
    cases = seeds(None)
    decoded = 0
    for data in cases:
        try:
            preprocess(data, (71, 71))
            decoded += 1
        except ImageError:
            pass
    assert decoded >= 10
    assert mutate(b"abcdef", [("truncate", 3, 0)]) == b"abc"


def test_a_short_fuzz_run_finds_nothing(tmp_path):
    stats = fuzz(5, seeds(None), lambda data: preprocess(data, (71, 71)), tmp_path)
    assert stats["cases"] > 100 and stats["findings"] == 0, list(tmp_path.iterdir())
    assert stats["typed_errors"] > 0 and stats["ok"] > 0


def test_a_short_load_run_loses_no_valid_request(converted, tiny_data, tmp_path):
    res = run_module("benchmarks.stress.serverload", converted, "--images", tiny_data / "test", "--requests", 200,
                     "--concurrency", 8, "--sweep", "1,4", "--out", tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads((tmp_path / "serverload.json").read_text())
    assert data["load"]["valid_failed"] == 0 and data["load"]["bad_not_4xx_json"] == 0
    assert data["over_capacity"]["503"] > 0 and data["over_capacity"]["other"] == 0
    assert data["alive_after"]


def test_a_short_http_and_lambda_fuzz_finds_nothing(converted, tiny_data, tmp_path):
    images = [p.read_bytes() for p in list_images(tiny_data / "test")[:3]]
    findings = []
    with open(tmp_path / "server.log", "w+b") as log:
        proc, base = start(converted, 32, "--header-timeout", 1, "--body-timeout", 1, log=log)
        try:
            server = fuzz_server(base, images, 6, findings)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        log.seek(0)
        assert b"Traceback" not in log.read()
    handler = fuzz_lambda(converted, images, 3, findings)
    assert findings == []
    assert server["requests"] > 20 and {"200", "400"} <= set(server["statuses"])
    assert handler["events"] > 50 and {"200", "400"} <= set(handler["statuses"])


def test_a_short_model_file_fuzz_run_finds_nothing(tmp_path):
    from benchmarks.stress.fuzz_models import fuzz, onnx_seed, tflite_seed

    seeds = {".onnx": onnx_seed(), ".tflite": tflite_seed()}
    stats = fuzz(8, seeds, tmp_path / "found")
    assert stats["cases"] > 100 and stats["findings"] == 0, sorted(p.read_text() for p in tmp_path.rglob("*.txt"))
    assert stats["typed_errors"] > 0 and stats["ok"] > 0


def test_a_model_file_whose_metadata_is_not_utf8_is_a_typed_error(tmp_path):
    from benchmarks.stress.fuzz_models import onnx_seed
    from runtime.classifier import Classifier
    from runtime.errors import ModelError

    data = onnx_seed()
    assert data.count(b'"name": "fuzz"') == 1
    (tmp_path / "m.onnx").write_bytes(data.replace(b'"name": "fuzz"', b'"name": "\xff\xfe\xfd\xfc"'))
    with pytest.raises(ModelError, match="names or metadata are not UTF-8"):
        Classifier.load(tmp_path / "m.onnx")


@pytest.mark.parametrize("path", sorted((FOUND / "models").glob("*.*")), ids=lambda p: p.name)
def test_kept_model_file_findings_raise_only_typed_errors(path):
    import numpy as np

    from runtime.classifier import Classifier
    from runtime.errors import RuntimeToolkitError

    with pytest.raises(RuntimeToolkitError):
        Classifier.load(path).answer(np.zeros((1, 8, 8, 3), np.float32))


@pytest.mark.parametrize("name, shape", [("11f339a5e2e41e33", "(12124161, 6, 6, 4)"),
                                         ("4b10c3fdad6dc036", "(12648449, 8, 8, 3)")])
def test_a_tflite_file_declaring_a_tensor_of_gigabytes_is_refused_before_litert_allocates_it(name, shape):
    from runtime.classifier import Classifier
    from runtime.errors import ModelError

    with pytest.raises(ModelError, match=rf"of shape {re.escape(shape)} would take \d+\.\d GiB; at most 1 GiB"):
        Classifier.load(FOUND / "models" / f"{name}.tflite")
