"""AWS Lambda entry point, as in the course: ``{"url": ...}`` in, ``{class: logit}`` out.

Also takes ``{"image": <base64>}`` and API Gateway proxy events (body JSON or a base64 image),
answering those with ``statusCode``/``body``. The model comes from ``$RUNTIME_MODEL``.
"""

import base64
import binascii
import json

from runtime.classifier import Classifier
from runtime.errors import ImageError, RuntimeToolkitError
from runtime.payload import class_logits, image_bytes

_model = None


def model() -> Classifier:
    """The classifier, loaded once per container (outside the per-request path)."""
    global _model
    if _model is None:
        _model = Classifier.load()
    return _model


def _proxy_payload(event: dict) -> dict:
    """The payload of an API Gateway proxy event: a JSON body or a raw (base64) image."""
    body = event.get("body") or ""
    try:
        raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body.encode()
    except (binascii.Error, ValueError):
        raise ImageError("the body is marked base64 but is not valid base64") from None
    try:
        payload = json.loads(raw)
        if isinstance(payload, dict):
            return payload
    except (UnicodeDecodeError, ValueError):
        pass
    return {"image": base64.b64encode(raw).decode()}


def _response(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def lambda_handler(event, context):
    """Direct events return the course's dict (errors raise); proxy events return HTTP responses."""
    if "body" not in event:
        return class_logits(model(), image_bytes(event))
    try:
        return _response(200, class_logits(model(), image_bytes(_proxy_payload(event))))
    except RuntimeToolkitError as e:
        return _response(400, {"error": str(e)})
