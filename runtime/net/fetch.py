"""Fetch an image over http(s) safely: checked addresses (every hop), one deadline, a byte cap.

The connection goes to the address that was checked, not to a second DNS answer, so a
rebinding name cannot slip a private address past the check. One wall-clock deadline covers
name resolution, connect, TLS, status line, headers and body of every hop. Every byte read from the
remote counts, framing included (status lines, headers, interim ``100 Continue`` responses, chunk-size
lines): at most the body cap plus HEAD_BYTES, and at most MAX_LINES lines, so a fast hostile remote
(endless one-byte chunks, endless interim responses) is refused after little work, not at the deadline.
"""

import http.client
import socket
import ssl
import threading
import time
from urllib.parse import urljoin, urlsplit

from runtime.errors import FetchError
from runtime.net.netaddr import is_metadata, is_public
from runtime.settings import FetchPolicy

REDIRECTS = (301, 302, 303, 307, 308)
HEAD_BYTES = 256 * 1024  # framing beyond the body: heads, interim responses, chunk-size lines
MAX_LINES = 10_000  # header, interim-response and chunk-size lines of one response (a chunked 10 MB image: ~1,000)


DEFAULT_POLICY = FetchPolicy()


class _Clock:
    """Seconds left before a deadline; raises FetchError once it has passed."""

    def __init__(self, seconds: float, url: str):
        self.end, self.url = time.monotonic() + seconds, url

    def left(self) -> float:
        """Seconds left, or FetchError once there are none."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise FetchError(f"timed out fetching {self.url[:80]}")
        return left


class _Metered:
    """A response's byte stream that counts every byte and line read from it against the fetch's caps."""

    def __init__(self, fp, limit: int, url: str):
        self.fp, self.limit, self.url = fp, limit, url
        self.total = self.lines = 0

    def _count(self, n: int, lines: int = 0):
        self.total, self.lines = self.total + n, self.lines + lines
        if self.total > self.limit:
            raise FetchError(f"refused: {self.url[:80]} sent over {self.limit} bytes, framing included")
        if self.lines > MAX_LINES:
            raise FetchError(f"refused: {self.url[:80]} sent over {MAX_LINES} header, interim or chunk lines")

    def readline(self, *args):
        line = self.fp.readline(*args)
        self._count(len(line), 1)
        return line

    def read(self, *args):
        data = self.fp.read(*args)
        self._count(len(data))
        return data

    def read1(self, *args):
        data = self.fp.read1(*args)
        self._count(len(data))
        return data

    def readinto(self, buffer):
        n = self.fp.readinto(buffer)
        self._count(n or 0)
        return n

    def __getattr__(self, name):
        """Everything that reads nothing (peek, flush, close, closed) as the stream has it."""
        return getattr(self.fp, name)


class _MeteredResponse(http.client.HTTPResponse):
    """http.client's response reading through ``_Metered`` (``limit`` and ``url`` are set per request)."""

    limit, url = 0, ""

    def __init__(self, sock, *args, **kwargs):
        super().__init__(sock, *args, **kwargs)
        self.fp = _Metered(self.fp, self.limit, self.url)


def resolve(host: str, port: int, policy: FetchPolicy, clock: _Clock) -> str:
    """The first address of ``host``, within the deadline, after checking every address it resolves to."""
    answer = {}

    def lookup():
        try:
            answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            answer["error"] = e

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(clock.left())
    if worker.is_alive():
        raise FetchError(f"timed out resolving {host[:80]}")
    if "error" in answer:
        raise FetchError(f"cannot resolve {host[:80]}: {answer['error']}")
    addrs = [info[4][0] for info in answer["infos"]]
    for ip in addrs:
        if is_metadata(ip):
            raise FetchError(f"refused: {host[:80]} resolves to cloud metadata address {ip}")
        if not policy.allow_private and not is_public(ip):
            raise FetchError(f"refused: {host[:80]} resolves to non-public address {ip} "
                             "(set RUNTIME_ALLOW_PRIVATE_URLS=1 to allow private addresses)")
    return addrs[0]


class _Pinned(http.client.HTTPSConnection):
    """An HTTP(S) connection to a fixed, already checked IP, keeping Host and TLS SNI of the name."""

    def __init__(self, host, port, ip, tls: bool, clock: _Clock):
        super().__init__(host, port, timeout=clock.left(), context=ssl.create_default_context())
        self.ip, self.tls, self.clock = ip, tls, clock

    def connect(self):
        """TCP to the checked address, then TLS with the name's SNI, each within the deadline."""
        self.sock = socket.create_connection((self.ip, self.port), timeout=self.clock.left())
        if self.tls:
            self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host,
                                                  do_handshake_on_connect=False)
            self.sock.settimeout(self.clock.left())
            self.sock.do_handshake()

    def abort(self):
        """Called by the watchdog at the deadline: unblock whatever read or write is waiting."""
        try:
            if self.sock is not None:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _target(url: str) -> tuple[str, int, bool, str]:
    """(host, port, tls, path?query) of an http(s) URL, or FetchError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise FetchError(f"refused: malformed URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"refused: only http and https URLs ({url[:80]!r})")
    tls = parts.scheme == "https"
    return parts.hostname, port or (443 if tls else 80), tls, (parts.path or "/") + (
        f"?{parts.query}" if parts.query else "")


def _get(url: str, policy: FetchPolicy, clock: _Clock):
    """One request; returns (status, location, body) with the body capped at ``policy.max_bytes``."""
    host, port, tls, path = _target(url)
    conn = _Pinned(host, port, resolve(host, port, policy, clock), tls, clock)
    conn.response_class = type("Response", (_MeteredResponse,), {"limit": policy.max_bytes + HEAD_BYTES, "url": url})
    watchdog = threading.Timer(clock.left(), conn.abort)
    watchdog.start()
    too_big = FetchError(f"refused: {url[:80]} is over {policy.max_bytes} bytes")
    try:
        conn.request("GET", path, headers={"User-Agent": "edge-classifier", "Accept": "image/*"})
        resp = conn.getresponse()
        if (resp.length or 0) > policy.max_bytes:
            raise too_big
        body = bytearray()
        while chunk := resp.read1(65536):
            body += chunk
            if len(body) > policy.max_bytes:
                raise too_big
            clock.left()
        clock.left()
        if resp.length:
            raise FetchError(f"cannot fetch {url[:80]}: the body ended {resp.length} bytes early")
        return resp.status, resp.getheader("Location"), bytes(body)
    except (OSError, ValueError, http.client.HTTPException) as e:
        clock.left()
        raise FetchError(f"cannot fetch {url[:80]}: {e or type(e).__name__}") from None
    finally:
        watchdog.cancel()
        conn.close()


def fetch(url: str, policy: FetchPolicy = DEFAULT_POLICY) -> bytes:
    """The body of ``url``, following up to ``policy.max_redirects`` redirects, each hop checked anew."""
    clock = _Clock(policy.deadline, url)
    for _ in range(policy.max_redirects + 1):
        status, location, body = _get(url, policy, clock)
        if status in REDIRECTS and location:
            url = urljoin(url, location)
            continue
        if status != 200:
            raise FetchError(f"{url[:80]} answered HTTP {status}")
        return body
    raise FetchError(f"too many redirects from {url[:80]}")
