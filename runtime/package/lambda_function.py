"""AWS Lambda entry point, as in the course: ``{"url": ...}`` in, ``{class: logit}`` out.

Also takes ``{"image": <base64>}`` and API Gateway proxy events (body JSON or a base64 image),
answering those with ``statusCode``/``body``. A direct event that fails gets ``{"error", "statusCode"}``
(400 for the input, 500 for the model or the settings) instead of raising. The model comes from
``$RUNTIME_MODEL``; settings are read from the environment once per container; threads follow the
"lambda" profile unless ``$RUNTIME_PROFILE`` names another (runtime/machine/threads.py).
"""

import base64
import binascii
import json
import logging
import os

from runtime.classifier import Classifier
from runtime.errors import BackendUnavailable, ConfigError, ImageError, ModelError, RuntimeToolkitError
from runtime.serve.payload import b64_bytes, class_logits, image_bytes
from runtime.settings import Settings, from_env

log = logging.getLogger("runtime.lambda")
SERVER_SIDE = (ModelError, BackendUnavailable, ConfigError)
_model = None


def model() -> tuple[Classifier, Settings]:
    """The classifier and the settings, loaded once per container (outside the per-request path)."""
    global _model
    if _model is None:
        settings = from_env()
        how = os.environ.get("RUNTIME_PROFILE") or "lambda"
        _model = Classifier.load(limits=settings.limits, profile=how), settings
    return _model


def _proxy_payload(event: dict) -> dict:
    """The payload of an API Gateway proxy event: a JSON body or a raw (base64) image."""
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise ImageError(f"'body' must be a string (JSON or base64), not {type(body).__name__}")
    flag = event.get("isBase64Encoded", False)
    if isinstance(flag, str) and flag.lower() in ("true", "false"):
        flag = flag.lower() == "true"  # some gateways and test tools send the flag as a string
    if not isinstance(flag, bool) and flag is not None:
        raise ImageError(f"'isBase64Encoded' must be true or false, not {flag!r:.40}")
    if not flag:
        raw = body.encode("utf-8", "surrogatepass")
    else:
        try:
            raw = b64_bytes(body)
        except (binascii.Error, ValueError):
            raise ImageError("the body is marked base64 but is not valid base64") from None
    try:
        payload = json.loads(raw)
        if isinstance(payload, dict):
            return payload
    except (UnicodeError, ValueError, RecursionError):
        pass
    return {"image": base64.b64encode(raw).decode()}


def _response(status: int, body: dict) -> dict:
    """An API Gateway proxy response with a JSON body."""
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def _answer(event, proxy: bool) -> tuple[int, dict]:
    """(status, body) for one event; every failure becomes a status and an error message."""
    try:
        clf, settings = model()
        image = image_bytes(_proxy_payload(event) if proxy else event, settings.fetch)
        return 200, class_logits(clf.info.classes, clf.predict([image], top_k=1)[0])
    except SERVER_SIDE as e:
        return 500, {"error": str(e)}
    except RuntimeToolkitError as e:
        return 400, {"error": str(e)}
    except Exception as e:  # a bug: logged once with its traceback, answered like any other failure
        log.exception("unexpected error")
        return 500, {"error": f"internal error ({type(e).__name__})"}


def lambda_handler(event, context):
    """Direct events return the course's dict (or an error object); proxy events return HTTP responses."""
    proxy = isinstance(event, dict) and "body" in event
    status, body = _answer(event, proxy)
    if proxy:
        return _response(status, body)
    return body if status == 200 else {**body, "statusCode": status}
