"""Fuzz the HTTP layer of a real server and the Lambda handler's events for a bounded time.

``python -m benchmarks.stress.fuzz_http BUNDLE --seconds 600``: hypothesis builds raw HTTP requests (methods,
paths, headers, media types, framings, bodies: images, mutated images, JSON of any shape, hostile
URLs, bytes) sent over sockets to ``runtime.serve`` on 127.0.0.1, and events of any JSON shape for
``lambda_handler``. Framings include pipelined pairs, ambiguous framing (Content-Length with
Transfer-Encoding, a folded Transfer-Encoding line), and clients that pipeline requests and never read.
A finding is a 5xx, an answer that is not JSON, a connection dropped without an answer to a complete
request, more than one answer (or anything but 400) to an ambiguous framing, /health failing afterwards, a
traceback in the server log, or a handler that raises or answers anything but a JSON-serialisable object
with status 200 or 400.
"""

import base64
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.stress.fuzz_images import mutate
from benchmarks.stress.serverload import start
from runtime.cli import command_parser, positive_float
from runtime.errors import ImageError, RuntimeToolkitError, one_line_errors
from runtime.images import list_images

LAMBDA = "/2015-03-31/functions/function/invocations"
PATHS = ["/predict", "/predict?top_k=1", "/predict?top_k=-5", "/predict?top_k=x", "/health", "/docs",
         "/openapi.json", LAMBDA, "/", "/nope", "/predict/../health", "/%00", "/" + "a" * 5000]
TYPES = ["image/jpeg", "application/json", "APPLICATION/JSON; charset=utf-8", "multipart/form-data; boundary=b",
         "multipart/form-data", "text/plain", "application/octet-stream", "", "\u00e9/\u00e9"]
URLS = ["http://127.0.0.1/x.jpg", "http://[::ffff:169.254.169.254]/", "http://127.0.0.1:99999/", "http://[::1",
        "file:///etc/passwd", "http://\ud800/", "http://[64:ff9b::a9fe:a9fe]/", "ftp://x/", "http:///x", ""]
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)


def payloads(images: list[bytes]):
    """JSON payloads: url/image objects with hostile values, and JSON of any shape."""
    b64 = st.sampled_from(images).map(lambda b: base64.b64encode(b).decode())
    return st.one_of(st.fixed_dictionaries({"url": st.sampled_from(URLS) | json_values}),
                     st.fixed_dictionaries({"image": b64 | st.text(max_size=40) | json_values}), json_values)


def bodies(images: list[bytes]):
    """Request bodies: images, mutated images, JSON, multipart, random bytes."""
    ops = st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]),
                             st.integers(0, 1 << 20), st.integers(0, 255)), max_size=4)
    mutated = st.builds(mutate, st.sampled_from(images), ops)
    as_json = payloads(images).map(lambda p: json.dumps(p).encode("utf-8", "surrogatepass"))
    multipart = st.sampled_from(images).map(lambda b: b"--b\r\nContent-Disposition: form-data; name=\"file\"; "
                                            b"filename=\"x.jpg\"\r\n\r\n" + b + b"\r\n--b--\r\n")
    return st.one_of(st.sampled_from(images), mutated, as_json, multipart, st.binary(max_size=256))


AMBIGUOUS = ("smuggle", "folded")


def frame(method: str, path: str, ctype: str, body: bytes, framing: str, headers: list) -> tuple[bytes, bool]:
    """The raw request and whether it is complete (a server owes a complete request an answer); ``pipelined``
    sends the request twice in one write, ``smuggle`` and ``folded`` frame its body ambiguously."""
    if framing == "pipelined":
        first, complete = frame(method, path, ctype, body, "length", headers)
        return first.replace(b"Connection: close\r\n", b"", 1) + first, complete
    head = [f"{method} {path} HTTP/1.1", "Host: fuzz", "Connection: close"]
    head += [f"Content-Type: {ctype}"] if ctype else []
    head += [f"{k}: {v}" for k, v in headers]
    if framing in AMBIGUOUS:
        head += [f"Content-Length: {len(body)}", "Transfer-Encoding: chunked" if framing == "smuggle"
                 else "Transfer-Encoding:\r\n chunked"]
        data = body
    elif framing == "chunked":
        head.append("Transfer-Encoding: chunked")
        data = (f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    elif framing == "short":
        head.append(f"Content-Length: {len(body) + 10}")
        data = body
    else:
        head.append(f"Content-Length: {len(body)}")
        data = body
    raw = "\r\n".join(head).encode("utf-8", "surrogatepass") + b"\r\n\r\n" + data
    return raw, framing != "short"


def exchange(base: str, raw: bytes, timeout=30.0) -> bytes:
    """Send a raw request; everything received until the server closes."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
        except OSError:
            pass
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
    return data


def statuses(answer: bytes, method: str) -> list[int]:
    """The final (non-1xx) statuses of the responses in ``answer``, walked by their Content-Length."""
    out, at = [], 0
    while answer.startswith(b"HTTP/1.1 ", at) and (end := answer.find(b"\r\n\r\n", at)) >= 0:
        lines = answer[at:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next((int(v) for k, _, v in (h.partition(":") for h in lines[1:])
                       if k.strip().lower() == "content-length" and v.strip().isdigit()), 0)
        if status >= 200:
            out.append(status)
        at = end + 4 + (length if status >= 200 and method != "HEAD" else 0)
    return out


def judge(answer: bytes, complete: bool, method: str, framing: str = "length") -> str | None:
    """Why an answer is a finding, or None."""
    if not answer:
        return None if not complete else "connection closed without an answer"
    final = statuses(answer, method)
    answers = len(final)
    if framing in AMBIGUOUS and final != [400]:
        return f"answers {final} to an ambiguous framing (one 400 is due)"
    if answers > (2 if framing == "pipelined" else 1):
        return f"{answers} answers to {'two requests' if framing == 'pipelined' else 'one request'}"
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    if status >= 500 and status != 503:
        return f"status {status}"
    ctype = next((v.strip() for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-type"),
                 "")
    if method != "HEAD" and body and not ctype.startswith(("application/json", "text/html")):
        return f"status {status} with content type {ctype!r}"
    return None


def fuzz_server(base: str, images: list[bytes], seconds: float, findings: list) -> dict:
    """Raw requests for ``seconds``; /health checked after every 20."""
    stats = {"requests": 0, "statuses": {}}
    silent = []
    headers = st.lists(st.tuples(st.sampled_from(["X-A", "Expect", "Content-Length", "Transfer-Encoding", "Range"]),
                                 st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)),
                       max_size=2)

    @settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(["GET", "POST", "POST", "POST", "PUT", "HEAD", "OPTIONS", "BREW"]), st.sampled_from(PATHS),
           st.sampled_from(TYPES), bodies(images),
           st.sampled_from(["length", "length", "chunked", "short", "pipelined", *AMBIGUOUS]), headers,
           st.integers(0, 9))
    def case(method, path, ctype, body, framing, extra, dice):
        raw, complete = frame(method, path, ctype, body, framing, extra)
        if dice == 0 and len(silent) < 20:  # a client that pipelines and never reads, left open
            host, port = base.removeprefix("http://").split(":")
            silent.append(socket.create_connection((host, int(port)), timeout=5))
            silent[-1].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            silent[-1].sendall(b"GET /docs HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
        answer = exchange(base, raw)
        stats["requests"] += 1
        code = answer.split(b" ", 2)[1].decode("latin-1") if answer else "closed"
        stats["statuses"][code] = stats["statuses"].get(code, 0) + 1
        if (why := judge(answer, complete and not extra, method, framing)) is not None:
            findings.append({"where": "http", "why": why, "request": raw[:300].decode("latin-1")})
        if stats["requests"] % 20 == 0 and b" 200 " not in exchange(base, b"GET /health HTTP/1.1\r\nHost: x\r\n"
                                                                         b"Connection: close\r\n\r\n")[:20]:
            findings.append({"where": "http", "why": "/health did not answer 200"})

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        case()
    for sock in silent:
        sock.close()
    stats["silent_clients"] = len(silent)
    return stats


def fuzz_lambda(bundle: Path, images: list[bytes], seconds: float, findings: list) -> dict:
    """Events of any shape for ``lambda_handler``, in this process, for ``seconds``."""
    import os

    os.environ["RUNTIME_MODEL"] = str(bundle)
    from runtime.package.lambda_function import lambda_handler

    stats = {"events": 0, "statuses": {}}
    events = st.one_of(payloads(images), st.fixed_dictionaries(
        {"body": bodies(images).map(lambda b: b.decode("latin-1")) | json_values, "isBase64Encoded": json_values}),
        json_values)

    @settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(events)
    def case(event):
        stats["events"] += 1
        try:
            result = lambda_handler(event, None)
            json.dumps(result, allow_nan=False)
            status = result.get("statusCode", 200)
        except Exception as e:  # every exception is a finding
            findings.append({"where": "lambda", "why": f"raised {type(e).__name__}: {e}", "event": repr(event)[:300]})
            return
        stats["statuses"][str(status)] = stats["statuses"].get(str(status), 0) + 1
        if status not in (200, 400):
            findings.append({"where": "lambda", "why": f"status {status}", "event": repr(event)[:300]})

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        case()
    return stats


def parser():
    p = command_parser("python -m benchmarks.stress.fuzz_http", __doc__)
    p.add_argument("bundle", type=Path, help="a converted bundle to serve")
    p.add_argument("--images", type=Path, required=True, help="folder of valid images (the first 5 are used)")
    p.add_argument("--seconds", type=positive_float, default=600,
                   help="fuzzing time in all, split 2:1 between HTTP and Lambda (default 600)")
    p.add_argument("--out", type=Path, help="write fuzz_http.json here")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return one_line_errors(lambda: attack(args), RuntimeToolkitError)


def attack(args) -> int:
    """Run every phase against a fresh server and report."""
    images = [f.read_bytes() for f in list_images(args.images)[:5]]
    if not images:
        raise ImageError(f"no images in {args.images}")
    findings = []
    with tempfile.TemporaryFile() as log_file:
        proc, base = start(args.bundle, 32, "--header-timeout", 2, "--body-timeout", 2, log=log_file)
        try:
            server = fuzz_server(base, images, args.seconds * 2 / 3, findings)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        log_file.seek(0)
        log = log_file.read().decode(errors="replace")
    if "Traceback" in log:
        findings.append({"where": "http", "why": "traceback in the server log", "log": log[-2000:]})
    handler = fuzz_lambda(args.bundle, images, args.seconds / 3, findings)
    result = {"seconds": args.seconds, "server": server, "lambda": handler, "findings": findings}
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "fuzz_http.json").write_text(text + "\n")
    print(text if findings else json.dumps({k: v for k, v in result.items() if k != "findings"}, indent=2))
    print(f"{server['requests']} HTTP requests, {handler['events']} Lambda events in {args.seconds:g} s: "
          f"{len(findings)} findings", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
