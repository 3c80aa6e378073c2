"""The FastAPI server on 127.0.0.1: concurrent requests, malformed ones, limits, the Lambda path."""

import base64
import concurrent.futures
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import pytest

from runtime.images import list_images
from tests.conftest import ROOT
from tests.test_bundle import edited

LIMIT = 6 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model, *flags):
    """``python -m runtime.serve`` in its own process, once /health answers: (process, base URL)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RUNTIME_ALLOW_PRIVATE_URLS", None)
    log = tempfile.TemporaryFile()  # not a pipe: a full pipe would stall the server's logging, not the server
    proc = subprocess.Popen([sys.executable, "-m", "runtime.serve", "--model", str(model), "--port", str(port),
                             *flags], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail(server_log(proc))


def stop(proc) -> str:
    """Stop the server; its whole log, checked for tracebacks."""
    proc.terminate()
    proc.wait(timeout=20)
    log = server_log(proc)
    assert "Traceback" not in log, log
    return log


def server_log(proc) -> str:
    """Everything the server process has written."""
    proc.log.seek(0)
    return proc.log.read().decode()


@pytest.fixture(scope="module")
def server(converted):
    """The server on the tiny bundle; yields its base URL."""
    proc, base = start_server(converted)
    yield base
    stop(proc)


def test_server_logs_its_model_and_each_request_and_answers_every_error_alike(converted):
    proc, base = start_server(converted, "--threads", "1")
    docs = httpx.get(f"{base}/docs")
    assert docs.status_code == 200 and "/predict" in docs.text and "/openapi.json" in docs.text
    assert "<script" not in docs.text and "cdn" not in docs.text.lower()
    answers = [httpx.get(f"{base}/nope"), httpx.get(f"{base}/predict"),
               httpx.post(f"{base}/predict?top_k=abc", content=b"x")]
    assert [r.status_code for r in answers] == [404, 405, 422]
    assert all(set(r.json()) == {"error"} and r.json()["error"] for r in answers)
    assert answers[2].json()["error"].startswith("query.top_k:")
    log = stop(proc)
    assert f"model cascade {converted}/model.int8." in log and "1 threads" in log and "3 classes" in log
    assert f"serving on {base} (docs at /docs" in log
    for line in ("GET /docs 200", "GET /nope 404", "GET /predict 405", "POST /predict 422"):
        assert line in log, log


def test_concurrent_requests_all_answered(server, tiny_data):
    images = [p.read_bytes() for p in list_images(tiny_data / "test")]
    expected = {p.parent.name for p in list_images(tiny_data / "test")}

    def post(body):
        return httpx.post(f"{server}/predict", content=body, headers={"Content-Type": "image/jpeg"}, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(post, images))
    assert all(r.status_code == 200 for r in responses)
    assert {r.json()["label"] for r in responses} <= expected
    assert all(len(r.json()["logits"]) == 3 for r in responses)


def test_malformed_requests_get_json_errors_and_the_server_lives_on(server, tiny_data):
    image = list_images(tiny_data / "test")[0].read_bytes()
    cases = [
        (dict(content=b"not an image", headers={"Content-Type": "image/jpeg"}), 400),
        (dict(content=b"{bad json", headers={"Content-Type": "application/json"}), 400),
        (dict(json={"image": "@@@"}), 400),
        (dict(json={"nothing": 1}), 400),
        (dict(json={"url": "http://169.254.169.254/latest/meta-data/"}), 400),
        (dict(files={"other": ("x.jpg", image)}), 400),
        (dict(content=b"\0" * (LIMIT + 1), headers={"Content-Type": "image/jpeg"}), 413),
        (dict(content=iter([b"\0" * (LIMIT // 2)] * 3)), 413),
    ]
    for kwargs, status in cases:
        r = httpx.post(f"{server}/predict", timeout=30, **kwargs)
        assert r.status_code == status, (kwargs.get("json"), r.text)
        assert isinstance(r.json()["error"], str)
    for size in (LIMIT - 1, LIMIT):
        at_limit = httpx.post(f"{server}/predict", content=b"\0" * size, timeout=30)
        assert at_limit.status_code == 400 and "not an image" in at_limit.json()["error"]
    ok = httpx.post(f"{server}/predict", files={"file": ("x.jpg", image, "image/jpeg")}, timeout=30)
    assert ok.status_code == 200 and ok.json()["label"] in {"blue", "green", "red"}
    b64 = httpx.post(f"{server}/predict", json={"image": base64.b64encode(image).decode()}, timeout=30)
    assert b64.json() == ok.json()


def test_lambda_emulator_path_answers_the_course_test_script(server, tiny_data):
    image = list_images(tiny_data / "test")[0].read_bytes()
    url = f"{server}/2015-03-31/functions/function/invocations"
    result = httpx.post(url, json={"image": base64.b64encode(image).decode()}, timeout=30).json()
    assert set(result) == {"blue", "green", "red"}
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["classes"] == ["blue", "green", "red"]


def test_openapi_schema_describes_the_api(server):
    schema = httpx.get(f"{server}/openapi.json").json()
    assert {"/predict", "/health", "/2015-03-31/functions/function/invocations"} <= set(schema["paths"])
    predict = schema["paths"]["/predict"]["post"]
    assert {"image/jpeg", "multipart/form-data", "application/json"} <= set(predict["requestBody"]["content"])
    assert {"200", "400", "413", "500", "503"} <= set(predict["responses"])
    answer = schema["components"]["schemas"]["PredictResponse"]["required"]
    assert set(answer) == {"label", "score", "top", "logits", "model", "rechecked"}


def test_the_server_answers_through_the_cascade_and_says_so(converted, tiny_data, tmp_path):
    bundle = edited(converted, tmp_path, lambda d: [c.__setitem__("margin", 1000.0) for c in d["cascades"]])
    image = list_images(tiny_data / "test")[0].read_bytes()
    proc, base = start_server(bundle)
    try:
        health = httpx.get(f"{base}/health").json()
        answer = httpx.post(f"{base}/predict", content=image, headers={"Content-Type": "image/jpeg"}).json()
    finally:
        log = stop(proc)
    assert health["chosen"].startswith("cascade: ") and health["cascade"]["margin"] == 1000.0
    assert answer["model"] == health["cascade"]["exact"] and answer["rechecked"] is True
    assert "chosen: cascade: " in log


def test_over_capacity_is_503_at_once_with_retry_after(converted, tiny_data):
    proc, base = start_server(converted, "--max-inflight", "1")
    image = list_images(tiny_data / "test")[0].read_bytes()
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: httpx.post(f"{base}/predict", content=image, timeout=30), range(24)))
    finally:
        stop(proc)
    busy = [r for r in answers if r.status_code == 503]
    assert busy and all(r.headers["retry-after"] == "1" and "over capacity" in r.json()["error"] for r in busy)
    assert {r.status_code for r in answers} == {200, 503}
