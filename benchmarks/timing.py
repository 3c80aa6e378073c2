"""Latency percentiles, throughput, and this machine's matrix-multiply peak."""

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Latency:
    """Milliseconds per call after warm-up."""

    p50: float
    p90: float
    p99: float
    runs: int


def latency(fn, runs=50, warmup=5, budget_s=60.0) -> Latency:
    """Call ``fn()`` ``warmup`` times, then up to ``runs`` times (or until ``budget_s``)."""
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < runs and (not times or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return Latency(float(p50), float(p90), float(p99), len(times))


def throughput(fn, batch: int, seconds=3.0) -> float:
    """Images per second of ``fn()`` processing ``batch`` images, after one warm-up call."""
    fn()
    n, start = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n * batch / (time.perf_counter() - start)


def matmul_peak_gflops(n=2048, repeats=5) -> float:
    """Best float32 GFLOP/s of an n x n matrix product with numpy's BLAS (all threads it uses)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
