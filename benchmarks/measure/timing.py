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
    mean: float = 0.0


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
    return Latency(float(p50), float(p90), float(p99), len(times), float(np.mean(times)))


def throughput(fn, batch: int, seconds=3.0) -> float:
    """Images per second of ``fn()`` processing ``batch`` images, after one warm-up call."""
    fn()
    n, start = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n * batch / (time.perf_counter() - start)


def matmul_peak_gflops(n=2048, repeats=5) -> dict[str, float]:
    """Best float32 GFLOP/s of an n x n matrix product in numpy's BLAS and in ONNX Runtime's MLAS
    (all threads each uses); the larger one is this machine's measured peak."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
    out = {"numpy": _best_rate(lambda: a @ b, n, repeats)}
    try:
        run = _ort_matmul("MatMul", n, "FLOAT", "FLOAT", "FLOAT")
        out["onnxruntime"] = _best_rate(lambda: run(a, b), n, repeats)
    except ImportError:
        pass
    return out


def int8_peak_gops(n=2048, repeats=5) -> float:
    """Best int8 GOP/s of an n x n MatMulInteger (uint8 x int8, int32 out) in ONNX Runtime, all threads:
    the kernel int8 Conv and MatMul run on (VNNI where the CPU has it)."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (n, n), np.uint8), rng.integers(-127, 127, (n, n), np.int8)
    run = _ort_matmul("MatMulInteger", n, "UINT8", "INT8", "INT32")
    return _best_rate(lambda: run(a, b), n, repeats)


def gpu_matmul_peak_gflops(n: int = 8192, repeats: int = 5) -> float:
    """GFLOP/s of an n x n float32 product on the GPU through JAX at its default precision (the one the
    Keras rows run at); NaN without JAX or a GPU."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return float("nan")
    if not any(d.platform == "gpu" for d in jax.devices()):
        return float("nan")
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    return _best_rate(lambda: dot(a, a).block_until_ready(), n, repeats)


def _best_rate(fn, n: int, repeats: int) -> float:
    """Giga-operations per second (2 n^3 per call) of the fastest of ``repeats + 1`` calls of ``fn``."""
    return 2 * n ** 3 / 1e9 / min(_timed(fn) for _ in range(repeats + 1))


def _ort_matmul(op: str, n: int, a_type: str, b_type: str, c_type: str):
    """An onnxruntime session computing one n x n product ``op`` (MatMul, MatMulInteger) of the given
    TensorProto element types."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(x, getattr(TensorProto, t), [n, n])
          for x, t in (("a", a_type), ("b", b_type), ("c", c_type))]
    graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["c"])], "mm", io[:2], io[2:])
    # IR 8 (opset 17's own): onnx's newest IR is refused by an older onnxruntime, as on the GPU machine
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda a, b: sess.run(None, {"a": a, "b": b})


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
