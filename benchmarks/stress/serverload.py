"""Start the server on 127.0.0.1 and load it: which stats does it keep under load and abuse?

``python -m benchmarks.stress.serverload BUNDLE --images DIR``: a concurrency sweep of valid requests,
then N requests at concurrency C with one in ten malformed or oversized, then a burst over
capacity against a server allowed only 2 requests in flight. Bounded in requests and time.
"""

import base64
import collections
import concurrent.futures
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.rows import ROOT, child_env
from runtime.cli import command_parser, positive_int
from runtime.errors import ImageError, RuntimeToolkitError, one_line_errors
from runtime.images import list_images

LIMIT = 6 * 1024 * 1024
BAD = [("garbage", dict(content=b"\x00not an image" * 50, headers={"Content-Type": "image/jpeg"})),
       ("bad-json", dict(content=b"{nope", headers={"Content-Type": "application/json"})),
       ("bad-base64", dict(json={"image": "%%%"})),
       ("no-image", dict(json={"hello": "world"})),
       ("private-url", dict(json={"url": "http://169.254.169.254/latest/meta-data/"})),
       ("oversized", dict(content=b"\0" * (LIMIT + 1), headers={"Content-Type": "image/jpeg"})),
       ("empty", dict(content=b"", headers={"Content-Type": "image/jpeg"}))]


class ServerFailed(RuntimeToolkitError):
    """The server under test exited, or did not answer /health in time."""


def _last_line(log) -> str:
    """': <the last line>' of a dead server's log file, or ''."""
    log.seek(0)
    lines = log.read().decode(errors="replace").strip().splitlines()
    return f": {lines[-1]}" if lines else ""


def start(bundle: Path, max_inflight: int, *flags, log=None, env=None):
    """A server process on a free port; returns (process, base URL) once /health answers. ``log``: an open
    file for its output (default: a temporary one); ``env`` adds to a copy of the environment."""
    log = log or tempfile.TemporaryFile()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if k != "RUNTIME_ALLOW_PRIVATE_URLS"}, **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "runtime.serve", "--model", str(bundle), "--port", str(port),
                             "--max-inflight", str(max_inflight), *map(str, flags)], cwd=ROOT,
                            env=child_env(env), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if proc.poll() is not None:
            raise ServerFailed(f"the server exited with status {proc.returncode}{_last_line(log)}")
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise ServerFailed("the server did not answer /health within 30 s")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fire(base: str, jobs, concurrency: int):
    """Send (kind, kwargs) jobs with ``concurrency`` clients; return (kind, status, json?, seconds) each."""
    def one(job):
        kind, kwargs = job
        t = time.perf_counter()
        try:
            r = client.post(f"{base}/predict", **kwargs)
            is_json = r.headers.get("content-type", "").startswith("application/json")
            return kind, r.status_code, is_json, time.perf_counter() - t
        except httpx.HTTPError as e:
            return kind, type(e).__name__, False, time.perf_counter() - t
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client, \
            concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, jobs))


def percentiles(seconds) -> dict:
    p50, p90, p99 = np.percentile(np.array(seconds) * 1000, [50, 90, 99])
    return {"p50_ms": round(p50, 1), "p90_ms": round(p90, 1), "p99_ms": round(p99, 1)}


def run(bundle: Path, images: list[bytes], requests: int, concurrency: int, sweep: list[int]) -> dict:
    """The three phases; returns everything measured."""
    valid = [("valid", dict(content=b, headers={"Content-Type": "image/jpeg"})) for b in images]
    valid += [("valid-b64", dict(json={"image": base64.b64encode(b).decode()})) for b in images[:5]]
    proc, base = start(bundle, 32)
    try:
        fire(base, valid[:20], 2)
        out = {"rss_before_mb": rss_mb(proc.pid), "sweep": []}
        for c in sweep:
            t = time.perf_counter()
            res = fire(base, list(itertools.islice(itertools.cycle(valid), 20 * c)), c)
            out["sweep"].append({"concurrency": c, "requests": len(res), "ok": sum(r[1] == 200 for r in res),
                                 "throughput_rps": round(len(res) / (time.perf_counter() - t), 1),
                                 **percentiles([r[3] for r in res])})
        jobs = [BAD[i // 10 % len(BAD)] if i % 10 == 9 else valid[i % len(valid)] for i in range(requests)]
        t = time.perf_counter()
        res = fire(base, jobs, concurrency)
        wall = time.perf_counter() - t
        good = [r for r in res if r[0].startswith("valid")]
        bad = [r for r in res if not r[0].startswith("valid")]
        out["load"] = {"requests": len(res), "concurrency": concurrency, "seconds": round(wall, 1),
                       "throughput_rps": round(len(res) / wall, 1),
                       "valid": len(good), "valid_failed": sum(r[1] != 200 for r in good),
                       "bad": len(bad), "bad_not_4xx_json": sum(not (isinstance(r[1], int) and 400 <= r[1] < 500
                                                                      and r[2]) for r in bad),
                       "statuses": {f"{k[0]} {k[1]}": n for k, n in sorted(
                           collections.Counter((r[0], r[1]) for r in res).items(), key=str)},
                       **percentiles([r[3] for r in good])}
        out["rss_after_mb"] = rss_mb(proc.pid)
        out["alive_after"] = httpx.get(f"{base}/health").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    proc, base = start(bundle, 2)
    try:
        res = fire(base, list(itertools.islice(itertools.cycle(valid), 64)), 16)
        busy = [r for r in res if r[1] == 503]
        out["over_capacity"] = {"max_inflight": 2, "concurrency": 16, "requests": len(res),
                                "ok": sum(r[1] == 200 for r in res), "503": len(busy),
                                "other": len(res) - len(busy) - sum(r[1] == 200 for r in res),
                                **({"503_" + k: v for k, v in percentiles([r[3] for r in busy]).items()}
                                   if busy else {})}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def parser():
    p = command_parser("python -m benchmarks.stress.serverload", __doc__)
    p.add_argument("bundle", type=Path, help="a converted bundle to serve")
    p.add_argument("--images", type=Path, required=True, help="folder of images to send (the first 50)")
    p.add_argument("--requests", type=positive_int, default=2000, help="requests in the mixed run (default 2000)")
    p.add_argument("--concurrency", type=positive_int, default=16, help="clients in the mixed run (default 16)")
    p.add_argument("--sweep", default="1,2,4,8,16", help="concurrency levels of the sweep (default 1,2,4,8,16)")
    p.add_argument("--out", type=Path, help="write serverload.json here")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return one_line_errors(lambda: report(args), RuntimeToolkitError)


def report(args) -> int:
    """Run the phases and print what they measured."""
    images = [f.read_bytes() for f in list_images(args.images)[:50]]
    if not images:
        raise ImageError(f"no images in {args.images}")
    result = run(args.bundle, images, args.requests, args.concurrency, [int(c) for c in args.sweep.split(",")])
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "serverload.json").write_text(text + "\n")
    load = result["load"]
    print(f"\n{load['requests']} requests at concurrency {load['concurrency']}: {load['valid_failed']} valid failed, "
          f"{load['bad_not_4xx_json']} bad without a 4xx JSON error; RSS {result['rss_before_mb']:.0f} -> "
          f"{result['rss_after_mb']:.0f} MB; over capacity: {result['over_capacity']['503']} x 503")
    return 1 if load["valid_failed"] or load["bad_not_4xx_json"] or not result["alive_after"] else 0


if __name__ == "__main__":
    sys.exit(main())
