"""Cold start of ``python -m runtime.predict`` against a minimal script (import the backend, numpy and
Pillow; load the same file; resize; run; print the label), measured alternately in one run: seconds
from spawn to exit and each process's own peak RSS (read in the process as it ends).

The runtime's bytecode is compiled first, as ``pip install`` and ``runtime.package`` do (without it a
checkout run under PYTHONDONTWRITEBYTECODE compiles every module on every start). Its first start hashes
the model and notes it (runtime/checks/verified.py, in a fresh folder); the later ones find it noted.
"""

import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.rows import ROOT, child_env
from runtime.errors import ModelError

MINIMAL = {
    "onnx": """
import sys, numpy as np, onnxruntime as ort
from PIL import Image
path, image, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
x = np.asarray(Image.open(image).convert("RGB").resize((size, size), Image.NEAREST), np.float32)[None] / 127.5 - 1
print(int(sess.run(None, {sess.get_inputs()[0].name: x})[0].argmax()))
""",
    "tflite": """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image
path, image, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
it = Interpreter(model_path=path)
it.allocate_tensors()
x = np.asarray(Image.open(image).convert("RGB").resize((size, size), Image.NEAREST), np.float32)[None] / 127.5 - 1
it.set_tensor(it.get_input_details()[0]["index"], x)
it.invoke()
print(int(it.get_tensor(it.get_output_details()[0]["index"]).argmax()))
""",
}
# Runs a script or a module and reports the process's peak RSS on stderr as it ends, the same way for both.
WRAPPER = """
import runpy, sys
kind, target = sys.argv[1], sys.argv[2]
sys.argv = [target, *sys.argv[3:]]
try:
    runpy.run_module(target, run_name="__main__") if kind == "module" else exec(compile(target, "<min>", "exec"))
finally:
    from benchmarks.coldstart import peak_rss_mb
    print("peak_rss_mb", peak_rss_mb(), file=sys.stderr)
"""


@dataclass
class ColdPair:
    """Medians of the runtime's and the minimal script's cold starts (seconds, peak RSS MB)."""

    artifact: str
    runtime_first_s: float  # the first start, which hashes the model
    runtime_s: float
    minimal_s: float
    runtime_rss_mb: float
    minimal_rss_mb: float
    ratio: float  # median of each runtime start over the minimal start beside it (cancels the CPU's drift)


def timed(args: list[str], **env_extra) -> tuple[float, float]:
    """Seconds from spawn to exit of the wrapped command, and its peak RSS in MB."""
    env = child_env(os.environ, **env_extra)
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", WRAPPER, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    seconds = time.perf_counter() - start
    lines = [x for x in res.stderr.splitlines() if x.startswith("peak_rss_mb")]
    if res.returncode != 0 or not lines:
        raise ModelError(f"cold start of {args[1][:40]!r} failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
    return seconds, float(lines[-1].split()[1])


def compare(bundle: Path, file: Path, fmt: str, precision: str | None, size: int, image: str, runs: int) -> ColdPair:
    """``runs`` alternate cold starts of runtime.predict (bundle, format, precision; precision None: the
    bundle's default, its cascade where it has one) and of the minimal script on ``file``, after one start of
    the runtime that hashes the files."""
    compileall.compile_dir(ROOT / "runtime", quiet=2, workers=0)
    pinned = ["--format", fmt, "--precision", precision] if precision else []
    predict = ["module", "runtime.predict", "--model", str(bundle), *pinned, image]
    ours, minimal = [], []
    with tempfile.TemporaryDirectory(prefix="edge-verified-") as records:
        first, _ = timed(predict, RUNTIME_VERIFY_CACHE=records)
        for _ in range(runs):
            ours.append(timed(predict, RUNTIME_VERIFY_CACHE=records))
            minimal.append(timed(["script", MINIMAL[fmt], str(file), image, str(size)]))
    return ColdPair(file.name, first, statistics.median(s for s, _ in ours), statistics.median(s for s, _ in minimal),
                    statistics.median(m for _, m in ours), statistics.median(m for _, m in minimal),
                    statistics.median(a / b for (a, _), (b, _) in zip(ours, minimal, strict=True)))

