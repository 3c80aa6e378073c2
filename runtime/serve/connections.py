"""uvicorn's h11 protocol with the deadlines trusted servers keep: nginx's header and body timeouts.

Each connection is in one phase: ``headers`` (bytes of a request head are due), ``body`` (the rest
of a body is due), ``app`` (the app is answering) or ``idle`` (kept alive; uvicorn closes it after
its keep-alive timeout). A head late past ``header_timeout`` gets 408 and the connection is closed;
a body late past ``body_timeout`` closes the connection (the app sees the client gone); a response the
client does not read within ``send_timeout`` (nginx's ``send_timeout``) closes it too. Past
``max_connections``, the connection stalled longest in headers, body, idle or a blocked write is closed
to make room, so stalled clients never lock out a new one.

Each request head is checked before h11 parses it, however it arrived: at most MAX_HEAD bytes and
MAX_HEADER_LINES lines (431 otherwise), and no ambiguous framing (RFC 9112 section 6.1: Content-Length
with Transfer-Encoding, several Content-Lengths, a folded header line: 400). Either answer closes the
connection, so nothing pipelined behind it is read. Errors uvicorn answers itself (a malformed request)
are JSON like the app's.
"""

import json
import resource
import time
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

WAITING = ("headers", "body", "idle")
MAX_HEAD = 16 * 1024  # bytes of one request head, request line included (nginx: 4 buffers of 8 KB)
MAX_HEADER_LINES = 100  # Apache's LimitRequestFields
FRAMING = (b"content-length", b"transfer-encoding")


@dataclass(frozen=True)
class ConnectionLimits:
    """Seconds for a request head and for a body, and the open connections held at most."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000
    send_timeout: float = 10.0


def raw_error(transport, status: int, reason: str, message: str):
    """Write a whole JSON error response and close the connection."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode()
    if not transport.is_closing():
        transport.write(head + body)
        transport.close()


def head_problem(buffered: bytes) -> tuple[int, str] | None:
    """(status, why) when the request head at the start of ``buffered`` is too large or frames its body
    ambiguously; None when it is fine or not complete yet (and not yet too large)."""
    end = buffered.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
    if end < 0:
        return (431, f"request head over {MAX_HEAD} bytes") if len(buffered) > MAX_HEAD else None
    lines = buffered[:end].split(b"\r\n")
    if len(lines) > MAX_HEADER_LINES + 1:
        return 431, f"request head of {len(lines) - 1} header lines; at most {MAX_HEADER_LINES}"
    names = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            return 400, "a folded header line (obsolete line folding is refused)"
        names.append(line.split(b":", 1)[0].strip().lower())
    counts = [names.count(n) for n in FRAMING]
    if all(counts):
        return 400, "both Content-Length and Transfer-Encoding: ambiguous framing"
    if counts[0] > 1:
        return 400, "several Content-Length headers: ambiguous framing"
    return None


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

    def handle_events(self):
        """Check a request head h11 is about to parse (a new one, or one pipelined behind the last)."""
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            problem = head_problem(self.conn.trailing_data[0])
            if problem:
                status, why = problem
                reason = "Bad Request" if status == 400 else "Request Header Fields Too Large"
                raw_error(self.transport, status, reason, f"malformed HTTP request: {why}")
                return
        super().handle_events()

    def pause_writing(self):
        """The client stopped reading: its response must drain within ``send_timeout``."""
        super().pause_writing()
        self.blocked_since = time.monotonic()
        self.send_timer = self.loop.call_later(self.limits.send_timeout, self.send_expired)

    def resume_writing(self):
        super().resume_writing()
        self.unblock()

    def unblock(self):
        """The write drained (or the connection went): no send deadline."""
        if getattr(self, "send_timer", None) is not None:
            self.send_timer.cancel()
        self.send_timer, self.blocked_since = None, None

    def send_expired(self):
        """The response did not drain in time: drop the connection and what it had buffered."""
        self.send_timer = None
        self.logger.info("%s: response not read within %g s, closed", self.client, self.limits.send_timeout)
        self.transport.abort()

    def stalled_since(self) -> float | None:
        """Since when this connection waits on its client (a head, a body, idle, a blocked write), or None."""
        if getattr(self, "blocked_since", None) is not None:
            return self.blocked_since
        return self.since if self.phase in WAITING else None

    def on_response_complete(self):
        super().on_response_complete()
        self.follow(waiting="idle")

    def connection_lost(self, exc):
        self.enter(None)
        self.unblock()
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
        waiting = [c for c in self.connections if c is not self and isinstance(c, GuardedH11)
                   and c.stalled_since() is not None]
        if waiting:
            min(waiting, key=lambda c: c.stalled_since()).transport.abort()
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
