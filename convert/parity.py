"""Parity thresholds per precision, in one place, and the check that raises ParityError."""

from dataclasses import dataclass

from convert.errors import ParityError
from runtime.parity import Parity


@dataclass(frozen=True)
class Threshold:
    """What a precision must achieve against the original model."""

    min_top1_agreement: float
    max_accuracy_drop: float | None = None  # in points, when labels are known
    max_rel_diff: float | None = None  # max |diff| / logit range


THRESHOLDS = {
    "fp32": Threshold(1.0, max_rel_diff=1e-4),
    "fp16": Threshold(0.99, max_accuracy_drop=1.0),
    "int8": Threshold(0.97, max_accuracy_drop=1.0),
}


def judge(p: Parity, precision: str) -> Parity:
    """Set ``passed`` and ``failures`` (every check that fails) from the precision's thresholds."""
    t = THRESHOLDS[precision]
    checks = [(p.top1_agreement >= t.min_top1_agreement,
               f"top-1 agreement {p.top1_agreement:.1%} < {t.min_top1_agreement:.0%}")]
    if t.max_rel_diff is not None:
        checks.append((p.rel_logit_diff <= t.max_rel_diff,
                       f"max logit diff {p.rel_logit_diff:.2e} of the logit range > {t.max_rel_diff:.0e}"))
    if t.max_accuracy_drop is not None and p.accuracy_drop is not None:
        checks.append((p.accuracy_drop <= t.max_accuracy_drop,
                       f"accuracy drop {p.accuracy_drop:.1f} points > {t.max_accuracy_drop:.0f}"))
    p.failures = [msg for ok, msg in checks if not ok]
    p.passed = not p.failures
    return p


def check(p: Parity, precision: str, what: str) -> Parity:
    """Judge and raise ParityError naming ``what`` and every failed check."""
    judge(p, precision)
    if not p.passed:
        raise ParityError(f"{what}: parity failed: {'; '.join(p.failures)}")
    return p
