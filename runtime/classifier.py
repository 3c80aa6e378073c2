"""``Classifier``: a runner plus what it needs to turn images into labels (classes, size, mode)."""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.backends import Answer
from runtime.bundle import FILE as MANIFEST
from runtime.bundle import MAX_SIDE, NO_OVERRIDES, Manifest, ManifestError, ModelInfo, Overrides, load_verified
from runtime.cascade import CascadeRunner
from runtime.choice import choose
from runtime.errors import ModelError, OutputError
from runtime.formats import FORMATS, PRECISIONS, format_of
from runtime.machine.threads import profile as deployment
from runtime.preprocessing import COLORS, DEFAULT_LIMITS, DecodeLimits

DEFAULT_MODEL = "artifacts/default"


@dataclass
class Prediction:
    """Top labels of one image, with softmax scores, the raw logits and the file that answered (in a
    cascade, the exact file when it re-checked the fast file's near-tie)."""

    label: str
    score: float
    top: list[dict]
    logits: list[float]
    model: str = ""
    rechecked: bool = False


def manifest_beside(path: Path) -> Manifest | None:
    """The manifest of the bundle a file lies in (its ``model.keras``, say), if it reads."""
    if not (path.parent / MANIFEST).is_file():
        return None
    try:
        return Manifest.read(path.parent)
    except ManifestError:
        return None


class Classifier:
    """Images in, labels out: ``Classifier.load(path).predict([...])``."""

    def __init__(self, runner, info: ModelInfo, file: str, limits: DecodeLimits = DEFAULT_LIMITS,
                 reason: str = "given as a file", exact_file: str | None = None, precision: str | None = None,
                 said_by: str = "its metadata"):
        for r in (runner.fast, runner.exact) if isinstance(runner, CascadeRunner) else (runner,):
            if r.outputs and r.outputs != len(info.classes):
                raise ModelError(f"{file}: model has {r.outputs} outputs but {len(info.classes)} classes")
            check_input(r, info, file, said_by)
        self.runner, self.info, self.file, self.limits, self.reason = runner, info, file, limits, reason
        self.exact_file = exact_file
        said = runner.metadata.get("precision") if isinstance(runner.metadata, dict) else None
        self.precision = precision or (said if said in PRECISIONS else "fp32")

    @property
    def name(self) -> str:
        """What answers, in words: the file, or both files of a cascade."""
        if self.exact_file is None:
            return self.file
        return f"cascade {self.file} > {Path(self.exact_file).name} (gate {self.runner.margin:.2f})"

    @classmethod
    def load(cls, path=None, fmt=None, precision=None, threads=None, device="cpu",
             overrides: Overrides = NO_OVERRIDES,
             limits: DecodeLimits = DEFAULT_LIMITS, profile: str | None = None):
        """Load a model file, or pick an artifact from a bundle folder (checking its hash); ``overrides``
        supply or replace classes, size and preprocessing mode (a bare model file has none); ``limits``
        bound what each image may cost to decode; ``profile`` (runtime/machine/threads.py) sets threads and spinning
        where ``threads`` does not."""
        how = deployment(profile)

        def load(f, fmt, spinning=how.spinning):
            return fmt.load(f, threads or how.threads_for(fmt.name), device, spinning)
        given = path or os.environ.get("RUNTIME_MODEL")
        path = Path(given or DEFAULT_MODEL)
        if not path.exists():
            raise ModelError(f"no model at {path}" + ("" if given else
                             " (the default): give --model PATH or set RUNTIME_MODEL, "
                             "or run from the project folder after `make main`"))
        if path.is_dir():
            manifest = Manifest.read(path)
            choice = choose(manifest, fmt, precision, device)
            file, runner = load_verified(path, choice.entry, lambda f: load(f, FORMATS[choice.entry.format]))
            info = manifest.info.with_overrides(overrides, str(path))
            said = size_origin(overrides, "the manifest")
            if choice.cascade is None:
                return cls(runner, info, str(file), limits, choice.reason, precision=choice.entry.precision,
                           said_by=said)
            # the exact file runs on a few calls, each right after the fast one: its idle threads must not
            # spin, or they take the cores from the fast file's next call
            exact, second = load_verified(path, choice.exact, lambda f: load(f, FORMATS[choice.exact.format], False))
            return cls(cascade_runner(runner, second, choice.cascade.margin), info, str(file), limits, choice.reason,
                       str(exact), "cascade", said)
        if not path.is_file():
            raise ModelError(f"{path} is neither a model file nor a bundle folder")
        runner = load(path, format_of(path))
        beside = None if runner.metadata else manifest_beside(path)
        if beside is not None:
            info = beside.info.with_overrides(overrides, str(path))
        else:
            info = ModelInfo.parse(runner.metadata or {}, str(path), "metadata ", shape=runner.input_hw,
                                   channels=runner.input_channels, overrides=overrides)
        said = size_origin(overrides, "its metadata" if runner.metadata else "the manifest beside it")
        return cls(runner, info, str(path), limits, said_by=said)

    def preprocess(self, source) -> np.ndarray:
        """One image (path, bytes, file) to this model's input, within this classifier's decode limits."""
        return self.info.spec.load(source, self.limits)

    def answer(self, batch: np.ndarray) -> Answer:
        """Logits of a preprocessed batch, checked to hold one row per image and one column per class, and
        the rows a cascade's exact file answered."""
        out = self.runner.answer(batch)
        self._check_shape(out.logits, len(batch), self.file)
        return out

    def first_answer(self, batch: np.ndarray) -> Answer:
        """As ``answer``, but in a cascade only the fast file's logits, ``rechecked`` marking the rows that
        ``recheck`` must answer (a caller that gathers them from several batches runs the exact file on
        fuller batches, which cost less per row)."""
        if not isinstance(self.runner, CascadeRunner):
            return self.answer(batch)
        out = self.runner.first(batch)
        self._check_shape(out.logits, len(batch), self.file)
        return out

    def recheck(self, batch: np.ndarray) -> np.ndarray:
        """The cascade's exact file's logits of rows ``first_answer`` marked."""
        logits = self.runner.exact.infer(batch)
        self._check_shape(logits, len(batch), str(self.exact_file))
        return logits

    def _check_shape(self, logits, rows: int, file: str):
        """OutputError when ``logits`` are not one row per image and one column per class."""
        want = (rows, len(self.info.classes))
        if getattr(logits, "shape", None) != want:
            raise OutputError(f"{file}: model answered logits of shape {getattr(logits, 'shape', '?')}, "
                              f"expected {want} ({want[1]} classes)")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits of a preprocessed batch (see ``answer``)."""
        return self.answer(batch).logits

    def predict_batch(self, batch: np.ndarray, top_k=3) -> list[Prediction]:
        """Predictions for an already preprocessed batch; OutputError if any row is not finite."""
        out = self.answer(batch)
        return [self.prediction(row, top_k, again) for row, again in zip(out.logits, out.rechecked, strict=True)]

    def predict(self, sources, top_k=3) -> list[Prediction]:
        """Predictions for several images in one batch; a bad image raises ImageError."""
        return self.predict_batch(np.stack([self.preprocess(s) for s in sources]), top_k)

    def prediction(self, logits: np.ndarray, top_k: int, rechecked: bool = False) -> Prediction:
        """Top labels and softmax scores of one row of logits (``rechecked``: a cascade's exact file gave
        it); OutputError when a logit is NaN or infinite."""
        file = self.exact_file if rechecked and self.exact_file else self.file
        if not np.isfinite(logits).all():
            raise OutputError(f"{file}: model answered non-finite logits (NaN or infinity) for this input")
        z = logits.astype(np.float64)
        if self.info.output == "probabilities":  # the model's own softmax: scores as it gave them
            p = z
        else:
            p = np.exp(z - z.max())
            p /= p.sum()
        order = np.argsort(-p, kind="stable")[:max(1, top_k)]
        top = [{"label": self.info.classes[i], "score": float(p[i])} for i in order]
        return Prediction(top[0]["label"], top[0]["score"], top, [float(v) for v in logits], Path(file).name,
                          bool(rechecked))


def size_origin(overrides: Overrides, otherwise: str) -> str:
    """Who gave a model's input size: ``--size`` when it was given, else ``otherwise``."""
    return "--size" if overrides.size is not None else otherwise


def check_input(runner, info: ModelInfo, file: str, said_by: str):
    """ModelError, before any image is decoded, when the size the runtime would resize to disagrees with the
    model's own fixed input, or is over MAX_SIDE where the model does not fix it."""
    hw, height, width, color = runner.input_hw, info.input.height, info.input.width, info.preprocessing.color
    if hw and all(hw) and tuple(hw) != (height, width):
        raise ModelError(f"{file}: the model's input is {hw[0]}x{hw[1]}; {said_by} says {height}x{width}")
    channels = runner.input_channels
    if channels and channels != COLORS[color]:
        raise ModelError(f"{file}: the model's input has {channels} channel{'s' * (channels != 1)}; {said_by} says "
                         f"{color} ({COLORS[color]})")
    fixed = hw and all(hw)
    if not fixed and not 1 <= min(height, width) <= max(height, width) <= MAX_SIDE:
        raise ModelError(f"{file}: {said_by} asks for a {height}x{width} input; 1 to {MAX_SIDE} per side")


def cascade_runner(fast, exact, margin: float) -> CascadeRunner:
    """One runner over a cascade's two loaded files, the exact one answering rows under ``margin``."""
    backends = " + ".join(dict.fromkeys((fast.backend, exact.backend)))
    providers = " + ".join(dict.fromkeys((fast.provider, exact.provider)))
    return CascadeRunner(backends, providers, fast.threads, fast.outputs, fast.metadata, fast.input_shape,
                         fast=fast, exact=exact, margin=margin)
