"""The TF-free runtime: backends, Classifier, the predict CLI, URL safety, the Lambda handler."""

import base64
import functools
import http.server
import json
import threading

import numpy as np
import pytest

from runtime.backends import dequantize, quantize
from runtime.classifier import Classifier
from runtime.errors import FetchError
from runtime.images import list_images
from runtime.machine.threads import available_cpus, cgroup_cpus
from runtime.net.fetch import FetchPolicy, fetch
from runtime.net.netaddr import is_public
from runtime.preprocessing import preprocess_batch
from tests.conftest import run_module

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def keras_labels(converted, tiny_data):
    """Keras' own top-1 labels for the tiny test images, computed independently of the runtime."""
    files = list_images(tiny_data / "test")
    model = keras.models.load_model(converted / "model.keras", compile=False)
    logits = model.predict(preprocess_batch(files, (71, 71)), verbose=0)
    return {str(f): ["blue", "green", "red"][i] for f, i in zip(files, logits.argmax(1), strict=True)}


@pytest.fixture()
def http_root(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_bundle_loads_the_fastest_verified_artifact_or_cascade(converted):
    from dataclasses import replace

    from runtime.bundle import Manifest
    from runtime.choice import choose

    m = Manifest.read(converted)
    clf = Classifier.load(converted)
    best = min(m.published_cascades(), key=lambda c: c.latency_ms)
    assert (clf.file.split("/")[-1], clf.exact_file.split("/")[-1]) == (best.fast, best.exact)
    arts = m.verified()
    assert choose(replace(m, cascades=())).entry == min(arts, key=lambda a: a.latency_ms)


def test_tflite_batches_of_any_size_match_single_images(converted, tiny_data):
    x = preprocess_batch(list_images(tiny_data / "test")[:5], (71, 71))
    for precision in ("fp32", "int8"):
        runner = Classifier.load(converted, "tflite", precision).runner
        single = np.concatenate([runner.infer(x[i:i + 1]) for i in range(5)])
        np.testing.assert_allclose(runner.infer(x), single, atol=1e-5)
        np.testing.assert_allclose(runner.infer(x[:2]), single[:2], atol=1e-5)


def test_int8_tensors_are_quantized_with_scale_and_zero_point():
    detail = {"dtype": np.int8, "quantization": (0.5, -3)}
    x = np.array([-100.0, -1.0, 0.0, 0.74, 200.0], np.float32)
    q = quantize(x, detail)
    assert q.dtype == np.int8 and list(q) == [-128, -5, -3, -2, 127]
    np.testing.assert_array_equal(dequantize(q, detail), (q.astype(np.float32) + 3) * 0.5)


def test_thread_count_respects_affinity_and_cgroup(tmp_path):
    import os

    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpus(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpus(tmp_path) is None


def test_predict_cli_files_folder_url_stdin_and_a_corrupt_file(converted, tiny_data, keras_labels, http_root):
    root, base = http_root
    good = sorted(keras_labels)
    (root / "remote.jpg").write_bytes(open(good[0], "rb").read())
    corrupt = root / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    folder = tiny_data / "test" / "red"
    res = run_module("runtime.predict", good[0], corrupt, folder, f"{base}/remote.jpg", "-", good[1],
                     "--model", converted, "--json", "--batch-size", 2,
                     env={"RUNTIME_ALLOW_PRIVATE_URLS": "1"}, input_bytes=open(good[2], "rb").read())
    assert res.returncode == 1
    lines = [json.loads(line) for line in res.stdout.decode().splitlines()]
    red = [str(p) for p in list_images(folder)]
    assert [d["input"] for d in lines] == [good[0], str(corrupt), *red, f"{base}/remote.jpg", "-", good[1]]
    assert set(lines[1]) == {"input", "error"} and "\n" not in lines[1]["error"]
    answers = {d["input"]: d for d in lines if "label" in d}
    for name, expected in [(good[0], keras_labels[good[0]]), (good[1], keras_labels[good[1]]),
                           (f"{base}/remote.jpg", keras_labels[good[0]]), ("-", keras_labels[good[2]]),
                           *[(r, keras_labels[r]) for r in red]]:
        assert answers[name]["label"] == expected, name
        assert len(answers[name]["logits"]) == 3 and len(answers[name]["top"]) == 3
    assert "Traceback" not in res.stderr.decode()


def test_predict_cli_refuses_a_loopback_url_by_default(converted, http_root):
    root, base = http_root
    (root / "x.jpg").write_bytes(b"whatever")
    res = run_module("runtime.predict", f"{base}/x.jpg", "--model", converted, "--json")
    assert res.returncode == 1
    assert "non-public address 127.0.0.1" in json.loads(res.stdout)["error"]


def test_predict_cli_bad_model_is_one_line(tmp_path):
    res = run_module("runtime.predict", "x.jpg", "--model", tmp_path / "missing.onnx")
    assert res.returncode == 2 and res.stderr.strip() == f"error: no model at {tmp_path / 'missing.onnx'}"


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.3.4.5", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.255",
                                "192.168.1.1", "169.254.169.254", "::1", "fe80::1", "fc00::1", "fd12::1",
                                "::ffff:169.254.169.254", "::ffff:127.0.0.1", "100.64.0.1", "224.0.0.1"])
def test_non_public_addresses_are_refused(ip):
    assert not is_public(ip)


@pytest.mark.parametrize("url", ["http://2852039166/latest/meta-data/", "http://0xa9fea9fe/",
                                 "http://0251.0376.0251.0376/", "http://[::ffff:169.254.169.254]/",
                                 "http://localhost/", "http://127.1/", "ftp://example.com/x.jpg",
                                 "file:///etc/passwd"])
def test_metadata_endpoint_in_every_spelling_is_refused(url):
    with pytest.raises(FetchError, match="refused"):
        fetch(url)


class Redirector(http.server.BaseHTTPRequestHandler):
    """Redirects /go?to=URL to URL; serves b"image" elsewhere."""

    def do_GET(self):
        if self.path.startswith("/go?to="):
            self.send_response(302)
            self.send_header("Location", self.path[len("/go?to="):])
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"image")

    def log_message(self, *args):
        pass


PRIVATE = FetchPolicy(allow_private=True)


def test_redirects_are_followed_and_every_hop_is_checked():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert fetch(f"{base}/go?to=/final.jpg", PRIVATE) == b"image"
        with pytest.raises(FetchError, match="refused: only http and https"):
            fetch(f"{base}/go?to=file:///etc/passwd", PRIVATE)
        with pytest.raises(FetchError, match="too many redirects"):
            fetch(f"{base}/go?to=/go?to=/go?to=/go?to=/go?to=/x", PRIVATE)
        with pytest.raises(FetchError, match="cloud metadata address 169.254.169.254"):
            fetch(f"{base}/go?to=http://169.254.169.254/latest/meta-data/", PRIVATE)
    finally:
        server.shutdown()
    assert is_public("8.8.8.8") and is_public("2001:4860:4860::8888")


def test_lambda_handler_answers_the_course_event(converted, keras_labels, http_root, monkeypatch):
    import runtime.package.lambda_function as lf

    root, base = http_root
    path = sorted(keras_labels)[0]
    (root / "pants.jpg").write_bytes(open(path, "rb").read())
    monkeypatch.setenv("RUNTIME_MODEL", str(converted))
    monkeypatch.setenv("RUNTIME_ALLOW_PRIVATE_URLS", "1")
    monkeypatch.setattr(lf, "_model", None)
    result = lf.lambda_handler({"url": f"{base}/pants.jpg"}, None)
    assert set(result) == {"blue", "green", "red"} and max(result, key=result.get) == keras_labels[path]
    b64 = base64.b64encode(open(path, "rb").read()).decode()
    assert lf.lambda_handler({"image": b64}, None) == pytest.approx(result)
    proxy = lf.lambda_handler({"body": b64, "isBase64Encoded": True}, None)
    assert proxy["statusCode"] == 200 and json.loads(proxy["body"]) == pytest.approx(result)
    bad = lf.lambda_handler({"body": json.dumps({"image": "!!!"})}, None)
    assert bad["statusCode"] == 400 and "base64" in json.loads(bad["body"])["error"]
    wrapped = base64.encodebytes(open(path, "rb").read()).decode()  # 76-column lines, as `base64` writes
    assert "\n" in wrapped and lf.lambda_handler({"image": wrapped}, None) == pytest.approx(result)
    for flag, body in (("true", wrapped), ("True", b64), (True, wrapped)):
        answer = lf.lambda_handler({"body": body, "isBase64Encoded": flag}, None)
        assert answer["statusCode"] == 200 and json.loads(answer["body"]) == pytest.approx(result), flag
    as_json = lf.lambda_handler({"body": json.dumps({"image": b64}), "isBase64Encoded": "false"}, None)
    assert as_json["statusCode"] == 200 and json.loads(as_json["body"]) == pytest.approx(result)
    odd = lf.lambda_handler({"body": b64, "isBase64Encoded": "maybe"}, None)
    assert odd["statusCode"] == 400 and json.loads(odd["body"])["error"] == (
        "'isBase64Encoded' must be true or false, not 'maybe'")


BLOCKED_RANGES = ["127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255",
                  "172.16.0.1", "172.31.255.254", "192.168.0.1", "192.168.255.254", "169.254.169.254",
                  "2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "0xA9.0xFE.0xA9.0xFE", "169.254.43518",
                  "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]", "[::1]", "[fe80::1]", "[febf::ffff]",
                  "[fc00::1]", "[fdff:ffff::1]"]


@pytest.mark.parametrize("host", BLOCKED_RANGES)
def test_every_private_spelling_is_refused_before_connecting(host):
    with pytest.raises(FetchError, match="refused: .* (non-public|cloud metadata) address"):
        fetch(f"http://{host}/latest/meta-data/")


def test_bodies_over_the_byte_cap_are_refused(http_root):
    root, base = http_root
    policy = FetchPolicy(allow_private=True, max_bytes=1000)
    (root / "big.jpg").write_bytes(b"x" * 1001)
    (root / "ok.jpg").write_bytes(b"x" * 1000)
    with pytest.raises(FetchError, match="over 1000 bytes"):
        fetch(f"{base}/big.jpg", policy)
    assert len(fetch(f"{base}/ok.jpg", policy)) == 1000


@pytest.mark.parametrize("name, spinning, litert_threads", [("server", "1", available_cpus()), ("shared", "0", 1),
                                                            ("lambda", "0", available_cpus())])
def test_a_deployment_profile_reaches_both_backends(converted, name, spinning, litert_threads):
    onnx = Classifier.load(converted, "onnx", "fp32", profile=name).runner
    options = onnx.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == spinning
    assert options.intra_op_num_threads == available_cpus()
    assert Classifier.load(converted, "tflite", "fp32", profile=name).runner.threads == litert_threads


def test_an_unknown_profile_is_one_line(converted, tiny_data):
    image = next((tiny_data / "test/red").iterdir())
    res = run_module("runtime.predict", image, "--model", converted, env={"RUNTIME_PROFILE": "turbo"})
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1] == (
        "error: profile 'turbo': known profiles are server, lambda, shared")


def test_the_heap_is_trimmed_and_bounded_where_the_c_library_is_glibc():
    import platform
    import subprocess
    import sys

    code = "from runtime.machine import heap; print(heap.give_back(), heap.bound_for_serving())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    glibc = platform.libc_ver()[0] == "glibc"
    assert out.split() == [str(glibc)] * 2
