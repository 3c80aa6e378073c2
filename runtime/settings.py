"""The runtime's environment settings, read once where a program starts (CLI, server, Lambda handler)."""

import os
from dataclasses import dataclass, field

from runtime.errors import ConfigError
from runtime.preprocessing import DecodeLimits


def is_url(text: str) -> bool:
    """Whether an input names a URL (fetched by runtime/net/fetch.py) rather than a file; here, so callers ask
    without importing the network code."""
    return "://" in text


@dataclass(frozen=True)
class FetchPolicy:
    """What a URL fetch may do (runtime/net/fetch.py); cloud metadata addresses are refused whatever
    ``allow_private`` says."""

    allow_private: bool = False
    max_bytes: int = 10 * 1024 * 1024
    deadline: float = 10.0
    max_redirects: int = 3


@dataclass(frozen=True)
class Settings:
    """Limits on decoding and on fetching URLs."""

    limits: DecodeLimits = field(default_factory=DecodeLimits)
    fetch: FetchPolicy = field(default_factory=FetchPolicy)


def _count(env, name: str, default: int) -> int:
    """A positive integer variable, or its default when unset."""
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{name}={text!r} is not a positive whole number")
    return int(text)


def from_env(env=None) -> Settings:
    """Settings from ``RUNTIME_MAX_PIXELS``, ``RUNTIME_MAX_JPEG_SCANS`` and ``RUNTIME_ALLOW_PRIVATE_URLS``."""
    env = os.environ if env is None else env
    base = DecodeLimits()
    limits = DecodeLimits(max_bytes=base.max_bytes, max_pixels=_count(env, "RUNTIME_MAX_PIXELS", base.max_pixels),
                          max_jpeg_scans=_count(env, "RUNTIME_MAX_JPEG_SCANS", base.max_jpeg_scans))
    private = env.get("RUNTIME_ALLOW_PRIVATE_URLS", "0").strip()
    if private not in ("", "0", "1"):
        raise ConfigError(f"RUNTIME_ALLOW_PRIVATE_URLS={private!r}: 1 allows private addresses, 0 or unset not")
    return Settings(limits, FetchPolicy(allow_private=private == "1"))
