"""URL fetching against hostile remotes on 127.0.0.1: one deadline, embedded IPv4, typed failures."""

import socket
import threading
import time

import pytest

from runtime.errors import FetchError
from runtime.net.fetch import FetchPolicy, fetch
from runtime.net.netaddr import is_metadata, is_public

PRIVATE = FetchPolicy(allow_private=True, deadline=1.5)


class Remote:
    """A TCP server on 127.0.0.1 that runs ``behave(connection)`` for each client, in a thread."""

    def __init__(self, behave):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.behave = behave
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(conn,), daemon=True).start()

    def one(self, conn):
        try:
            conn.recv(65536)
            self.behave(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


def drip(data: bytes, every: float):
    """A behaviour: send ``data`` one byte at a time, ``every`` seconds apart."""
    def behave(conn):
        for i in range(len(data)):
            conn.sendall(data[i:i + 1])
            time.sleep(every)
    return behave


def answer(head: bytes, body: bytes = b""):
    """A behaviour: send a fixed response at once."""
    return lambda conn: conn.sendall(head + body)


@pytest.mark.parametrize("name, behave", [
    ("silent", lambda conn: time.sleep(5)),
    ("slow status line and headers", drip(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nimage", 0.2)),
    ("slow body", lambda conn: (conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n"), drip(b"x" * 200, 0.02)(conn))),
])
def test_one_deadline_covers_the_whole_response(name, behave):
    remote = Remote(behave)
    try:
        t = time.monotonic()
        with pytest.raises(FetchError, match="timed out"):
            fetch(f"{remote.base}/x.jpg", PRIVATE)
        assert time.monotonic() - t < PRIVATE.deadline + 0.5, name
    finally:
        remote.close()


def test_one_deadline_covers_a_stalled_tls_handshake():
    remote = Remote(lambda conn: time.sleep(5))
    try:
        t = time.monotonic()
        with pytest.raises(FetchError, match="timed out"):
            fetch(remote.base.replace("http:", "https:") + "/x.jpg", PRIVATE)
        assert time.monotonic() - t < PRIVATE.deadline + 0.5
    finally:
        remote.close()


def test_one_deadline_covers_name_resolution(monkeypatch):
    """A resolver that hangs (fault injected: this machine has no DNS server to stall)."""
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(5))
    t = time.monotonic()
    with pytest.raises(FetchError, match="timed out resolving example.com"):
        fetch("http://example.com/x.jpg", PRIVATE)
    assert time.monotonic() - t < PRIVATE.deadline + 0.5


@pytest.mark.parametrize("head, match", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nimage", None),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "ended 95 bytes early"),
    (b"HTTP/1.1 abc\r\n\r\n", "cannot fetch"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n", "cannot fetch"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "cannot fetch"),
])
def test_malformed_responses_are_typed_failures(head, match):
    remote = Remote(answer(head))
    try:
        if match is None:
            assert fetch(f"{remote.base}/x.jpg", PRIVATE) == b"image"
        else:
            with pytest.raises(FetchError, match=match):
                fetch(f"{remote.base}/x.jpg", PRIVATE)
    finally:
        remote.close()


@pytest.mark.parametrize("path, match", [(":99999/x.jpg", "malformed URL"), ("/\ud800.jpg", "cannot fetch"),
                                         ("/a b\r\nX: y", "cannot fetch"), ("/x.jpg\x00", "cannot fetch")])
def test_malformed_urls_are_typed_failures(path, match):
    remote = Remote(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nimage"))
    try:
        assert fetch(f"{remote.base}/x.jpg", PRIVATE) == b"image"
        with pytest.raises(FetchError, match=match):
            fetch(remote.base.rsplit(":", 1)[0] + path if path.startswith(":") else remote.base + path, PRIVATE)
    finally:
        remote.close()


@pytest.mark.parametrize("url", ["http://[::1/x", "http://\ud800.com/x", "http:///x", "http://[v1.x]/",
                                 "gopher://127.0.0.1/"])
def test_urls_that_name_no_host_are_typed_failures(url):
    with pytest.raises(FetchError, match="refused|cannot resolve"):
        fetch(url, PRIVATE)


@pytest.mark.parametrize("ip, carried", [
    ("::ffff:10.0.0.1", "mapped"), ("::ffff:0:a9fe:a9fe", "translated"), ("::a9fe:a9fe", "compatible"),
    ("::7f00:1", "compatible"), ("2002:a9fe:a9fe::1", "6to4"), ("2002:7f00:1::1", "6to4"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo (client 10.0.0.1)"), ("64:ff9b::a9fe:a9fe", "NAT64"),
    ("64:ff9b::10.1.2.3", "NAT64"), ("64:ff9b:1::a00:1", "local NAT64"), ("2001:db8::5efe:a00:1", "ISATAP"),
    ("fe80::5efe:808:808", "ISATAP on a link-local prefix"),
])
def test_ipv6_forms_are_judged_by_the_ipv4_they_carry(ip, carried):
    assert not is_public(ip), carried
    with pytest.raises(FetchError, match="refused"):
        fetch(f"http://[{ip}]/latest/meta-data/")


@pytest.mark.parametrize("ip", ["64:ff9b::808:808", "::ffff:8.8.8.8", "2002:808:808::1"])
def test_ipv6_forms_carrying_a_public_ipv4_are_public(ip):
    assert is_public(ip)


@pytest.mark.parametrize("ip", ["169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200",
                                "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "fe80::1"])
def test_metadata_addresses_are_refused_even_where_private_ones_are_allowed(ip):
    assert is_metadata(ip)
    host = f"[{ip}]" if ":" in ip else ip
    with pytest.raises(FetchError, match="refused: .* cloud metadata address"):
        fetch(f"http://{host}/latest/meta-data/", PRIVATE)


def endless(first: bytes, unit: bytes):
    """A behaviour: send ``first``, then ``unit`` again and again as fast as the client reads."""
    def behave(conn):
        conn.sendall(first)
        while True:
            conn.sendall(unit * 1000)
    return behave


@pytest.mark.parametrize("behave, why", [
    (endless(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\nx\r\n"),
     "sent over 10000 header, interim or chunk lines"),
    (endless(b"", b"HTTP/1.1 100 Continue\r\n\r\n"), "sent over 10000 header, interim or chunk lines"),
    (endless(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"1;" + b"e" * 60_000 + b"\r\nx\r\n"),
     "sent over 10747904 bytes, framing included"),  # chunk extensions: 60 KB of framing per body byte
])
def test_framing_from_a_fast_remote_counts_against_the_caps(behave, why):
    remote = Remote(behave)
    try:
        with pytest.raises(FetchError, match=why):
            fetch(remote.base + "/x.jpg", FetchPolicy(allow_private=True, deadline=60))
    finally:
        remote.close()
