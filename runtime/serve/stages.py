"""The stages of a request's work on the server, each bounded: admission, URL fetches, decoding, inference.

A request whose body has arrived is admitted while fewer than ``max_inflight`` are, else 503 at
once. URL fetches run in their own pool of ``max_fetches`` threads (more at once: 503), decoding in
sandboxed children, inference on one thread: never on the event loop. Each stage must start within
``queue_timeout`` seconds (else 503) and is skipped when the client has gone.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from starlette.requests import Request

from runtime.net.fetch import FetchPolicy
from runtime.serve.payload import image_bytes
from runtime.serve.sandbox import Sandbox, SandboxLimits


@dataclass(frozen=True)
class ServerLimits:
    """Body cap, admitted requests, concurrent URL fetches, seconds to start a stage, decoding children."""

    max_body: int = 6 * 1024 * 1024
    max_inflight: int = 32
    max_fetches: int = 8
    queue_timeout: float = 30.0
    sandbox: SandboxLimits = SandboxLimits()


DEFAULT_SERVER_LIMITS = ServerLimits()


class HttpError(Exception):
    """An error answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


class Slots:
    """At most ``limit`` holders at once; one more gets 503 with ``busy`` at once, never a wait."""

    def __init__(self, limit: int, busy: str):
        self.limit, self.busy, self.held = limit, busy, 0

    @contextmanager
    def hold(self):
        """Hold one slot for the block, or raise the 503."""
        if self.held >= self.limit:
            raise HttpError(503, self.busy)
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1


class Stages:
    """Where a request's work runs, each stage bounded in concurrency and in time to start."""

    def __init__(self, limits: ServerLimits):
        self.limits = limits
        self.inflight = Slots(limits.max_inflight, "over capacity, retry later")
        self.fetching = Slots(limits.max_fetches, "too many URL fetches in progress, retry later")
        self.sandbox = Sandbox(limits.sandbox)
        self.decode = ThreadPoolExecutor(limits.sandbox.workers, thread_name_prefix="decode")
        self.fetch = ThreadPoolExecutor(limits.max_fetches, thread_name_prefix="fetch")
        self.model = ThreadPoolExecutor(1, thread_name_prefix="infer")

    async def run(self, request: Request, pool: ThreadPoolExecutor, fn, *args):
        """``fn(*args)`` in ``pool``, unless the client has gone; 503 when it cannot start in time."""
        if await request.is_disconnected():
            raise ClientGone()
        future = pool.submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.limits.queue_timeout)
        except TimeoutError:
            future.cancel()
            raise HttpError(503, f"busy: not started within {self.limits.queue_timeout:g} s, retry later") from None

    async def image(self, request: Request, payload, policy: FetchPolicy) -> bytes:
        """The image bytes of a JSON payload; a URL is fetched in the fetch pool while a slot is free."""
        if not (isinstance(payload, dict) and payload.get("url")):
            return image_bytes(payload)
        with self.fetching.hold():
            return await self.run(request, self.fetch, image_bytes, payload, policy)
