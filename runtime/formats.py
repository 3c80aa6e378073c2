"""The one table of model formats: it drives the CLIs, the conversion loop and the benchmark."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtime.backends import load_onnx, load_tflite
from runtime.errors import ModelError

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Format:
    """An export format: its file suffix, the precisions it is made in, the library it needs."""

    name: str
    suffix: str
    precisions: tuple[str, ...]
    needs: str
    load: Callable

    def file(self, precision: str) -> str:
        """The artifact's file name inside a bundle, e.g. ``model.int8.onnx``."""
        return f"model.{precision}{self.suffix}"


FORMATS = {f.name: f for f in (
    Format("tflite", ".tflite", PRECISIONS, "ai_edge_litert", load_tflite),
    Format("onnx", ".onnx", PRECISIONS, "onnxruntime", load_onnx),
)}


def _load_keras(path, threads=None, device="cpu"):
    """The source model itself, compiled (Keras is imported here only)."""
    from runtime.keras_runner import load_keras

    return load_keras(path, threads, device)


# The source model runs too (compare, benchmarks, a user's own file), but is no export target.
KERAS = Format("keras", ".keras", (), "keras", _load_keras)


def format_of(path) -> Format:
    """The format of a model file, from its suffix."""
    for fmt in (*FORMATS.values(), KERAS):
        if str(path).endswith(fmt.suffix):
            return fmt
    suffixes = ", ".join(f.suffix for f in (*FORMATS.values(), KERAS))
    raise ModelError(f"{Path(path).name}: not a model file ({suffixes})")
