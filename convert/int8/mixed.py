"""Mixed precision: the activation tensors that 8 bits render worst, kept at 16 bits (onnxruntime then
runs the operators around them in float), or whole groups of them left in float to see what each group's
rounding costs."""

import numpy as np

from convert.int8.onnx_graph import tensor_runs


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


KINDS = ("depthwise", "conv", "add", "other")  # activation tensors by the operator that writes them


def tensor_kind(node) -> str:
    """``node``'s output group: a depthwise convolution's, another convolution's, an Add's, or other."""
    from convert.int8.onnx_graph import _attrs

    if node.op_type == "Conv":
        return "depthwise" if _attrs(node).get("group", 1) > 1 else "conv"
    return "add" if node.op_type == "Add" else "other"


def unround(qdq, relus: set, kinds) -> int:
    """Leave ``qdq``'s activations of ``kinds`` in float: drop the QuantizeLinear/DequantizeLinear pair on each, and
    put back the Relu that the quantizer folds into the pair's clamp (``relus``: the float graph's Relu outputs).
    Returns how many tensors it left in float."""
    from onnx import helper

    g = qdq.graph
    producer = {o: n for n in g.node for o in n.output}
    quant = {n.output[0]: n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] in producer}
    floated = {q.input[0] for q in quant.values() if tensor_kind(producer[q.input[0]]) in kinds}
    bypass = {n.output[0]: quant[n.input[0]].input[0] for n in g.node
              if n.op_type == "DequantizeLinear" and n.input[0] in quant and quant[n.input[0]].input[0] in floated}
    nodes = []
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and (n.input[0] in floated or n.output[0] in bypass):
            continue
        for i, name in enumerate(n.input):
            n.input[i] = bypass.get(name, name)
        nodes.append(n)
        t = n.output[0]
        if t in floated and t in relus and n.op_type != "Relu":
            n.output[0] = t + "/before_relu"
            nodes.append(helper.make_node("Relu", [n.output[0]], [t], name=t + "/relu"))
    del g.node[:]
    g.node.extend(nodes)
    return len(floated)
