"""Compare the logits of any two runners on the same images (used by convert and benchmarks)."""

from dataclasses import dataclass

import numpy as np


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
    failure: str | None = None

    @property
    def accuracy_drop(self) -> float | None:
        """Points of accuracy lost against the reference (negative: gained)."""
        return None if self.accuracy is None else round(100 * (self.accuracy_ref - self.accuracy), 9)


def compare(ref: np.ndarray, out: np.ndarray, labels=None) -> Parity:
    """Logit differences, top-1 agreement and top-5 overlap; accuracies when labels are given."""
    ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
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


