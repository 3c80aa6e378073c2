"""uvicorn's h11 protocol with the deadlines trusted servers keep: nginx's header and body timeouts.

Each connection is in one phase: ``headers`` (bytes of a request head are due), ``body`` (the rest
of a body is due), ``app`` (the app is answering) or ``idle`` (kept alive; uvicorn closes it after
its keep-alive timeout). A head late past ``header_timeout`` gets 408 and the connection is closed;
a body late past ``body_timeout`` closes the connection (the app sees the client gone). Past
``max_connections``, the connection stalled longest in headers, body or idle is closed to make room,
so stalled clients never lock out a new one. Errors uvicorn answers itself (a malformed request) are
JSON like the app's.
"""

import json
import resource
import time
from dataclasses import dataclass

from uvicorn.protocols.http.h11_impl import H11Protocol

WAITING = ("headers", "body", "idle")


@dataclass(frozen=True)
class ConnectionLimits:
    """Seconds for a request head and for a body, and the open connections held at most."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000


def raw_error(transport, status: int, reason: str, message: str):
    """Write a whole JSON error response and close the connection."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode()
    if not transport.is_closing():
        transport.write(head + body)
        transport.close()


class GuardedH11(H11Protocol):
    """An h11 connection that keeps the deadline of its phase and gives way when connections run out."""

    limits = ConnectionLimits()

    def connection_made(self, transport):
        """A new connection waits for a head; past the cap, make room first."""
        super().connection_made(transport)
        self.phase, self.since, self.timer = None, time.monotonic(), None
        self.enter("headers")
        if len(self.connections) > self.limits.max_connections:
            self.make_room()

    def data_received(self, data: bytes):
        super().data_received(data)
        self.follow(waiting="headers")

    def on_response_complete(self):
        super().on_response_complete()
        self.follow(waiting="idle")

    def connection_lost(self, exc):
        self.enter(None)
        super().connection_lost(exc)

    def send_400_response(self, msg: str):
        """uvicorn's answer to malformed HTTP, as JSON."""
        raw_error(self.transport, 400, "Bad Request", f"malformed HTTP request: {msg}")

    def follow(self, waiting: str):
        """Set the phase from the request cycle; ``waiting`` names it when no request is under way."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.enter(waiting)
        else:
            self.enter("body" if cycle.more_body else "app")

    def enter(self, phase: str | None):
        """Start ``phase`` and its deadline, unless already in it (trickled bytes extend nothing)."""
        if phase == self.phase:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.phase, self.since, self.timer = phase, time.monotonic(), None
        timeout = {"headers": self.limits.header_timeout, "body": self.limits.body_timeout}.get(phase)
        if timeout is not None:
            self.timer = self.loop.call_later(timeout, self.expire, phase)

    def expire(self, phase: str):
        """The deadline of ``phase`` passed: answer 408 to a late head, close a late body."""
        self.timer = None
        if phase == "headers":
            raw_error(self.transport, 408, "Request Timeout",
                      f"request head not received within {self.limits.header_timeout:g} s")
        elif not self.transport.is_closing():
            self.logger.info("%s: request body not received within %g s, closed", self.client,
                             self.limits.body_timeout)
            self.transport.close()

    def make_room(self):
        """Over the cap: close the connection stalled longest, or this one when none is stalled."""
        waiting = [c for c in self.connections if c is not self and getattr(c, "phase", None) in WAITING]
        if waiting:
            min(waiting, key=lambda c: c.since).transport.close()
        else:
            raw_error(self.transport, 503, "Service Unavailable", "too many connections, retry later")


def protocol_for(limits: ConnectionLimits) -> type:
    """The protocol class uvicorn should build connections with, for these limits."""
    return type("GuardedH11", (GuardedH11,), {"limits": limits})


def open_files_allowed() -> int:
    """Raise this process's open-file limit to its hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft
