"""Fetch an image over http(s) safely: checked addresses (every hop), timeouts, a deadline, a byte cap.

The connection goes to the address that was checked, not to a second DNS answer, so a
rebinding name cannot slip a private address past the check.
"""

import http.client
import ipaddress
import os
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit

from runtime.errors import FetchError

MAX_BYTES = 10 * 1024 * 1024
CONNECT_TIMEOUT, READ_TIMEOUT, DEADLINE = 3.0, 5.0, 10.0
MAX_REDIRECTS = 3


def private_allowed() -> bool:
    """``RUNTIME_ALLOW_PRIVATE_URLS=1`` lifts the address check (tests, private networks)."""
    return os.environ.get("RUNTIME_ALLOW_PRIVATE_URLS") == "1"


def is_public(ip: str) -> bool:
    """False for loopback, private, link-local, unique-local, multicast, reserved and unspecified."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and (addr.ipv4_mapped or addr.sixtofour):
        addr = addr.ipv4_mapped or addr.sixtofour
    return addr.is_global and not addr.is_multicast


def resolve(host: str, port: int) -> str:
    """The first address of ``host``, after checking that every address it resolves to is public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise FetchError(f"cannot resolve {host}: {e}") from None
    addrs = [info[4][0] for info in infos]
    if not private_allowed():
        for ip in addrs:
            if not is_public(ip):
                raise FetchError(f"refused: {host} resolves to non-public address {ip} "
                                 "(set RUNTIME_ALLOW_PRIVATE_URLS=1 to allow private addresses)")
    return addrs[0]


class _Pinned(http.client.HTTPSConnection):
    """An HTTP(S) connection to a fixed, already checked IP, keeping Host and TLS SNI of the name."""

    def __init__(self, host, port, ip, tls: bool, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.ip, self.tls = ip, tls

    def connect(self):
        sock = socket.create_connection((self.ip, self.port), timeout=CONNECT_TIMEOUT)
        sock.settimeout(self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host) if self.tls else sock


def _get(url: str, deadline: float):
    """One request; returns (status, location, body) with the body capped at MAX_BYTES."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"refused: only http and https URLs ({url[:80]})")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    conn = _Pinned(parts.hostname, port, resolve(parts.hostname, port), tls, READ_TIMEOUT)
    try:
        conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                     headers={"User-Agent": "edge-classifier", "Accept": "image/*"})
        resp = conn.getresponse()
        if int(resp.getheader("Content-Length") or 0) > MAX_BYTES:
            raise FetchError(f"refused: {url[:80]} is over {MAX_BYTES} bytes")
        body = bytearray()
        while chunk := resp.read1(65536):
            body += chunk
            if len(body) > MAX_BYTES:
                raise FetchError(f"refused: {url[:80]} is over {MAX_BYTES} bytes")
            if time.monotonic() > deadline:
                raise FetchError(f"timed out fetching {url[:80]}")
        return resp.status, resp.getheader("Location"), bytes(body)
    except (OSError, http.client.HTTPException) as e:
        raise FetchError(f"cannot fetch {url[:80]}: {e or type(e).__name__}") from None
    finally:
        conn.close()


def fetch(url: str) -> bytes:
    """The body of ``url``, following up to MAX_REDIRECTS redirects, each hop checked anew."""
    deadline = time.monotonic() + DEADLINE
    for _ in range(MAX_REDIRECTS + 1):
        status, location, body = _get(url, deadline)
        if status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        if status != 200:
            raise FetchError(f"{url[:80]} answered HTTP {status}")
        return body
    raise FetchError(f"too many redirects from {url[:80]}")


def is_url(text: str) -> bool:
    """Whether an input names a URL rather than a file."""
    return "://" in text
