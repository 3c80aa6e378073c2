"""The one table of model formats: it drives the CLIs, the conversion loop, the benchmark and the
choice of an artifact (which devices a format runs on, what installs it, what imports run it)."""

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import ModelError

PRECISIONS = ("fp32", "fp16", "int8")
DEVICES = ("cpu", "gpu")
TFLITE_IMPORTS = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")
ONNX_IMPORTS = ("onnxruntime",)


@dataclass(frozen=True)
class Format:
    """An export format: file suffix, precisions it is made in, devices it runs on, the install extra
    that brings its runtime, and the modules that can run it (the first one installed is used)."""

    name: str
    suffix: str
    precisions: tuple[str, ...]
    devices: tuple[str, ...]
    extra: str
    imports: tuple[str, ...]
    loader: str  # "module:function" loading a file of this format; imported when a file is loaded, not with the table

    def load(self, path, threads=None, device="cpu", spinning=True):
        """A runner of a file of this format (``infer(batch) -> logits``)."""
        module, function = self.loader.split(":")
        return getattr(importlib.import_module(module), function)(path, threads, device, spinning)

    def file(self, precision: str) -> str:
        """The artifact's file name inside a bundle, e.g. ``model.int8.onnx``."""
        return f"model.{precision}{self.suffix}"

    def installed(self) -> bool:
        """Whether one of the modules that run this format is installed."""
        return any(importlib.util.find_spec(m.split(".")[0]) for m in self.imports)

    def install_hint(self) -> str:
        """What to install to run this format."""
        return f"pip install 'edge-classifier[{self.extra}]' (any of: {', '.join(self.imports)})"


FORMATS = {f.name: f for f in (
    Format("tflite", ".tflite", PRECISIONS, ("cpu",), "litert", TFLITE_IMPORTS, "runtime.backends:load_tflite"),
    Format("onnx", ".onnx", PRECISIONS, DEVICES, "onnx", ONNX_IMPORTS, "runtime.backends:load_onnx"),
)}

# The source model runs too (compare, benchmarks, a user's own file), but is no export target.
KERAS = Format("keras", ".keras", (), DEVICES, "train", ("keras",), "runtime.engines.keras_runner:load_source")


def format_of(path) -> Format:
    """The format of a model file, from its suffix."""
    for fmt in (*FORMATS.values(), KERAS):
        if str(path).endswith(fmt.suffix):
            return fmt
    suffixes = ", ".join(f.suffix for f in (*FORMATS.values(), KERAS))
    raise ModelError(f"{Path(path).name}: not a model file ({suffixes})")
