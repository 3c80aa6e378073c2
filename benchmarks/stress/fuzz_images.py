"""Fuzz the image path with hypothesis for a bounded time: only the runtime's typed errors may escape.

``python -m benchmarks.stress.fuzz_images --seconds 600 [--model BUNDLE] [--found DIR]``. Inputs are real
and malformed seed files under random byte mutations; each case runs under a 5 s alarm, and
resident memory is checked every 200 cases. Any other exception, hang or memory blow-up is
saved to ``--found`` (kept as regression cases by tests/test_fuzz_regressions.py).
"""

import hashlib
import io
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from runtime.cli import command_parser, positive_float
from runtime.errors import RuntimeToolkitError
from runtime.preprocessing import preprocess

SIZE = (71, 71)
CASE_SECONDS, MEMORY_GROWTH_MB = 5, 1024


class Hang(Exception):
    """A case ran past CASE_SECONDS."""


def seeds(dataset: Path | None) -> list[bytes]:
    """Valid files of every accepted format and mode, real photos, and a few broken ones."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    out = []
    for fmt, img in [("JPEG", rgb), ("JPEG", rgb.convert("CMYK")), ("PNG", rgb.quantize(16)),
                     ("PNG", rgb.convert("RGBA")), ("PNG", rgb.convert("I;16")), ("GIF", rgb),
                     ("BMP", rgb), ("TIFF", rgb), ("WEBP", rgb), ("PNG", rgb.convert("LA"))]:
        buf = io.BytesIO()
        img.save(buf, fmt)
        out.append(buf.getvalue())
    if dataset is not None:
        out += [p.read_bytes() for p in sorted(dataset.rglob("*.jpg"))[:5]]
    bomb = bytearray(out[2])
    bomb[16:24] = (60000).to_bytes(4, "big") * 2  # PNG IHDR claiming 60000 x 60000
    return out + [out[0][:200], bytes(bomb)]


def mutate(data: bytes, ops) -> bytes:
    """Apply (kind, position, value) edits: flip, set, insert, delete, truncate, duplicate."""
    buf = bytearray(data)
    for kind, pos, value in ops:
        if not buf:
            break
        i = pos % len(buf)
        if kind == "flip":
            buf[i] ^= 1 << (value % 8)
        elif kind == "set":
            buf[i] = value % 256
        elif kind == "insert":
            buf[i:i] = bytes([value % 256]) * (1 + value % 16)
        elif kind == "delete":
            del buf[i:i + 1 + value % 64]
        elif kind == "truncate":
            del buf[i:]
        else:
            buf[i:i] = buf[i:i + 1 + value % 256]
    return bytes(buf)


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fuzz(seconds: float, seed_files: list[bytes], classify, found: Path) -> dict:
    """Run hypothesis in rounds until ``seconds`` pass; return counts by outcome."""
    stats = {"cases": 0, "ok": 0, "typed_errors": 0, "findings": 0, "rss_start_mb": rss_mb(), "rss_max_mb": 0.0}
    ops = st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]),
                             st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8)

    def on_alarm(*_):
        raise Hang()

    signal.signal(signal.SIGALRM, on_alarm)

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(seed_files), ops)
    def case(seed, edits):
        data = mutate(seed, edits)
        stats["cases"] += 1
        signal.alarm(CASE_SECONDS)
        try:
            classify(data)
            stats["ok"] += 1
        except RuntimeToolkitError:
            stats["typed_errors"] += 1
        except BaseException as e:  # everything else is a finding, hangs included
            if isinstance(e, KeyboardInterrupt):
                raise
            save(found, data, e)
            stats["findings"] += 1
        finally:
            signal.alarm(0)
        if stats["cases"] % 200 == 0:
            stats["rss_max_mb"] = max(stats["rss_max_mb"], rss_mb())
            if stats["rss_max_mb"] > stats["rss_start_mb"] + MEMORY_GROWTH_MB:
                save(found, data, MemoryError(f"RSS grew to {stats['rss_max_mb']:.0f} MB"))
                stats["findings"] += 1

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        case()
    stats["rss_end_mb"] = rss_mb()
    return stats


def save(found: Path, data: bytes, error: BaseException):
    """Keep a finding as ``<sha>.bin`` with the error beside it."""
    found.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(data).hexdigest()[:16]
    (found / f"{name}.bin").write_bytes(data)
    (found / f"{name}.txt").write_text(f"{type(error).__name__}: {error}\n")


def parser():
    p = command_parser("python -m benchmarks.stress.fuzz_images", __doc__)
    p.add_argument("--seconds", type=positive_float, default=600, help="how long to fuzz (default 600)")
    p.add_argument("--model", help="also run Classifier.predict with this model file or bundle")
    p.add_argument("--dataset", type=Path, help="folder of real JPEGs to add to the seeds")
    p.add_argument("--found", type=Path, default=Path("tests/regressions"),
                   help="where each finding is kept for the regression test (default tests/regressions)")
    p.add_argument("--out", type=Path, help="write fuzz.json here")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    classify = lambda data: preprocess(data, SIZE)  # noqa: E731
    if args.model:
        from runtime.classifier import Classifier

        clf = Classifier.load(args.model)
        classify = lambda data: clf.predict([data])  # noqa: E731
    stats = fuzz(args.seconds, seeds(args.dataset), classify, args.found)
    stats["seconds"] = args.seconds
    print(json.dumps(stats, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "fuzz.json").write_text(json.dumps(stats, indent=2) + "\n")
    return 1 if stats["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
