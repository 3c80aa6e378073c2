"""Fit a cascade: the int8 file answers, and where its own top-2 logit margin is under a gate, a float
file answers again. The gate is fitted on the parity images, checked on images it was not fitted on."""

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from runtime.bundle import Artifact, Cascade, GatePoint, Half, Manifest
from runtime.cascade import margins, merge
from runtime.choice import this_machine
from runtime.parity import compare, judge

GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
SEED = 0
MISS_RATE = 1e-3  # changed answers per image the error model may leave above the gate (the goal: 1 in 372)
STEP = 0.01


def fit_gate(ref: np.ndarray, fast: np.ndarray, exact: np.ndarray) -> float:
    """The smallest gate at which the cascade agrees with ``ref`` on every image where the exact file does."""
    top = ref.argmax(1)
    fixable = (fast.argmax(1) != top) & (exact.argmax(1) == top)
    return float(np.nextafter(margins(fast[fixable]).max(), math.inf)) if fixable.any() else 0.0


def margin_error(ref: np.ndarray, fast: np.ndarray) -> float:
    """RMS error of the fast file in the gap between the reference's top two classes: how far its own
    margin strays from the truth."""
    order = np.argsort(-ref, 1)[:, :2]
    rows = np.arange(len(ref))
    gap = lambda x: x[rows, order[:, 0]] - x[rows, order[:, 1]]  # noqa: E731
    return float(np.sqrt(np.mean((gap(fast) - gap(ref)) ** 2)))


def expected_misses(ref: np.ndarray, sigma: float, gate: float) -> float:
    """Changed answers per image left above ``gate`` if the fast file's error in each image's top-2 gap were
    normal with rms ``sigma``: an image changes unseen when its error exceeds its gap plus the gate."""
    if sigma == 0:
        return 0.0
    top2 = np.sort(ref, 1)[:, -2:]
    z = (top2[:, 1] - top2[:, 0] + gate) / (sigma * math.sqrt(2))
    return float(np.mean([0.5 * math.erfc(v) for v in z]))


def error_bound(ref: np.ndarray, fast: np.ndarray) -> float:
    """The smallest gate (in STEP) at which the error model expects at most MISS_RATE changed answers per image."""
    sigma, gate = margin_error(ref, fast), 0.0
    while expected_misses(ref, sigma, gate) > MISS_RATE:
        gate += STEP
    return round(gate, 2)


def gate_of(ref, fast, exact) -> float:
    """The gate a set of images calls for: the smallest that fixes every changed answer seen there, and at
    least what the fast file's error distribution calls for (``error_bound``)."""
    return max(fit_gate(ref, fast, exact), error_bound(ref, fast))


def halves(n: int) -> list[np.ndarray]:
    """Two seeded halves of ``n`` image indices."""
    order = np.random.default_rng(SEED).permutation(n)
    return [np.sort(order[:n // 2]), np.sort(order[n // 2:])]


def fit(ref: np.ndarray, fast: np.ndarray, exact: np.ndarray, labels, fast_entry: Artifact,
        exact_entry: Artifact, fitted_on: str, margin: float | None = None) -> Cascade:
    """The cascade of two files from their logits on the parity images: the gate fitted on all of them
    (or ``margin``, set by hand), its parity measured on each half with the gate of the other half."""
    parts = halves(len(ref))
    gates = [margin if margin is not None else gate_of(ref[p], fast[p], exact[p]) for p in parts]
    held = np.empty_like(ref)
    records = []
    for part, other, gate in ((parts[1], parts[0], gates[0]), (parts[0], parts[1], gates[1])):
        held[part], rechecked = merge(fast[part], exact[part], gate)
        records.append(Half(len(other), gate, len(part), float(np.mean(held[part].argmax(1) == ref[part].argmax(1))),
                            float(rechecked.mean())))
    fitted = fit_gate(ref, fast, exact)
    gate = margin if margin is not None else max(fitted, error_bound(ref, fast))
    parity = judge(compare(ref, held, labels), "cascade")
    rate = float(merge(fast, exact, gate)[1].mean())
    table = []
    for g in sorted({*GRID, gate}):
        out, rechecked = merge(fast, exact, g)
        table.append(GatePoint(g, float(rechecked.mean()), float(np.mean(out.argmax(1) == ref.argmax(1)))))
    here = this_machine()
    timed = (fast_entry.measured_on == exact_entry.measured_on == here and fast_entry.latency_ms
             and exact_entry.latency_ms)
    return Cascade(fast_entry.file, exact_entry.file, gate, fitted_on, rate, parity,
                   "fitted" if margin is None else "hand",
                   0.0 if margin is not None else gate - fitted,
                   tuple(records), tuple(table),
                   fast_entry.latency_ms + rate * exact_entry.latency_ms if timed else None, here if timed else None)


def exact_grade(entry: Artifact) -> bool:
    """A float file that answers like the source model: it passes fp32's parity thresholds."""
    if entry.precision == "int8" or not entry.parity.passed:
        return False
    return judge(replace(entry.parity, failures=[]), "fp32").passed


def fastest(entries: list[Artifact]) -> Artifact | None:
    """The entry with the lowest batch-1 latency measured on this machine (else the first given)."""
    here = this_machine()
    timed = [a for a in entries if a.measured_on == here and a.latency_ms]
    return min(timed, key=lambda a: a.latency_ms) if timed else (entries[0] if entries else None)


def cascades(m: Manifest, logits_of: Callable[[str], np.ndarray], ref: np.ndarray, labels, fitted_on: str,
             margin: float | None = None) -> list[Cascade]:
    """One cascade per published int8 file, over the fastest exact-grade float file of the bundle (either
    format); none where no float file is exact-grade."""
    exact = fastest([a for a in m.verified() if exact_grade(a)])
    if exact is None:
        return []
    fast = [a for a in m.verified() if a.precision == "int8"]
    return [fit(ref, logits_of(a.file), logits_of(exact.file), labels, a, exact, fitted_on, margin) for a in fast]
