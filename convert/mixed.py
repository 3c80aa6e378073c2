"""Mixed precision: the activation tensors that 8 bits render worst, kept at 16 bits (onnxruntime then
runs the operators around them in float)."""

import numpy as np

from convert.onnx_graph import tensor_runs


def activation_grid(qdq) -> dict:
    """Activation tensor -> (scale, zero point) arrays of the QuantizeLinear a QDQ graph puts on it."""
    from onnx import numpy_helper

    inits = {i.name: i for i in qdq.graph.initializer}
    return {n.input[0]: (numpy_helper.to_array(inits[n.input[1]]), numpy_helper.to_array(inits[n.input[2]]))
            for n in qdq.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


def rounding_sqnr(model, grid: dict, batch: np.ndarray) -> dict:
    """Each tensor of ``grid``: SQNR in dB of its float values on ``batch`` against their 8-bit rounding."""
    signal, noise = dict.fromkeys(grid, 0.0), dict.fromkeys(grid, 0.0)
    for run in tensor_runs(model, list(grid), batch):
        for t, (scale, zero) in grid.items():
            x, z = run[t].astype(np.float64), float(zero)
            rounded = (np.clip(np.round(x / scale) + z, 0, 255) - z) * float(scale)
            signal[t] += float(np.sum(x ** 2))
            noise[t] += float(np.sum((x - rounded) ** 2))
    return {t: 10 * np.log10(max(signal[t], 1e-30) / max(noise[t], 1e-30)) for t in grid}


def worst_tensors(model, grid: dict, batch: np.ndarray, n: int) -> list[str]:
    """The ``n`` tensors of ``grid`` with the lowest 8-bit rounding SQNR on ``batch``, worst first."""
    sqnr = rounding_sqnr(model, grid, batch)
    return sorted(sqnr, key=sqnr.get)[:n]
