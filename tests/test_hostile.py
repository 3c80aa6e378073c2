"""Hostile clients against the real server, the CLI and the Lambda handler: stalls, bombs, bad output."""

import base64
import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from benchmarks.stress.bombs import (
    com_flood,
    gif_comment_flood,
    png_of_size,
    progressive_jpeg,
    rle_bmp,
    solid,
    tiff_strips,
)
from runtime.bundle import Overrides
from runtime.classifier import Classifier
from runtime.errors import ImageError, OutputError
from runtime.images import list_images
from runtime.preprocessing import DecodeLimits, ImageSpec, preprocess
from tests.conftest import run_module
from tests.test_serve import start_server, stop

onnx = pytest.importorskip("onnx")


def raw(base: str, data: bytes) -> socket.socket:
    """A connection to the server that has sent ``data`` and nothing more."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(data)
    return sock


def everything(sock: socket.socket) -> bytes:
    """All bytes the server sent before it closed the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        pass
    sock.close()
    return data


def response(sock: socket.socket) -> tuple[int | None, bytes]:
    """(status, body) of what the server sent before closing; status None when it just closed."""
    data = everything(sock)
    if not data:
        return None, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def get(base: str, path: str, **kwargs):
    import httpx

    return httpx.get(base + path, timeout=10, **kwargs)


def post(base: str, path: str = "/predict", **kwargs):
    import httpx

    return httpx.post(base + path, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def guarded(converted):
    """A server with short deadlines and few connections: (base URL, process)."""
    proc, base = start_server(converted, "--header-timeout", "1", "--body-timeout", "1.5", "--max-connections",
                              "24", "--max-inflight", "8", "--decode-deadline", "0.5")
    yield base, proc
    stop(proc)


def test_stalled_clients_never_lock_out_health_or_predict(guarded, tiny_data):
    base, _ = guarded
    image = list_images(tiny_data / "test")[0].read_bytes()
    silent = [raw(base, b"") for _ in range(10)]
    heads = [raw(base, b"POST /predict HTTP/1.1\r\nHost: x\r\n") for _ in range(15)]
    bodies = [raw(base, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx") for _ in range(15)]
    t = time.monotonic()
    assert get(base, "/health").status_code == 200
    assert post(base, content=image).status_code == 200
    assert time.monotonic() - t < 2
    answers = [response(s) for s in silent + heads + bodies]
    assert time.monotonic() - t < 4
    late_heads = [body for status, body in answers[:25] if status is not None]
    assert late_heads and all(json.loads(b)["error"].startswith("request head not received") for b in late_heads)
    assert {status for status, _ in answers} <= {408, None}
    assert all(status is None for status, _ in answers[25:])


def test_malformed_http_and_odd_bodies_get_json_errors(guarded, tiny_data):
    base, _ = guarded
    image = list_images(tiny_data / "test")[0].read_bytes()
    for request in (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", b"GARBAGE\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"):
        status, body = response(raw(base, request))
        assert status == 400 and "malformed HTTP request" in json.loads(body)["error"], request
    upper = post(base, content=json.dumps({"image": base64.b64encode(image).decode()}),
                 headers={"Content-Type": "APPLICATION/JSON; charset=UTF-8"})
    assert upper.status_code == 200 and upper.json()["label"] in {"blue", "green", "red"}
    for body in (b"[" * 100_000, json.dumps({f"k{i}": i for i in range(330_000)}).encode()):
        t = time.monotonic()
        r = post(base, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "JSON" in r.json()["error"] and time.monotonic() - t < 1
    lone = post(base, content=b'{"url": "http://\\ud800.example/x.jpg"}', headers={"Content-Type": "application/json"})
    assert lone.status_code == 400 and "error" in lone.json()
    for body in (b'{"url": 5}', b'{"url": "http://127.0.0.1:99999/"}', b'{"url": "http://[::1/"}'):
        r = post(base, "/2015-03-31/functions/function/invocations", content=body)
        assert r.status_code == 400 and set(r.json()) == {"error"}, body


def test_a_client_gone_mid_body_is_one_log_line_not_a_traceback(converted):
    proc, base = start_server(converted)
    sock = raw(base, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
    sock.close()
    time.sleep(0.5)
    assert get(base, "/health").status_code == 200
    log = stop(proc)
    assert "POST /predict 499" in log


def test_bombs_are_refused_while_normal_requests_are_answered(guarded, tiny_data):
    base, _ = guarded
    image = list_images(tiny_data / "test")[0].read_bytes()
    bombs = {"COM flood": com_flood(1_400_000), "GIF comments": gif_comment_flood(2_900_000),
             "40 MP PNG": png_of_size(8000, 5000), "500 scans": progressive_jpeg(64, 500)}
    results = {}

    def send(name, data):
        results[name] = post(base, content=data)

    threads = [threading.Thread(target=send, args=item) for item in bombs.items()]
    for t in threads:
        t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    health = get(base, "/health")
    assert health.status_code == 200 and time.monotonic() - t0 < 0.5
    normal = post(base, content=image)
    assert normal.status_code == 200 and time.monotonic() - t0 < 3
    for t in threads:
        t.join()
    for name, r in results.items():
        assert r.status_code == 400, (name, r.text)
    assert "over 10000 markers or junk bytes" in results["COM flood"].json()["error"]
    assert "over 10000 extension blocks" in results["GIF comments"].json()["error"]
    assert "over the cap" in results["40 MP PNG"].json()["error"]
    assert "500 scans" in results["500 scans"].json()["error"]


def test_decode_limits_refuse_before_decoding_and_can_be_raised():
    big = solid("PNG", 5000, 4000)
    with pytest.raises(Exception, match="5000x4000 pixels is over the cap of 16000000"):
        preprocess(big, (8, 8))
    assert preprocess(big, (8, 8), limits=DecodeLimits(max_pixels=20_000_000)).shape == (8, 8, 3)
    scans = progressive_jpeg(64, 150)
    with pytest.raises(Exception, match="JPEG with 1.. scans is over the cap of 100"):
        preprocess(scans, (8, 8))
    assert preprocess(scans, (8, 8), limits=DecodeLimits(max_jpeg_scans=200)).shape == (8, 8, 3)


def rle_rows(width: int, height: int) -> bytes:
    """A real RLE8 BMP: every row one run of ``width`` pixels of colour 1 (width <= 255)."""
    import struct

    data = (bytes([width, 1]) + b"\x00\x00") * height + b"\x00\x01"
    palette = b"\x00\x00\x00\x00" + b"\xff\x00\x00\x00"
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 2, 0)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


def jpeg_with(segments: bytes) -> bytes:
    """An 8x8 JPEG with ``segments`` (markers, fill or junk bytes) right after its start-of-image marker."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "JPEG")
    return buf.getvalue()[:2] + segments + buf.getvalue()[2:]


def gif_with(blocks: bytes) -> bytes:
    """An 8x8 GIF with ``blocks`` (extensions or junk bytes) right before its first image."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "GIF")
    at = buf.getvalue().index(b",")
    return buf.getvalue()[:at] + blocks + buf.getvalue()[at:]


def test_jpeg_markers_and_gif_blocks_are_counted_as_pillow_reads_them():
    comment = b"\xff\xfe\x00\x02"
    hidden = comment * 16_000  # 64,000 bytes that only look like markers: the payload of one APP1 segment
    for data in (jpeg_with(comment * 9_900), jpeg_with(b"\xff\xe1" + (len(hidden) + 2).to_bytes(2, "big") + hidden),
                 jpeg_with(b"\xff" * 5_000 + b"\x00" * 4_000), gif_with(b"!\xfe" + b"\x01x" * 9_900 + b"\x00")):
        assert np.all(preprocess(data, (8, 8))[..., 0] > 0.4)  # decoded: the red is there
    for data, why in ((jpeg_with(comment * 10_001), "JPEG with over 10000 markers or junk bytes"),
                      (jpeg_with(comment + b"\x00" * 10_001), "JPEG with over 10000"),
                      (jpeg_with(b"\xff" * 10_001), "JPEG with over"),
                      (gif_with(b"!\xfe" + b"\x01x" * 10_001 + b"\x00"), "GIF with over 10000 extension blocks"),
                      (gif_with(b"!\xff\x0bNETSCAPE2.0" + b"\x01\x00" * 10_001 + b"\x00"), "GIF with over"),
                      (gif_with(b"\x07" * 10_001), "GIF with over")):
        with pytest.raises(ImageError, match=why):
            preprocess(data, (8, 8))


def test_every_photo_of_the_dataset_is_far_under_the_jpeg_marker_cap(dataset):
    from runtime.checks.image_bounds import MAX_JPEG_STEPS, jpeg_steps

    steps = [jpeg_steps(path.read_bytes(), MAX_JPEG_STEPS) for path in list_images(dataset)]
    assert len(steps) > 3000 and max(steps) <= 20


def test_rle_bmps_and_tiffs_are_bounded_by_what_the_file_holds():
    with pytest.raises(Exception, match="RLE BMP of 16000000x1 pixels in 68 bytes: over 128 pixels per byte"):
        preprocess(rle_bmp(16_000_000), (8, 8))
    with pytest.raises(Exception, match="TIFF tag of 2600000 values is over the cap of 65536"):
        preprocess(tiff_strips(2_600_000), (8, 8))
    bmp = preprocess(rle_rows(200, 100), (100, 200))
    assert bmp.shape == (100, 200, 3) and np.all(bmp[..., 2] == 1.0) and np.all(bmp[..., 0] == -1.0)
    strips = preprocess(tiff_strips(20_000), (8, 8))  # tall but within the cap: decoded
    assert strips.shape == (8, 8, 3)
    assert preprocess(solid("TIFF", 300, 200, compression="tiff_deflate"), (8, 8)).shape == (8, 8, 3)


def test_the_cli_and_lambda_refuse_the_bombs_and_answer_the_rest(converted, tiny_data, tmp_path, monkeypatch):
    import runtime.package.lambda_function as lf

    image = list_images(tiny_data / "test")[0]
    (tmp_path / "bmp.bmp").write_bytes(rle_bmp(16_000_000))
    (tmp_path / "strips.tif").write_bytes(tiff_strips(2_600_000))
    res = run_module("runtime.predict", tmp_path / "bmp.bmp", tmp_path / "strips.tif", image, "--model", converted)
    errors = [line for line in res.stdout.splitlines() if ": error: " in line]
    assert res.returncode == 1 and len(errors) == 2, res.stdout
    assert errors[0].startswith(f"{tmp_path / 'bmp.bmp'}: error: RLE BMP of 16000000x1 pixels")
    assert errors[1].startswith(f"{tmp_path / 'strips.tif'}: error: TIFF tag of 2600000 values")
    assert "3 images: 1 answered, 2 failed" in res.stderr
    monkeypatch.setenv("RUNTIME_MODEL", str(converted))
    monkeypatch.setattr(lf, "_model", None)
    for data, why in ((rle_bmp(16_000_000), "RLE BMP"), (tiff_strips(2_600_000), "TIFF tag")):
        result = lf.lambda_handler({"image": base64.b64encode(data).decode()}, None)
        assert result["statusCode"] == 400 and why in result["error"], result


def test_cli_reads_are_bounded_and_bad_settings_stop_at_start(converted, tiny_data):
    image = list_images(tiny_data / "test")[0]
    t = time.monotonic()
    res = run_module("runtime.predict", "/dev/zero", image, "--model", converted, timeout=60)
    assert res.returncode == 1 and time.monotonic() - t < 30
    assert "/dev/zero: error: input is over 67108864 bytes" in res.stdout
    assert f"{image}: " in res.stdout and "Traceback" not in res.stderr
    for command in ("runtime.predict", "runtime.serve"):
        bad = run_module(command, image, "--model", converted, env={"RUNTIME_MAX_PIXELS": "abc"}, timeout=60) \
            if command == "runtime.predict" else run_module(command, "--model", converted, "--port", "0",
                                                            env={"RUNTIME_MAX_PIXELS": "abc"}, timeout=60)
        assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == \
            "error: RUNTIME_MAX_PIXELS='abc' is not a positive whole number", bad.stderr


def constant_onnx(path, row: list[float], fixed_width=True):
    """An ONNX model on RGB images whose logits are ``row`` whatever the image; unless ``fixed_width``,
    the row is sliced to a length computed from the image height, so no shape inference can fix it."""
    from onnx import TensorProto, helper

    def const(name, values, kind=TensorProto.INT64):
        return helper.make_tensor(name, kind, [len(values)], values)

    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0),
             helper.make_node("Unsqueeze", ["s", "one"], ["s1"]), helper.make_node("Mul", ["s1", "zero"], ["z"])]
    if fixed_width:
        nodes.append(helper.make_node("Add", ["z", "row"], ["logits"]))
    else:
        nodes += [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "one"], ["h"]),
                  helper.make_node("Sub", ["h", "pad"], ["end"]),
                  helper.make_node("Slice", ["row", "start", "end"], ["r"]),
                  helper.make_node("Add", ["z", "r"], ["logits"])]
    dims = ["n", 8, 8, 3] if fixed_width else ["n", "h", "w", 3]
    graph = helper.make_graph(
        nodes, "constant", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", len(row) if fixed_width else "k"])],
        [const("axes", [1, 2, 3]), const("one", [1]), const("start", [0]), const("pad", [8 - len(row)]),
         helper.make_tensor("zero", TensorProto.FLOAT, [], [0]), const("row", row, TensorProto.FLOAT)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize("row, match", [([float("nan"), 1, 2], "non-finite"), ([float("inf"), 1, 2], "non-finite"),
                                        ([1, 2, 3, 4, 5], r"shape \(1, 5\), expected \(1, 3\)"),
                                        ([1, 2], r"shape \(1, 2\), expected \(1, 3\)")])
def test_invalid_model_output_is_an_error_never_invalid_json(tmp_path, tiny_data, row, match):
    model = constant_onnx(tmp_path / "m.onnx", row, fixed_width=False)
    image = list_images(tiny_data / "test")[0]
    clf = Classifier.load(model, overrides=Overrides(("a", "b", "c"), (8, 8)))
    with pytest.raises(OutputError, match=match):
        clf.predict([image])
    res = run_module("runtime.predict", image, image, "--model", model, "--classes", "a,b,c", "--size", "8", "--json")
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.returncode == 1 and len(lines) == 2 and all("error" in d and "label" not in d for d in lines)
    proc, base = start_server(model, "--classes", "a,b,c", "--size", "8")
    try:
        r = post(base, content=image.read_bytes())
        assert r.status_code == 500 and set(r.json()) == {"error"}
    finally:
        stop(proc)


def test_finite_constant_model_answers_its_row(tmp_path, tiny_data):
    model = constant_onnx(tmp_path / "m.onnx", [0.5, 3.0, -1.0])
    clf = Classifier.load(model, overrides=Overrides(("a", "b", "c"), (8, 8)))
    pred = clf.predict([list_images(tiny_data / "test")[0]])[0]
    assert pred.label == "b" and pred.logits == [0.5, 3.0, -1.0]


@pytest.mark.parametrize("event, status", [
    ({"body": {"url": "x"}}, 400), ({"body": 5}, 400), ({"body": ["x"]}, 400), ([], 400), ("x", 400), (None, 400),
    ({"url": ["http://x"]}, 400), ({"url": "http://127.0.0.1:99999/"}, 400), ({"url": "http://[::1/"}, 400),
    ({"url": "http://169.254.169.254/"}, 400), ({"image": 5}, 400), ({"body": "[" * 100_000}, 400),
    ({"body": "x", "isBase64Encoded": True}, 400), ({"body": json.dumps({"url": "http://\ud800/"})}, 400),
])
def test_lambda_answers_every_event_with_an_object(converted, monkeypatch, event, status):
    import runtime.package.lambda_function as lf

    monkeypatch.setenv("RUNTIME_MODEL", str(converted))
    monkeypatch.setattr(lf, "_model", None)
    result = lf.lambda_handler(event, None)
    body = json.loads(result["body"]) if isinstance(event, dict) and "body" in event else result
    assert result.get("statusCode") == status and set(body) >= {"error"}, result
    json.dumps(result, allow_nan=False)


def test_lambda_with_bad_settings_answers_500(converted, monkeypatch):
    import runtime.package.lambda_function as lf

    monkeypatch.setenv("RUNTIME_MODEL", str(converted))
    monkeypatch.setenv("RUNTIME_ALLOW_PRIVATE_URLS", "yes")
    monkeypatch.setattr(lf, "_model", None)
    result = lf.lambda_handler({"url": "http://example.com/x.jpg"}, None)
    assert result["statusCode"] == 500 and "RUNTIME_ALLOW_PRIVATE_URLS='yes'" in result["error"]


def test_a_real_progressive_jpeg_passes_the_scan_cap():
    pixels = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", progressive=True)
    assert buf.getvalue().count(b"\xff\xda") >= 6
    assert preprocess(buf.getvalue(), (8, 8)).shape == (8, 8, 3)


@pytest.mark.parametrize("head, status", [
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 45\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 45\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 45\r\nContent-Length: 45\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 100_000 + b"\r\n\r\n", 431),
    (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X: 1\r\n" * 200 + b"\r\n", 431),
])
def test_ambiguous_framing_and_huge_heads_get_one_answer_and_a_closed_connection(guarded, head, status):
    base, _ = guarded
    hidden = b"0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n"  # the request smuggled behind the first
    data = everything(raw(base, head + hidden))
    assert data.count(b"HTTP/1.1 ") == 1 and int(data.split()[1]) == status, data[:300]
    assert "malformed HTTP request" in json.loads(data.partition(b"\r\n\r\n")[2])["error"]
    assert get(base, "/health").status_code == 200


def test_clients_that_never_read_their_pipelined_responses_do_not_lock_out_a_new_one(converted):
    proc, base = start_server(converted, "--max-connections", "16", "--send-timeout", "3")
    host, port = base.removeprefix("http://").split(":")
    attackers = []
    for _ in range(20):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        s.connect((host, int(port)))
        s.sendall(b"GET /docs HTTP/1.1\r\nHost: x\r\n\r\n" * 150)
        attackers.append(s)
    start, answered = time.monotonic(), []
    while time.monotonic() - start < 15 and len(answered) < 3:
        try:
            if get(base, "/health").status_code == 200:
                answered.append(time.monotonic() - start)
        except Exception:  # a reset while the server makes room
            time.sleep(0.2)
    for s in attackers:
        s.close()
    stop(proc)
    assert len(answered) == 3, answered


GOOD_META = {"name": "c", "classes": ["a", "b", "c"], "input": {"height": 8, "width": 8},
             "preprocessing": {"mode": "xception"}}


@pytest.mark.parametrize("meta, why", [
    ("[1, 2]", "its metadata is a JSON list, not an object"),
    ('"abc"', "its metadata is a JSON str, not an object"),
    ("{not json", "its metadata is not JSON"),
    ("[" * 100_000 + "]" * 100_000, "its metadata is nested too deeply"),
    ('{"classes": ["a", "b", "c"], "x": Infinity}', "its metadata is not JSON (Infinity is not JSON)"),
    ('{"classes": ["a", "b", "c"], "x": NaN}', "its metadata is not JSON (NaN is not JSON)"),
    ({**GOOD_META, "preprocessing": 5}, "metadata preprocessing: expected dict, got 5"),
    ({**GOOD_META, "input": {"height": "8", "width": 8}}, "metadata input.height: expected int"),
    ({**GOOD_META, "input": {"height": 10 ** 30, "width": 8}}, "metadata input 1000000000000000000000000000000x8"),
    ({**GOOD_META, "classes": "abc"}, "metadata classes: expected a list of 1 to 100000 class names"),
    ({**GOOD_META, "classes": ["a", "b\x1b[31m", "c"]}, "metadata classes"),
    ({**GOOD_META, "output": "maybe"}, "metadata output: 'maybe' is neither logits nor probabilities"),
    ({**GOOD_META, "preprocessing": {"mode": "zzz"}}, "metadata preprocessing: unknown mode or resize"),
    ("x" * (2 << 20), "its metadata is 2097152 bytes; at most 1048576"),
])
def test_malformed_metadata_in_a_model_file_is_one_line_and_exit_2(tmp_path, tiny_data, meta, why):
    path = constant_onnx(tmp_path / "m.onnx", [0.0, 1.0, 2.0])
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"edge_classifier": meta if isinstance(meta, str) else json.dumps(meta)})
    onnx.save(model, str(path))
    res = run_module("runtime.predict", list_images(tiny_data / "test")[0], "--model", path, timeout=60)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {path}: "), res.stderr[-1500:]
    assert why in lines[0], lines[0]


def test_a_decoder_answers_in_checked_plain_bytes_never_a_pickle():
    from runtime.serve.sandbox import Sandbox, SandboxLimits, answer, read_answer, refusal

    x = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    assert np.array_equal(read_answer(answer(x), (2, 4, 3)), x)
    with pytest.raises(ImageError, match="^too big$"):
        read_answer(refusal("too big"), (2, 4, 3))
    for forged in (answer(x)[:-4], answer(np.zeros((2, 4, 1), np.float32)), b"\x80\x04K\x01.", b""):
        with pytest.raises(ImageError, match="the decoder answered garbage"):
            read_answer(forged, (2, 4, 3))
    slow = Sandbox(SandboxLimits(workers=1, deadline=0.02))
    try:
        before = slow.idle.queue[0].process.pid
        with pytest.raises(ImageError, match="took over 0.02 s to decode"):  # 16 MP: about 0.15 s to decode
            slow.preprocess(solid("PNG", 4000, 4000), ImageSpec(8, 8), DecodeLimits())
        after = slow.idle.queue[0].process
        assert after.pid != before and after.is_alive()  # the child past its deadline was replaced
    finally:
        slow.close()
    sandbox = Sandbox(SandboxLimits(workers=1))
    try:
        image = solid("PNG", 40, 30)
        for spec in (ImageSpec(8, 8), ImageSpec(8, 8, "torch"), ImageSpec(8, 8, "unit", color="L")):
            assert np.array_equal(sandbox.preprocess(image, spec, DecodeLimits()), spec.load(image))
        with pytest.raises(ImageError, match="not an image"):
            sandbox.preprocess(b"nothing", ImageSpec(8, 8), DecodeLimits())
    finally:
        sandbox.close()


def _try_to_leave(port, memory, probe, out):
    """In a child: drop the rights a decoder drops, then try to reach the parent, write a file, fork."""
    import ctypes
    import ctypes.util

    from runtime.serve.sandbox import drop_rights

    isolated = drop_rights(memory, ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True))
    tries = {}
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        tries["network"] = "reached"
    except OSError:
        tries["network"] = "refused"
    try:
        with open(probe, "wb") as f:
            f.write(b"x" * 10)
        tries["write"] = "written"
    except OSError:
        tries["write"] = "refused"
    out.put((isolated, tries))


def test_a_decoding_child_cannot_reach_the_network_or_write_files(tmp_path):
    import multiprocessing

    server = socket.create_server(("127.0.0.1", 0))
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_try_to_leave, args=(server.getsockname()[1], 512 << 20, tmp_path / "probe", out))
    child.start()
    isolated, tries = out.get(timeout=60)
    child.join(timeout=30)
    server.close()
    assert tries["write"] == "refused" and not (tmp_path / "probe").stat().st_size
    if not isolated:
        pytest.skip("this kernel allows no network namespace here; the child keeps the network")
    assert tries["network"] == "refused"
