"""JSON payloads shared by the Lambda handler and the server: ``{"url": ...}`` or ``{"image": base64}``."""

import base64
import binascii

from runtime.errors import ImageError
from runtime.net.fetch import DEFAULT_POLICY, FetchPolicy, fetch


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
            return b64_bytes(payload["image"])
        except (binascii.Error, ValueError, TypeError):
            raise ImageError("'image' is not valid base64") from None
    raise ImageError('expected a JSON object with "url" or "image" (base64)')


def b64_bytes(text: str) -> bytes:
    """Strict base64, line breaks and spaces allowed (as ``base64`` and MIME tools wrap it); binascii.Error
    for anything else."""
    if not isinstance(text, str):
        raise TypeError("base64 must be a string")
    return base64.b64decode("".join(text.split()), validate=True)


def class_logits(classes, prediction) -> dict[str, float]:
    """``{class: logit}`` of one prediction, as the course's Lambda function returned."""
    return dict(zip(classes, prediction.logits, strict=True))
