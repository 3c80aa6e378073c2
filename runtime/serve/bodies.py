"""Reading request bodies on the server: capped, typed by media type, JSON kept small."""

import json

from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from runtime.serve.stages import ClientGone, HttpError


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as its Content-Length or its bytes pass ``limit``."""
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        raise HttpError(400, "bad Content-Length")
    if length is not None and int(length) > limit:
        raise HttpError(413, f"body over {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise HttpError(413, f"body over {limit} bytes")
    except ClientDisconnect:
        raise ClientGone() from None
    return bytes(body)


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_json(body: bytes):
    """JSON of a request body, or a 400. A payload is one small object: more than 64 keys or nested
    values are refused before parsing, which would hold the GIL for as long as they take."""
    if body.count(b":") > 64 or body.count(b"{") + body.count(b"[") > 64:
        raise HttpError(400, 'JSON body too complex: expected {"url": ...} or {"image": ...}')
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise HttpError(400, "body is not valid JSON") from None


async def multipart_file(request: Request, body: bytes) -> bytes:
    """The ``file`` part of a multipart/form-data body."""
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
