"""Compare the logits of any two runners on the same images (convert, benchmarks, ``runtime.compare``)."""

from dataclasses import dataclass, field

import numpy as np

from runtime.errors import ModelError


@dataclass
class Parity:
    """How closely an export's logits follow the reference's."""

    images: int
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    rel_logit_diff: float
    top1_agreement: float
    top5_overlap: float
    accuracy_ref: float | None = None
    accuracy: float | None = None
    passed: bool = False
    failures: list[str] = field(default_factory=list)

    @property
    def accuracy_drop(self) -> float | None:
        """Points of accuracy lost against the reference (negative: gained)."""
        return None if self.accuracy is None else round(100 * (self.accuracy_ref - self.accuracy), 9)


class OutputMismatch(ModelError):
    """Two models' outputs cannot be compared: other shapes, or non-finite values."""


def check_outputs(ref: np.ndarray, out: np.ndarray):
    """Raise OutputMismatch unless both are finite (images, classes) matrices of one shape."""
    problems = []
    if ref.shape != out.shape or ref.ndim != 2:
        problems.append(f"output shapes {tuple(ref.shape)} and {tuple(out.shape)} differ or are not 2-D")
    for name, x in (("reference", ref), ("compared", out)):
        bad = int(np.size(x) - np.isfinite(x).sum())
        if bad:
            problems.append(f"{bad} non-finite logits in the {name} output")
    if problems:
        raise OutputMismatch("; ".join(problems))


def compare(ref: np.ndarray, out: np.ndarray, labels=None) -> Parity:
    """Logit differences, top-1 agreement and top-5 overlap; accuracies when labels are given.
    Shapes and finiteness are checked first (OutputMismatch names every failed check)."""
    ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
    check_outputs(ref, out)
    diff = np.abs(ref - out)
    k = min(5, ref.shape[1])
    top_ref, top_out = np.argsort(-ref, 1)[:, :k], np.argsort(-out, 1)[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(top_ref, top_out, strict=True)])
    p = Parity(len(ref), float(diff.max()), float(diff.mean()), float(diff.max() / max(np.ptp(ref), 1e-12)),
               float(np.mean(top_ref[:, 0] == top_out[:, 0])), float(overlap))
    if labels is not None and all(label is not None for label in labels):
        labels = np.asarray(labels)
        p.accuracy_ref = float(np.mean(top_ref[:, 0] == labels))
        p.accuracy = float(np.mean(top_out[:, 0] == labels))
    return p


