"""JSON payloads shared by the Lambda handler and the server: ``{"url": ...}`` or ``{"image": base64}``."""

import base64
import binascii

from runtime.errors import ImageError
from runtime.fetch import DEFAULT_POLICY, FetchPolicy, fetch


def image_bytes(payload, policy: FetchPolicy = DEFAULT_POLICY) -> bytes:
    """The image of a payload: fetched from ``url`` under ``policy`` or decoded from base64 ``image``."""
    if not isinstance(payload, dict):
        raise ImageError('expected a JSON object with "url" or "image" (base64)')
    if payload.get("url"):
        if not isinstance(payload["url"], str):
            raise ImageError("'url' must be a string")
        return fetch(payload["url"], policy)
    if payload.get("image"):
        try:
            return base64.b64decode(payload["image"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise ImageError("'image' is not valid base64") from None
    raise ImageError('expected a JSON object with "url" or "image" (base64)')


def class_logits(classes, prediction) -> dict[str, float]:
    """``{class: logit}`` of one prediction, as the course's Lambda function returned."""
    return dict(zip(classes, prediction.logits, strict=True))
