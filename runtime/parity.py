"""Compare the logits of any two runners on the same images (convert, benchmarks, ``runtime.compare``),
and judge the agreement as a statistic: a 95% Wilson interval, whose lower bound must clear a threshold."""

import math
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
    only_ref_right: int | None = None  # labelled images the reference got right and the export wrong
    only_export_right: int | None = None  # and the other way round

    @property
    def accuracy_drop(self) -> float | None:
        """Points of accuracy lost against the reference (negative: gained)."""
        return None if self.accuracy is None else round(100 * (self.accuracy_ref - self.accuracy), 9)

    @property
    def loss_p_value(self) -> float | None:
        """One-sided exact sign test on the images exactly one of the two got right: the chance of at least
        this many going the reference's way if each were a coin toss (None without the counts)."""
        if self.only_ref_right is None or self.only_export_right is None:
            return None
        n, k = self.only_ref_right + self.only_export_right, self.only_ref_right
        return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n

    @property
    def agreeing(self) -> int:
        """Images whose top-1 class is the reference's."""
        return round(self.top1_agreement * self.images)

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson interval of the top-1 agreement."""
        return wilson(self.agreeing, self.images)

    def agreement_text(self) -> str:
        """``99.4% [98.0-99.9%] of 341``: the agreement, its 95% interval and the number of images."""
        low, high = self.interval
        return f"{self.top1_agreement:.1%} [{low:.1%}-{high:.1%}] of {self.images}"


Z95 = 1.959964


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (95% by default); (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p, z2 = k / n, z * z
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def images_needed(threshold: float) -> int:
    """The fewest images on which a perfect agreement's lower bound clears ``threshold``."""
    return math.ceil(Z95 * Z95 * threshold / (1 - threshold)) if threshold < 1 else 10 ** 9


@dataclass(frozen=True)
class Threshold:
    """What a precision must achieve against the original model: the lower bound of the 95% interval of
    its top-1 agreement, and optionally an accuracy drop and a logit difference."""

    min_top1_agreement: float
    max_accuracy_drop: float | None = None  # in points, when labels are known
    max_rel_diff: float | None = None  # max |diff| / logit range


# fp32 must compute the same function (the logit difference); its agreement bound needs >= 189 images.
# int8: with 95% confidence at most 8% of answers change; the cascade (a float file re-checking the int8
# file's near-ties) is what answers like the source model, at fp32's bound.
THRESHOLDS = {
    "fp32": Threshold(0.98, max_rel_diff=1e-4),
    "fp16": Threshold(0.97, max_accuracy_drop=1.0),
    "int8": Threshold(0.92, max_accuracy_drop=1.0),
    "cascade": Threshold(0.98, max_accuracy_drop=0.5),
}


LOSS_P = 0.05  # an accuracy drop over the limit fails only when the lost answers are unlikely to be chance


def judge(p: Parity, precision: str) -> Parity:
    """Set ``passed`` and ``failures`` (every check that fails) from the precision's thresholds. An accuracy
    drop counts as a statistic too: over its limit and more one-sided than chance (a sign test on the images
    that only one of the two got right, p < LOSS_P); 341 images cannot tell a 1-point drop from none."""
    t = THRESHOLDS[precision]
    low = p.interval[0]
    checks = [(low >= t.min_top1_agreement,
               f"top-1 agreement {p.agreement_text()}: its 95% lower bound is under {t.min_top1_agreement:.0%}"
               + (f" (no score on {p.images} images can show it: {images_needed(t.min_top1_agreement)} needed)"
                  if p.images < images_needed(t.min_top1_agreement) else ""))]
    if t.max_rel_diff is not None:
        checks.append((p.rel_logit_diff <= t.max_rel_diff,
                       f"max logit diff {p.rel_logit_diff:.2e} of the logit range > {t.max_rel_diff:.0e}"))
    if t.max_accuracy_drop is not None and p.accuracy_drop is not None:
        chance = p.loss_p_value
        checks.append((p.accuracy_drop <= t.max_accuracy_drop or (chance is not None and chance >= LOSS_P),
                       f"accuracy drop {p.accuracy_drop:.1f} points > {t.max_accuracy_drop:g}"
                       + ("" if chance is None else f", and no coin toss: {p.only_ref_right} images only the reference "
                          f"got right, {p.only_export_right} only the export (sign test p = {chance:.3f} < {LOSS_P})")))
    p.failures = [msg for ok, msg in checks if not ok]
    p.passed = not p.failures
    return p


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
        right_ref, right_out = top_ref[:, 0] == labels, top_out[:, 0] == labels
        p.accuracy_ref, p.accuracy = float(np.mean(right_ref)), float(np.mean(right_out))
        p.only_ref_right = int(np.sum(right_ref & ~right_out))
        p.only_export_right = int(np.sum(right_out & ~right_ref))
    return p


