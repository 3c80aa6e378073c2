"""The parity check of a conversion: judge an export by its precision's thresholds (runtime/parity.py)
and raise ParityError naming every failed check."""

from convert.errors import ParityError
from runtime.parity import Parity, judge


def check(p: Parity, precision: str, what: str) -> Parity:
    """Judge and raise ParityError naming ``what`` and every failed check."""
    judge(p, precision)
    if not p.passed:
        raise ParityError(f"{what}: parity failed: {'; '.join(p.failures)}")
    return p
