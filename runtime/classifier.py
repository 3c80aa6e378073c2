"""``Classifier``: a runner plus what it needs to turn images into labels (classes, size, mode)."""

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import BackendUnavailable, ModelError
from runtime.files import sha256
from runtime.formats import FORMATS, format_of
from runtime.manifest import FILE as MANIFEST
from runtime.manifest import Manifest
from runtime.preprocessing import MODES, preprocess

DEFAULT_MODEL = "artifacts/default"


@dataclass
class ModelInfo:
    """What the runtime must know about a model besides its weights."""

    name: str
    classes: list[str]
    height: int
    width: int
    mode: str
    resize: str

    @classmethod
    def from_dict(cls, meta: dict, where: str):
        """From a manifest or a model file's metadata; ModelError when something is missing."""
        try:
            pre = meta.get("preprocessing", {})
            info = cls(meta.get("name", ""), list(meta["classes"]), int(meta["input"]["height"]),
                       int(meta["input"]["width"]), pre.get("mode", "xception"), pre.get("resize", "nearest"))
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{where}: no classes/input size in its metadata; load its bundle instead") from None
        if info.mode not in MODES:
            raise ModelError(f"{where}: unknown preprocessing mode {info.mode!r}")
        return info


@dataclass
class Prediction:
    """Top labels of one image, with softmax scores and the raw logits."""

    label: str
    score: float
    top: list[dict]
    logits: list[float]


def default_model() -> str:
    """``$RUNTIME_MODEL``, else ``artifacts/default``."""
    return os.environ.get("RUNTIME_MODEL", DEFAULT_MODEL)


def pick_artifact(manifest: Manifest, fmt=None, precision=None) -> dict:
    """The fastest artifact whose parity passed and whose backend is installed (or the one asked for)."""
    ok = [a for a in manifest.artifacts
          if a.get("parity", {}).get("passed") and (fmt is None or a["format"] == fmt)
          and (precision is None or a["precision"] == precision)]
    runnable = [a for a in ok if importlib.util.find_spec(FORMATS[a["format"]].needs.split(".")[0])]
    if not runnable:
        wanted = "/".join(x for x in (fmt, precision) if x) or "any"
        raise (BackendUnavailable if ok else ModelError)(
            f"bundle {manifest.name}: no {'runnable ' if ok else ''}verified artifact ({wanted})")
    return min(runnable, key=lambda a: a.get("latency_ms", float("inf")))


class Classifier:
    """Images in, labels out: ``Classifier.load(path).predict([...])``."""

    def __init__(self, runner, info: ModelInfo, file: str):
        if runner.outputs and runner.outputs != len(info.classes):
            raise ModelError(f"{file}: model has {runner.outputs} outputs but {len(info.classes)} classes")
        self.runner, self.info, self.file = runner, info, file

    @classmethod
    def load(cls, path=None, fmt=None, precision=None, threads=None, device="cpu"):
        """Load a model file, or pick an artifact from a bundle folder (checking its hash)."""
        path = Path(path or default_model())
        if path.is_dir():
            manifest = Manifest.read(path)
            art = pick_artifact(manifest, fmt, precision)
            file = path / art["file"]
            if not file.is_file() or sha256(file) != art.get("sha256"):
                raise ModelError(f"{file}: missing or its hash differs from {MANIFEST}")
            runner = FORMATS[art["format"]].load(file, threads, device)
            return cls(runner, ModelInfo.from_dict(vars(manifest), str(path)), str(file))
        if not path.is_file():
            raise ModelError(f"no model at {path}")
        runner = format_of(path).load(path, threads, device)
        return cls(runner, ModelInfo.from_dict(runner.metadata, str(path)), str(path))

    def preprocess(self, source) -> np.ndarray:
        """One image (path, bytes, file) to this model's input."""
        return preprocess(source, (self.info.height, self.info.width), self.info.mode, self.info.resize)

    def predict_batch(self, batch: np.ndarray, top_k=3) -> list[Prediction]:
        """Predictions for an already preprocessed batch."""
        logits = self.runner.infer(batch)
        return [self._prediction(row, top_k) for row in logits]

    def predict(self, sources, top_k=3) -> list[Prediction]:
        """Predictions for several images in one batch; a bad image raises ImageError."""
        return self.predict_batch(np.stack([self.preprocess(s) for s in sources]), top_k)

    def _prediction(self, logits: np.ndarray, top_k: int) -> Prediction:
        z = logits.astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        order = np.argsort(-p, kind="stable")[:max(1, top_k)]
        top = [{"label": self.info.classes[i], "score": float(p[i])} for i in order]
        return Prediction(top[0]["label"], top[0]["score"], top, [float(v) for v in logits])
