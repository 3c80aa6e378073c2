"""``python -m runtime.serve``: FastAPI under uvicorn, with the Lambda emulator's invocation path.

What each request may cost is bounded: its head and body arrive within deadlines (connections.py),
bodies are capped (6 MB, Lambda's synchronous payload limit), and its work runs in bounded stages
off the event loop (stages.py), so /health always answers. Every answer, errors included, is JSON.
"""

import argparse
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from runtime.classifier import Classifier
from runtime.cli import (
    add_model_args,
    add_thread_args,
    add_url_args,
    command_parser,
    error,
    load_model,
    positive_float,
    positive_int,
)
from runtime.errors import BackendUnavailable, ConfigError, ModelError, RuntimeToolkitError
from runtime.machine import heap
from runtime.net.fetch import DEFAULT_POLICY, FetchPolicy
from runtime.serve.access import AccessLog, error_response, log
from runtime.serve.apidocs import docs_page
from runtime.serve.bodies import media_type, multipart_file, parse_json, read_body
from runtime.serve.payload import class_logits
from runtime.serve.sandbox import SandboxLimits
from runtime.serve.stages import DEFAULT_SERVER_LIMITS, ClientGone, HttpError, ServerLimits, Stages

LAMBDA_PATH = "/2015-03-31/functions/function/invocations"
SERVER_SIDE = (ModelError, BackendUnavailable, ConfigError)


class TopEntry(BaseModel):
    label: str
    score: float


class PredictResponse(BaseModel):
    label: str
    score: float
    top: list[TopEntry]
    logits: list[float]
    model: str
    rechecked: bool


class Health(BaseModel):
    status: str
    model: str
    chosen: str
    backend: str
    provider: str
    classes: list[str]
    cascade: dict | None = None


IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
    "application/json": {"schema": {"type": "object", "properties": {
        "url": {"type": "string"}, "image": {"type": "string", "description": "base64"}}}}}}}
ERRORS = {code: {"description": text, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}
    for code, text in ((400, "bad input"), (413, "body too large"), (500, "model or server failure"),
                       (503, "over capacity"))}


def create_app(clf: Classifier, limits: ServerLimits = DEFAULT_SERVER_LIMITS, policy: FetchPolicy = DEFAULT_POLICY):
    """The app around one loaded classifier (an ASGI app: FastAPI inside the access log)."""
    app = FastAPI(title="edge-classifier", version="1", description=__doc__, docs_url=None, redoc_url=None)
    stages = Stages(limits)

    @app.exception_handler(HTTPException)
    async def starlette_error(request, e: HTTPException):
        return error_response(e.status_code, str(e.detail), headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return error_response(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(HttpError)
    async def http_error(request, e: HttpError):
        return error_response(e.status, str(e), headers={"Retry-After": "1"} if e.status == 503 else None)

    @app.exception_handler(RuntimeToolkitError)
    async def toolkit_error(request, e: RuntimeToolkitError):
        return error_response(500 if isinstance(e, SERVER_SIDE) else 400, str(e))

    @app.exception_handler(ClientGone)
    async def client_gone(request, e: ClientGone):
        return error_response(499, "client closed the connection")

    @app.exception_handler(Exception)
    async def unexpected(request, e: Exception):
        return error_response(500, f"internal error ({type(e).__name__})")

    async def image_of(request: Request, body: bytes) -> bytes:
        """The image of a request: multipart ``file``, JSON url/base64, or the raw body."""
        kind = media_type(request)
        if kind == "multipart/form-data":
            return await multipart_file(request, body)
        if kind == "application/json":
            return await stages.image(request, await stages.run(request, stages.decode, parse_json, body), policy)
        return body

    async def logits(request: Request, image: bytes):
        """Decode in a sandboxed child, then infer on the model thread: one row of logits, and whether a
        cascade's exact file answered it."""
        x = await stages.run(request, stages.decode, stages.sandbox.preprocess, image, clf.info.spec, clf.limits)
        out = await stages.run(request, stages.model, clf.answer, x[None])
        return out.logits[0], bool(out.rechecked[0])

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return HTMLResponse(docs_page(app.openapi()))

    @app.get("/health", response_model=Health)
    async def health():
        cascade = None if clf.exact_file is None else {
            "fast": Path(clf.file).name, "exact": Path(clf.exact_file).name, "margin": clf.runner.margin}
        return Health(status="ok", model=clf.file, chosen=clf.reason, backend=clf.runner.backend,
                      provider=clf.runner.provider, classes=clf.info.classes, cascade=cascade)

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS, openapi_extra=IMAGE_BODY)
    async def predict(request: Request, top_k: int = 3):
        body = await read_body(request, limits.max_body)
        with stages.inflight.hold():
            row, again = await logits(request, await image_of(request, body))
        return PredictResponse(**asdict(clf.prediction(row, max(1, min(top_k, len(clf.info.classes))), again)))

    @app.post(LAMBDA_PATH, responses=ERRORS, openapi_extra={"requestBody": IMAGE_BODY["requestBody"] | {
        "content": {"application/json": IMAGE_BODY["requestBody"]["content"]["application/json"]}}})
    async def invoke(request: Request) -> dict[str, float]:
        body = await read_body(request, limits.max_body)
        with stages.inflight.hold():
            payload = await stages.run(request, stages.decode, parse_json, body)
            row, again = await logits(request, await stages.image(request, payload, policy))
        return class_logits(clf.info.classes, clf.prediction(row, 1, again))

    return AccessLog(app)


def parser():
    p = command_parser("python -m runtime.serve", __doc__)
    add_model_args(p, "model file or bundle (default: $RUNTIME_MODEL, else artifacts/default)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, this machine only; 0.0.0.0 in a container)")
    p.add_argument("--port", type=port, default=os.environ.get("PORT", "8080"), help="default $PORT, else 8080")
    add_thread_args(p)
    add_url_args(p)
    p.add_argument("--max-inflight", type=positive_int, default=32,
                   help="requests past their body held at once; more get 503 (default 32)")
    p.add_argument("--decoders", type=positive_int, default=2,
                   help="child processes decoding images, each killed past --decode-deadline (default 2)")
    p.add_argument("--decode-deadline", type=positive_float, default=2.0,
                   help="seconds one image may take to decode, else 400 (default 2)")
    p.add_argument("--decode-memory", type=positive_int, default=512,
                   help="MB of address space a decoding child may use, else the image is refused (default 512)")
    p.add_argument("--queue-timeout", type=positive_float, default=30.0,
                   help="seconds a request may wait for a decoder or the model before 503 (default 30)")
    p.add_argument("--header-timeout", type=positive_float, default=10.0,
                   help="seconds for a request head to arrive, else 408 (default 10)")
    p.add_argument("--body-timeout", type=positive_float, default=30.0,
                   help="seconds for a request body to arrive after its head, else closed (default 30)")
    p.add_argument("--send-timeout", type=positive_float, default=10.0,
                   help="seconds a response may wait on a client that does not read it, else closed (default 10)")
    p.add_argument("--idle-timeout", type=positive_float, default=5.0,
                   help="seconds an idle kept-alive connection stays open (default 5)")
    p.add_argument("--max-connections", type=positive_int, default=1000,
                   help="open connections; past it the one stalled longest is closed (default 1000, "
                        "less where the open-file limit is lower)")
    return p


def port(text: str) -> int:
    """An argparse type: a TCP port, 0-65535 (0: any free port)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return int(text)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    import uvicorn

    from runtime.serve.connections import ConnectionLimits, open_files_allowed, protocol_for

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    heap.bound_for_serving()  # before the model's and the server's threads start
    try:
        settings, clf = load_model(args)
    except RuntimeToolkitError as e:
        return error(str(e))
    r = clf.runner
    connections = ConnectionLimits(args.header_timeout, args.body_timeout,
                                   max(8, min(args.max_connections, open_files_allowed() - 64)), args.send_timeout)
    log.info("model %s (%s %s, %s on %s, %d threads), %d classes", clf.name, r.metadata.get("format", "?"),
             clf.precision, r.backend, r.provider, r.threads, len(clf.info.classes))
    log.info("chosen: %s", clf.reason)
    log.info("serving on http://%s:%d (docs at /docs, health at /health)", args.host, args.port)
    limits = ServerLimits(max_inflight=args.max_inflight, queue_timeout=args.queue_timeout,
                          sandbox=SandboxLimits(args.decoders, args.decode_deadline, args.decode_memory << 20))
    uvicorn.run(create_app(clf, limits, settings.fetch), host=args.host, port=args.port, http=protocol_for(connections),
                timeout_keep_alive=args.idle_timeout, timeout_graceful_shutdown=10, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
