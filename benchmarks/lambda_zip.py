"""``python -m benchmarks.lambda_zip BUNDLE --format F [--precision P] --image IMG``: build the Lambda zip for
this machine (x86_64 or arm64, this Python), unpack it, and call its handler with the course's event
(``{"url": ...}``, served on 127.0.0.1) from fresh interpreters whose ``sys.path`` holds only the unpacked
folder and the standard library: the answer, sizes, cold start (spawn to answer) and peak RSS.
"""

import functools
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.cli import command_parser, positive_int
from runtime.errors import ModelError, RuntimeToolkitError, one_line_errors
from runtime.formats import FORMATS, PRECISIONS
from runtime.package.build import build_lambda
from runtime.package.wheels import Target

CHILD = """
# Standard library only: sys.path holds the unpacked function alone (so no benchmarks.coldstart here).
import json, sys, time
sys.path.insert(0, sys.argv[1])
import lambda_function
answer = lambda_function.lambda_handler(json.loads(sys.argv[2]), None)
done = time.time()
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:"))
print(json.dumps({"done": done, "answer": answer, "sys_path": sys.path, "peak_rss_mb": hwm / 1024,
                  "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


@dataclass
class Invocation:
    """One cold call of the unpacked function: its answer, seconds from spawn, peak RSS, its sys.path."""

    answer: dict
    seconds: float
    peak_rss_mb: float
    sys_path: list
    modules: list


def invoke(folder: Path, event: dict, env: dict | None = None) -> Invocation:
    """Call ``lambda_function.lambda_handler(event)`` in a fresh isolated interpreter (``-I -S``)."""
    start = time.time()
    res = subprocess.run([sys.executable, "-I", "-S", "-c", CHILD, str(folder), json.dumps(event)],
                         cwd=folder, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300,
                         check=False)
    if res.returncode != 0:
        raise ModelError(f"the unpacked function failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return Invocation(out["answer"], out["done"] - start, out["peak_rss_mb"], out["sys_path"], out["modules"])


class Quiet(http.server.SimpleHTTPRequestHandler):
    """A file server that logs nothing."""

    def log_message(self, *args):
        pass


@contextmanager
def serving(path: Path):
    """An HTTP server on 127.0.0.1 serving ``path``'s folder; yields the file's URL."""
    handler = functools.partial(Quiet, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{path.name}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class LambdaRow:
    """The measured zip: sizes, cold starts and the first answer."""

    artifact: str
    zipped_mib: float
    unzipped_mib: float
    cold_start_s: float
    cold_start_runs: list
    peak_rss_mb: float
    answer: dict


def measure(bundle: Path, fmt: str, precision: str | None, image: Path, runs: int, work: Path) -> LambdaRow:
    """Build, unpack and cold-call the function ``runs`` times."""
    here = Target.here()
    package = build_lambda(bundle, fmt, precision, here, work / "function.zip")
    print(package.summary(), file=sys.stderr)
    folder = work / "unpacked"
    with zipfile.ZipFile(package.path) as z:
        z.extractall(folder)
    with serving(image.resolve()) as url:
        # every call hashes the model, as on Lambda, whose read-only file system keeps no verification notes
        env = {"RUNTIME_ALLOW_PRIVATE_URLS": "1", "RUNTIME_VERIFY_CACHE": "off"}
        calls = [invoke(folder, {"url": url}, env) for _ in range(runs)]
    return LambdaRow(package.artifact, package.zipped / 2 ** 20, package.unzipped / 2 ** 20,
                     statistics.median(c.seconds for c in calls), [round(c.seconds, 3) for c in calls],
                     max(c.peak_rss_mb for c in calls), calls[0].answer)


def parser():
    p = command_parser("python -m benchmarks.lambda_zip", __doc__)
    p.add_argument("bundle", type=Path, help="a converted bundle folder")
    p.add_argument("--format", choices=tuple(FORMATS), required=True, help="the artifact's format (and backend)")
    p.add_argument("--precision", choices=PRECISIONS, help="the artifact's precision (default: the runtime's choice)")
    p.add_argument("--image", type=Path, required=True, help="the image the event's URL serves")
    p.add_argument("--runs", type=positive_int, default=5, help="cold calls (default 5)")
    p.add_argument("--out", type=Path, help="write lambda.json here")
    return p


def run(args) -> int:
    """Measure and print one table row."""
    if not args.image.is_file():
        raise ModelError(f"--image {args.image}: no such file")
    with tempfile.TemporaryDirectory() as tmp:
        row = measure(args.bundle, args.format, args.precision, args.image, args.runs, Path(tmp))
    print("| artifact | zipped MiB | unzipped MiB | cold start s (median) | peak RSS MB | answer |")
    print("|---|---|---|---|---|---|")
    top = max(row.answer, key=row.answer.get) if "error" not in row.answer else row.answer["error"]
    print(f"| {row.artifact} | {row.zipped_mib:.1f} | {row.unzipped_mib:.1f} | {row.cold_start_s:.2f} | "
          f"{row.peak_rss_mb:.0f} | {top} |")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "lambda.json").write_text(json.dumps(asdict(row), indent=2) + "\n")
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return one_line_errors(lambda: run(args), (RuntimeToolkitError, OSError))


if __name__ == "__main__":
    sys.exit(main())
