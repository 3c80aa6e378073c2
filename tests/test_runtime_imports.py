"""runtime/ must import without TensorFlow, Keras, onnx or tf2onnx."""

import subprocess
import sys

from tests.conftest import ROOT

MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                 for p in (ROOT / "runtime").rglob("*.py") if p.name != "__main__.py")
BLOCKED = ("tensorflow", "keras", "onnx", "tf2onnx", "train", "convert", "benchmarks")


def test_runtime_imports_without_tensorflow():
    code = "\n".join([f"import sys\nfor m in {BLOCKED!r}:\n    sys.modules[m] = None",
                      *[f"import {m}" for m in MODULES]])
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
