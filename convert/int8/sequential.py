"""Sequential GPTQ: each convolution, in graph order, gets the int8 weights (and float bias) that best
reproduce its float output from the inputs the partly quantized network feeds it, 8-bit activations
included, so each layer also corrects the error of the layers before it (GPTQ's asymmetric form)."""

import numpy as np
from tqdm import tqdm

from convert.int8.onnx_graph import _attrs, damped, gptq_channels, gptq_rows, patch_rows

CHUNK = 16  # images run at once


def fake_quant(model, grid: dict):
    """A copy of the float graph with a QuantizeLinear/DequantizeLinear pair on each tensor of ``grid``;
    its readers read the dequantized value, so the float graph computes what the int8 graph rounds."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = []
    for t in [i.name for i in m.graph.input if i.name in grid]:
        nodes += _qdq(t, grid[t], m)
    for n in m.graph.node:
        for k, t in enumerate(n.input):
            if t in grid:
                n.input[k] = f"{t}/fq"
        nodes.append(n)
        for t in [o for o in n.output if o in grid]:
            nodes += _qdq(t, grid[t], m)
    m.graph.ClearField("node")
    m.graph.node.extend(nodes)
    return m


def _qdq(t: str, grid: tuple, m) -> list:
    """The Q and DQ nodes that round tensor ``t`` to ``t/fq``, their scale and zero point added to ``m``."""
    from onnx import helper, numpy_helper

    m.graph.initializer.extend([numpy_helper.from_array(grid[0], f"{t}/scale"),
                                numpy_helper.from_array(grid[1], f"{t}/zero")])
    return [helper.make_node("QuantizeLinear", [t, f"{t}/scale", f"{t}/zero"], [f"{t}/q"]),
            helper.make_node("DequantizeLinear", [f"{t}/q", f"{t}/scale", f"{t}/zero"], [f"{t}/fq"])]


def submodel(model, target: str, available: set):
    """The nodes that compute ``target`` from the ``available`` tensors, as a model whose inputs are the
    available tensors it reads."""
    from onnx import TensorProto, helper

    producer = {o: k for k, n in enumerate(model.graph.node) for o in n.output}
    keep, need, inputs = set(), [target], set()
    while need:
        t = need.pop()
        if t in available:
            inputs.add(t)
        elif t in producer and producer[t] not in keep:
            keep.add(producer[t])
            need.extend(model.graph.node[producer[t]].input)
    nodes = [n for k, n in enumerate(model.graph.node) if k in keep]
    read = {i for n in nodes for i in n.input}
    graph = helper.make_graph(
        nodes, "sub", [helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in sorted(inputs)],
        [helper.make_tensor_value_info(target, TensorProto.FLOAT, None)],
        [i for i in model.graph.initializer if i.name in read])
    return helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)


def compute(model, target: str, cache: dict) -> np.ndarray:
    """``target`` computed from the tensors in ``cache`` (all images), and kept there. Run unoptimized:
    onnxruntime's fusions of a float graph with Q/DQ pairs change what it computes."""
    import onnxruntime as ort

    if target not in cache:
        sub = submodel(model, target, set(cache))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # its fusions move Q/DQ
        session = ort.InferenceSession(sub.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in sub.graph.input]
        total = len(next(iter(cache.values())))
        cache[target] = np.concatenate([
            session.run([target], {t: cache[t][i:i + CHUNK] for t in names})[0] for i in range(0, total, CHUNK)])
    return cache[target]


def products(node, xf: np.ndarray, xq: np.ndarray, bias: bool):
    """(H, G): the quantized inputs' Gram matrix Xq Xq^T and the cross term Xf Xq^T of a Conv's patches
    (a row of ones appended for its bias), per channel for a depthwise Conv."""
    h = g = 0
    for i in range(0, len(xq), CHUNK):
        pq, pf = (patch_rows(x[i:i + CHUNK], node, bias) for x in (xq, xf))
        h = h + pq @ pq.transpose(0, 2, 1)
        g = g + pf @ pq.transpose(0, 2, 1)
    return (h, g) if _attrs(node).get("group", 1) > 1 else (h[0], g[0])


def refit(w: np.ndarray, h: np.ndarray, g: np.ndarray, damp: float) -> np.ndarray:
    """Least-squares weights W' = W (G + lI) (H + lI)^-1 that map quantized inputs closest to the float
    outputs, damped toward W (not toward zero); a row per output, or per channel when ``h`` is stacked."""
    hd = damped(h, damp)
    gd = g + (hd - h)
    if h.ndim == 2:
        return np.linalg.solve(hd, gd.T @ w.T).T
    return np.linalg.solve(hd, np.einsum("ckl,ck->cl", gd, w)[..., None])[..., 0]


def sequential_gptq(model, grid: dict, batch: np.ndarray, qmax=127, damp=0.01):
    """The float graph with every Conv's weights rounded (kept in float, on the quantizer's grid) and its
    bias refitted, one Conv at a time in graph order, on the inputs the int8 graph of ``grid`` gives it."""
    from onnx import numpy_helper

    fq = fake_quant(model, grid)
    inits = {i.name: i for i in model.graph.initializer}
    fq_inits = {i.name: i for i in fq.graph.initializer}
    fq_nodes = {n.output[0]: n for n in fq.graph.node}
    first = model.graph.input[0].name
    float_cache, quant_cache = {first: batch}, {first: batch}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in inits]
    for n in tqdm(convs, desc="sequential GPTQ", unit="conv"):
        xf = compute(model, n.input[0], float_cache)
        xq = compute(fq, fq_nodes[n.output[0]].input[0], quant_cache)
        bias = len(n.input) > 2 and n.input[2] in inits
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
        rows = w.reshape(len(w), -1)
        if bias:
            rows = np.concatenate([rows, numpy_helper.to_array(inits[n.input[2]])[:, None]], 1)
        h, g = products(n, xf, xq, bias)
        fit = refit(rows, h, g, damp)
        rounder = gptq_channels if h.ndim == 3 else gptq_rows
        q = rounder(fit, h, qmax, damp, free=int(bias))
        for name, value in ((n.input[1], q[:, :rows.shape[1] - bias].reshape(w.shape)),
                            *(((n.input[2], q[:, -1]),) if bias else ())):
            fq_inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    for name, init in inits.items():
        init.CopyFrom(fq_inits[name])
    return model
