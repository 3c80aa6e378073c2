"""``python -m runtime.serve``: FastAPI under uvicorn, with the Lambda emulator's invocation path.

Bodies are capped (6 MB, Lambda's synchronous payload limit), requests beyond the in-flight
limit get 503 at once, inference runs one at a time in a worker thread, errors are JSON.
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import time

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from runtime.apidocs import docs_page
from runtime.classifier import Classifier
from runtime.cli import add_model_args, command_parser, error, model_overrides, positive_int
from runtime.errors import FetchError, ImageError, ModelError, RuntimeToolkitError
from runtime.payload import class_logits, image_bytes

log = logging.getLogger("runtime.serve")

MAX_BODY = 6 * 1024 * 1024
LAMBDA_PATH = "/2015-03-31/functions/function/invocations"
STATUS = {ImageError: 400, FetchError: 400, ModelError: 500}


class TopEntry(BaseModel):
    label: str
    score: float


class PredictResponse(BaseModel):
    label: str
    score: float
    top: list[TopEntry]
    logits: list[float]


class Health(BaseModel):
    status: str
    model: str
    backend: str
    provider: str
    classes: list[str]


class HttpError(Exception):
    """An error answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
    "application/json": {"schema": {"type": "object", "properties": {
        "url": {"type": "string"}, "image": {"type": "string", "description": "base64"}}}}}}}
ERRORS = {code: {"description": text, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}
    for code, text in ((400, "bad input"), (413, "body too large"), (503, "over capacity"))}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HttpError(413, f"body over {limit} bytes")
    return bytes(body)


async def parse_image(request: Request, body: bytes) -> bytes:
    """The image of a /predict request: multipart ``file``, JSON url/base64, or the raw body."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        async def once():
            yield body

        try:
            form = await MultiPartParser(request.headers, once(), max_files=1, max_fields=4).parse()
        except MultiPartException as e:
            raise HttpError(400, f"bad multipart body: {e.message}") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HttpError(400, "multipart body needs a 'file' part")
        return await upload.read()
    if ctype.startswith("application/json"):
        return await run_in_threadpool(image_bytes, parse_json(body))
    return body


def parse_json(body: bytes):
    """JSON of a request body, or a 400."""
    try:
        return json.loads(body)
    except ValueError:
        raise HttpError(400, "body is not valid JSON") from None


def create_app(clf: Classifier, max_body=MAX_BODY, max_inflight=32) -> FastAPI:
    """The app around one loaded classifier."""
    app = FastAPI(title="edge-classifier", version="1", description=__doc__, docs_url=None, redoc_url=None)
    lock, state = asyncio.Lock(), {"inflight": 0}

    @app.exception_handler(HTTPException)
    async def starlette_error(request, e: HTTPException):
        return JSONResponse({"error": str(e.detail)}, e.status_code, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, 422)

    @app.exception_handler(HttpError)
    async def http_error(request, e: HttpError):
        return JSONResponse({"error": str(e)}, e.status)

    @app.exception_handler(RuntimeToolkitError)
    async def toolkit_error(request, e: RuntimeToolkitError):
        return JSONResponse({"error": str(e)}, STATUS.get(type(e), 400))

    @app.middleware("http")
    async def limits(request: Request, call_next):
        length = request.headers.get("content-length", "0")
        if not length.isdigit():
            return JSONResponse({"error": "bad Content-Length"}, 400)
        if int(length) > max_body:
            return JSONResponse({"error": f"body over {max_body} bytes"}, 413)
        if state["inflight"] >= max_inflight:
            return JSONResponse({"error": "over capacity, retry later"}, 503, headers={"Retry-After": "1"})
        state["inflight"] += 1
        try:
            return await call_next(request)
        finally:
            state["inflight"] -= 1

    @app.middleware("http")  # added last, so outermost: it also logs the 413s and 503s above
    async def access_log(request: Request, call_next):
        t = time.perf_counter()
        response = await call_next(request)
        log.info("%s %s %d %.1f ms", request.method, request.url.path, response.status_code,
                 1000 * (time.perf_counter() - t))
        return response

    async def infer(fn, *args):
        async with lock:
            return await run_in_threadpool(fn, *args)

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return HTMLResponse(docs_page(app.openapi()))

    @app.get("/health", response_model=Health)
    async def health():
        return Health(status="ok", model=clf.file, backend=clf.runner.backend, provider=clf.runner.provider,
                      classes=clf.info.classes)

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS, openapi_extra=IMAGE_BODY)
    async def predict(request: Request, top_k: int = 3):
        image = await parse_image(request, await read_body(request, max_body))
        return (await infer(clf.predict, [image], max(1, min(top_k, len(clf.info.classes)))))[0]

    @app.post(LAMBDA_PATH, responses=ERRORS, openapi_extra={"requestBody": IMAGE_BODY["requestBody"] | {
        "content": {"application/json": IMAGE_BODY["requestBody"]["content"]["application/json"]}}})
    async def invoke(request: Request) -> dict[str, float]:
        payload = parse_json(await read_body(request, max_body))
        image = await run_in_threadpool(image_bytes, payload)
        return await infer(class_logits, clf, image)

    return app


def parser():
    p = command_parser("python -m runtime.serve", __doc__)
    add_model_args(p, "model file or bundle (default: $RUNTIME_MODEL, else artifacts/default)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, this machine only; 0.0.0.0 in a container)")
    p.add_argument("--port", type=port, default=os.environ.get("PORT", "8080"), help="default $PORT, else 8080")
    p.add_argument("--threads", type=positive_int, help="inference threads (default: the CPUs this process may use)")
    p.add_argument("--max-inflight", type=positive_int, default=32,
                   help="requests held at once; more get 503 (default 32)")
    return p


def port(text: str) -> int:
    """An argparse type: a TCP port, 0-65535 (0: any free port)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return int(text)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        clf = Classifier.load(args.model, threads=args.threads, overrides=model_overrides(args))
    except RuntimeToolkitError as e:
        return error(str(e))
    r = clf.runner
    log.info("model %s (%s %s, %s on %s, %d threads), %d classes", clf.file, r.metadata.get("format", "?"),
             r.metadata.get("precision", "?"), r.backend, r.provider, r.threads, len(clf.info.classes))
    log.info("serving on http://%s:%d (docs at /docs, health at /health)", args.host, args.port)
    uvicorn.run(create_app(clf, max_inflight=args.max_inflight), host=args.host, port=args.port,
                timeout_graceful_shutdown=10, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
