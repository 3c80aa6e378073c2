"""Attack a real server on 127.0.0.1 and measure what normal clients still get.

``python -m benchmarks.stress.hostile BUNDLE --images DIR [--soak 180] [--out DIR]``, five phases:
bombs (each sent while a normal request and /health are timed), 8 clients sending small decode bombs
while a normal request is timed again and again, stalled connections (silent,
half a head, half a body), URL requests to a remote that drips its answer, and a soak of mixed
traffic at concurrency 16 with the server's resident memory (its decoding children included)
sampled throughout. Writes hostile.json, hostile.md and hostile_rss.png.
"""

import concurrent.futures
import itertools
import math
import shlex
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.measure.provenance import provenance
from benchmarks.stress import bombs, serverload
from benchmarks.stress.report_files import write_report
from benchmarks.stress.serverload import BAD, percentiles, start
from runtime.cli import command_parser, positive_float
from runtime.errors import ImageError, RuntimeToolkitError, one_line_errors
from runtime.images import list_images

BOMBS = {
    "progressive JPEG, 12,000 scans": lambda: bombs.progressive_jpeg(16, 12000),
    "JPEG, 1.4 M comment markers (5.6 MB)": lambda: bombs.com_flood(1_400_000),
    "GIF, 2.9 M comment sub-blocks (5.8 MB)": lambda: bombs.gif_comment_flood(2_900_000),
    "PNG, 400 k empty chunks (4.8 MB)": lambda: bombs.png_empty_chunks(400_000),
    "lossless WebP 6324x6324": lambda: bombs.solid("WEBP", 6324, 6324, lossless=True),
    "PNG 8000x5000": lambda: bombs.solid("PNG", 8000, 5000),
    "GIF 8000x5000": lambda: bombs.solid("GIF", 8000, 5000),
    "TIFF 8000x5000": lambda: bombs.solid("TIFF", 8000, 5000, compression="tiff_deflate"),
    "PNG 4000x4000 (under the cap)": lambda: bombs.solid("PNG", 4000, 4000),
    "RLE BMP declaring 16,000,000 x 1 pixels": lambda: bombs.rle_bmp(16_000_000),
    "TIFF, 2.6 M one-byte strips (10 MB)": lambda: bombs.tiff_strips(2_600_000),
}
SMALL_BOMBS = ("RLE BMP declaring 16,000,000 x 1 pixels", "TIFF, 2.6 M one-byte strips (10 MB)")


def pss_mb(pid: int) -> float:
    """Proportional set size of a process (each shared page divided among the processes that map it), from
    /proc; NaN once it has exited."""
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_mb(pid: int) -> tuple[float, float, float]:
    """Resident memory of a process and of all its descendants together, and the whole tree's proportional
    set size (pages shared between them counted once, as a memory cgroup charges them), from /proc."""
    own, children, pss, todo = None, 0.0, 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            mb = serverload.rss_mb(p)  # NaN for a process that has exited (no VmRSS any more)
            if math.isnan(mb):
                continue
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        share = pss_mb(p)
        pss += 0.0 if math.isnan(share) else share
        if own is None:
            own = mb
        else:
            children += mb
    return round(own or 0.0, 1), round(children, 1), round(pss, 1)


def timed(fn):
    """(result or exception name, milliseconds)."""
    t = time.perf_counter()
    try:
        out = fn()
    except httpx.HTTPError as e:
        out = type(e).__name__
    return out, round(1000 * (time.perf_counter() - t), 1)


def status(r) -> int | str:
    """The status code of a response, or the name of the transport error in its place."""
    return r.status_code if isinstance(r, httpx.Response) else r


def bombs_phase(base: str, image: bytes) -> list[dict]:
    """Each bomb sent while /health and a normal request are timed 0.1 s later."""
    normal = lambda: httpx.post(f"{base}/predict", content=image, timeout=60)  # noqa: E731
    _, alone_ms = timed(normal)
    rows = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        for name, make in BOMBS.items():
            data = make()
            bomb = pool.submit(timed, lambda d=data: httpx.post(f"{base}/predict", content=d, timeout=60))
            time.sleep(0.1)
            health, health_ms = timed(lambda: httpx.get(f"{base}/health", timeout=60))
            ok, normal_ms = timed(normal)
            r, bomb_ms = bomb.result()
            rows.append({"bomb": name, "bytes": len(data), "status": status(r), "ms": bomb_ms,
                     "answer": r.json().get("error", "answered") if isinstance(r, httpx.Response) else r,
                         "health": status(health), "health_ms": health_ms, "normal": status(ok),
                         "normal_ms": normal_ms, "normal_alone_ms": alone_ms})
    return rows


def senders_phase(base: str, image: bytes, senders: int = 8, seconds: float = 15) -> dict:
    """A normal request timed again and again, alone and then while ``senders`` clients send the small bombs
    (RLE BMP, TIFF of one-byte strips) without pause: its p50 and p90 both ways, and what each got."""
    hostile = [BOMBS[name]() for name in SMALL_BOMBS]
    tally, lock, stop = {}, threading.Lock(), threading.Event()

    def count(key: str):
        with lock:
            tally[key] = tally.get(key, 0) + 1

    def sender(i):
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                r, _ = timed(lambda: http.post(f"{base}/predict", content=hostile[i % len(hostile)]))
                count(f"bomb {status(r)}")
    with httpx.Client(timeout=60) as http:
        alone = [timed(lambda: http.post(f"{base}/predict", content=image))[1] for _ in range(20)]
        threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        attacked, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            r, ms = timed(lambda: http.post(f"{base}/predict", content=image))
            attacked.append(ms)
            count(f"normal {status(r)}")
        stop.set()
        for t in threads:
            t.join()
    return {"senders": senders, "seconds": seconds, "alone_ms": percentiles([ms / 1000 for ms in alone]),
            "attacked_ms": percentiles([ms / 1000 for ms in attacked]), "normal_requests": len(attacked),
            "statuses": dict(sorted(tally.items()))}


def stalls_phase(base: str, image: bytes, each: int = 64) -> dict:
    """``each`` silent, half-head and half-body connections; what others get, and when they are closed."""
    host, port = base.removeprefix("http://").split(":")
    starts = [b"", b"POST /predict HTTP/1.1\r\nHost: x\r\n",
              b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nx"]
    socks = []
    for data in starts:
        for _ in range(each):
            s = socket.create_connection((host, int(port)), timeout=60)
            s.sendall(data)
            socks.append(s)
    t0 = time.perf_counter()
    health, health_ms = timed(lambda: httpx.get(f"{base}/health", timeout=60))
    ok, normal_ms = timed(lambda: httpx.post(f"{base}/predict", content=image, timeout=60))
    closed = []
    for s in socks:
        try:
            s.recv(65536)
        except OSError:
            pass
        closed.append(time.perf_counter() - t0)
        s.close()
    return {"stalled": len(socks), "health": status(health), "health_ms": health_ms, "normal": status(ok),
            "normal_ms": normal_ms, "all_closed_after_s": round(max(closed), 1)}


def dripping_remote() -> tuple[socket.socket, str]:
    """A remote on 127.0.0.1 that answers every request with one header byte a second."""
    server = socket.create_server(("127.0.0.1", 0))

    def one(conn):
        with conn:
            try:
                conn.recv(65536)
                for b in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nimage":
                    conn.sendall(bytes([b]))
                    time.sleep(1)
            except OSError:
                pass

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server, f"http://127.0.0.1:{server.getsockname()[1]}/x.jpg"


def slow_urls_phase(base: str, image: bytes, url: str, n: int = 32) -> dict:
    """``n`` URL requests to a dripping remote at once; what a normal client gets meanwhile."""
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(timed, lambda: httpx.post(f"{base}/predict", json={"url": url}, timeout=60))
                   for _ in range(n)]
        time.sleep(0.5)
        health, health_ms = timed(lambda: httpx.get(f"{base}/health", timeout=60))
        ok, normal_ms = timed(lambda: httpx.post(f"{base}/predict", content=image, timeout=60))
        results = [f.result() for f in futures]
    statuses = {}
    for r, _ in results:
        statuses[str(status(r))] = statuses.get(str(status(r)), 0) + 1
    return {"url_requests": n, "statuses": statuses, "slowest_ms": max(ms for _, ms in results),
            "health": status(health), "health_ms": health_ms, "normal": status(ok), "normal_ms": normal_ms}


def soak_phase(base: str, pid: int, images: list[bytes], url: str, seconds: float, concurrency: int = 16) -> dict:
    """Mixed traffic for ``seconds``: 70 % valid, 10 % bombs, 15 % malformed, 5 % slow URLs; RSS sampled."""
    hostile = [make() for make in BOMBS.values()]
    kinds = ["valid"] * 14 + ["bomb"] * 2 + ["bad"] * 3 + ["url"]
    counter, lock, end = itertools.count(), threading.Lock(), time.monotonic() + seconds
    tally, samples = {}, []

    def client():
        with httpx.Client(timeout=60) as http:
            while time.monotonic() < end:
                i = next(counter)
                kind = kinds[i % len(kinds)]
                try:
                    if kind == "valid":
                        r = http.post(f"{base}/predict", content=images[i % len(images)])
                    elif kind == "bomb":
                        r = http.post(f"{base}/predict", content=hostile[i % len(hostile)])
                    elif kind == "bad":
                        r = http.post(f"{base}/predict", **BAD[i % len(BAD)][1])
                    else:
                        r = http.post(f"{base}/predict", json={"url": url})
                    key = (kind, r.status_code)
                except httpx.HTTPError as e:
                    key = (kind, type(e).__name__)
                with lock:
                    tally[key] = tally.get(key, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        samples.append((round(time.monotonic() - t0, 2), *rss_mb(pid)))
        time.sleep(0.25)
    valid = {k[1]: n for k, n in tally.items() if k[0] == "valid"}
    return {"seconds": seconds, "concurrency": concurrency, "requests": sum(tally.values()),
            "valid": sum(valid.values()), "valid_failed": sum(n for s, n in valid.items() if s != 200),
            "server_rss_mb": {"start": samples[0][1], "peak": max(s[1] for s in samples), "end": samples[-1][1]},
            "children_rss_mb": {"start": samples[0][2], "peak": max(s[2] for s in samples),
                                "peak_with_server": max(s[1] + s[2] for s in samples)},
            "tree_pss_mb": {"start": samples[0][3], "peak": max(s[3] for s in samples), "end": samples[-1][3]},
            "statuses": {f"{k} {s}": n for (k, s), n in sorted(tally.items(), key=str)}, "rss": samples}


def markdown(result: dict) -> str:
    """The report as Markdown tables."""
    machine = result["provenance"]
    flags = " ".join(f for f, present in machine["flags"].items() if present)
    lines = [f"# Hostile clients against `{result['bundle']}` {result['serve_args']}".rstrip(), "",
             f"{machine['cpu']} ({flags}), {machine['usable_cpus']} usable CPUs, {machine['date']}", "",
             "| bomb | bytes | answer | ms | /health ms | normal request ms (alone) |", "|---|---|---|---|---|---|"]
    for r in result["bombs"]:
        lines.append(f"| {r['bomb']} | {r['bytes']:,} | {r['status']} {r['answer'][:60]} | {r['ms']:.0f} | "
                     f"{r['health']} in {r['health_ms']:.0f} | {r['normal']} in {r['normal_ms']:.0f} "
                     f"({r['normal_alone_ms']:.0f}) |")
    s, u, k, b = result["stalls"], result["slow_urls"], result["soak"], result["senders"]
    lines += ["", "| attack | /health | normal request | attackers |", "|---|---|---|---|",
              f"| {b['senders']} clients sending the RLE BMP and the strip TIFF for {b['seconds']:g} s | - | "
              f"p50 {b['attacked_ms']['p50_ms']:.0f} ms, p90 {b['attacked_ms']['p90_ms']:.0f} ms over "
              f"{b['normal_requests']} requests (alone: p50 {b['alone_ms']['p50_ms']:.0f}, "
              f"p90 {b['alone_ms']['p90_ms']:.0f}) | {b['statuses']} |",
              f"| {s['stalled']} stalled connections (silent, half head, half body) | {s['health']} in "
              f"{s['health_ms']:.0f} ms | {s['normal']} in {s['normal_ms']:.0f} ms | all closed after "
              f"{s['all_closed_after_s']} s |",
              f"| {u['url_requests']} URLs to a remote sending a byte a second | {u['health']} in "
              f"{u['health_ms']:.0f} ms | {u['normal']} in {u['normal_ms']:.0f} ms | {u['statuses']}, slowest "
              f"{u['slowest_ms'] / 1000:.1f} s |",
              "", f"Soak: {k['seconds']:g} s at concurrency {k['concurrency']}, {k['requests']} requests, "
              f"{k['valid']} valid of which {k['valid_failed']} failed. Resident memory of the server process: "
              f"{k['server_rss_mb']['start']:.0f} MB at the start, {k['server_rss_mb']['peak']:.0f} MB at most, "
              f"{k['server_rss_mb']['end']:.0f} MB at the end; of its decoding children together: "
              f"{k['children_rss_mb']['start']:.0f} MB at the start, {k['children_rss_mb']['peak']:.0f} MB at most "
              f"(server and children together at most {k['children_rss_mb']['peak_with_server']:.0f} MB). "
              f"The whole tree's proportional set size (shared pages counted once): "
              f"{k['tree_pss_mb']['start']:.0f} MB at the start, {k['tree_pss_mb']['peak']:.0f} MB at most, "
              f"{k['tree_pss_mb']['end']:.0f} MB at the end.", "",
              "| kind and answer | requests |", "|---|---|"]
    lines += [f"| {key} | {n} |" for key, n in k["statuses"].items()]
    return "\n".join(lines) + "\n"


def plot(samples, path: Path):
    """Resident memory over the soak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([s[0] for s in samples], [s[1] for s in samples], label="server process")
    ax.plot([s[0] for s in samples], [s[2] for s in samples], label="decoding children")
    ax.plot([s[0] for s in samples], [s[3] for s in samples], label="whole tree, PSS")
    ax.set(xlabel="seconds", ylabel="resident MB", title="Soak: mixed hostile traffic")
    ax.legend()
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parser():
    p = command_parser("python -m benchmarks.stress.hostile", __doc__)
    p.add_argument("bundle", type=Path, help="a converted bundle to serve")
    p.add_argument("--images", type=Path, required=True, help="folder of valid images (the first 50 are used)")
    p.add_argument("--soak", type=positive_float, default=180, help="seconds of mixed traffic (default 180)")
    p.add_argument("--serve-args", default="", help="more flags for runtime.serve, e.g. '--decoders 1'")
    p.add_argument("--out", type=Path, default=Path("runs/hostile"), help="report folder (default runs/hostile)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return one_line_errors(lambda: attack(args), RuntimeToolkitError)


def attack(args) -> int:
    """Run every phase against a fresh server and report."""
    images = [f.read_bytes() for f in list_images(args.images)[:50]]
    if not images:
        raise ImageError(f"no images in {args.images}")
    remote, url = dripping_remote()
    with tempfile.TemporaryFile() as log:
        proc, base = start(args.bundle, 32, *shlex.split(args.serve_args), log=log,
                           env={"RUNTIME_ALLOW_PRIVATE_URLS": "1"})
        try:
            result = {"bundle": str(args.bundle), "serve_args": args.serve_args, "provenance": provenance()}
            for name, phase in [("bombs", lambda: bombs_phase(base, images[0])),
                                ("senders", lambda: senders_phase(base, images[0])),
                                ("stalls", lambda: stalls_phase(base, images[0])),
                                ("slow_urls", lambda: slow_urls_phase(base, images[0], url)),
                                ("soak", lambda: soak_phase(base, proc.pid, images, url, args.soak))]:
                print(f"... {name}", file=sys.stderr, flush=True)
                result[name] = phase()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            remote.close()
        log.seek(0)
        result["tracebacks_in_log"] = log.read().decode(errors="replace").count("Traceback")
    write_report(args.out, "hostile", result, markdown(result))
    plot(result["soak"]["rss"], args.out / "hostile_rss.png")
    soak = result["soak"]
    print(f"soak: {soak['valid_failed']} of {soak['valid']} valid requests failed, server peak RSS "
          f"{soak['server_rss_mb']['peak']:.0f} MB (children {soak['children_rss_mb']['peak']:.0f} MB, whole tree "
          f"{soak['tree_pss_mb']['peak']:.0f} MB PSS); "
          f"{result['tracebacks_in_log']} tracebacks; report in {args.out}", file=sys.stderr)
    return 1 if soak["valid_failed"] or result["tracebacks_in_log"] else 0


if __name__ == "__main__":
    sys.exit(main())
