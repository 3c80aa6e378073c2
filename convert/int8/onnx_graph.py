"""Float-exact and weight-rounding transforms of an ONNX graph that make its int8 export closer to float:
channel equalization around depthwise convolutions and GPTQ rounding of convolution weights."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def tensor_runs(model, tensors: list[str], batch: np.ndarray, size=8):
    """The named tensors of a float model run on ``batch``, ``size`` images at a time: one dict per chunk
    (one session for all chunks)."""
    import onnx
    import onnxruntime as ort

    if not tensors:  # onnxruntime refuses a run that asks for no output
        return
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    m.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors)
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    for i in range(0, len(batch), size):
        yield dict(zip(tensors, session.run(tensors, {model.graph.input[0].name: batch[i:i + size]}), strict=True))


def tensor_means(model, tensors: list[str], batch: np.ndarray, reduce) -> list[np.ndarray]:
    """``reduce`` of each named tensor over ``batch`` (a float model run with those tensors as outputs)."""
    if not tensors:
        return []
    runs = list(tensor_runs(model, tensors, batch))
    return [reduce(np.concatenate([r[t] for r in runs])) for t in tensors]


def depthwise_pairs(model) -> list:
    """(depthwise Conv, the pointwise Conv that alone reads its output) pairs of the graph."""
    readers = _readers(model)
    pairs = []
    for n in model.graph.node:
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        after = readers.get(n.output[0], [])
        if n.op_type == "Conv" and group > 1 and len(after) == 1 and after[0].op_type == "Conv":
            pairs.append((n, after[0]))
    return pairs


def equalize(model, batch: np.ndarray, alpha: float):
    """Scale each depthwise output channel c by s_c = (range_c / max range)^alpha, undone in the pointwise
    weights: the float function is unchanged, per-tensor int8 ranges of the depthwise outputs even out."""
    from onnx import numpy_helper

    weights = {i.name: i for i in model.graph.initializer}
    pairs = depthwise_pairs(model)
    ranges = tensor_means(model, [dw.output[0] for dw, _ in pairs], batch, lambda a: np.abs(a).max(axis=(0, 2, 3)))
    for (dw, pw), r in zip(pairs, ranges, strict=True):
        r = np.maximum(r, 1e-2 * r.max())
        s = np.clip((r / r.max()) ** alpha, 1 / 64, 1).astype(np.float32)
        for name, shape in ((dw.input[1], (-1, 1, 1, 1)), (pw.input[1], (1, -1, 1, 1))):
            w = numpy_helper.to_array(weights[name])
            scaled = w / s.reshape(shape) if name == dw.input[1] else w * s.reshape(shape)
            weights[name].CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), name))
    return model


def round_weights(model):
    """Every Conv/MatMul/Gemm weight rounded to its symmetric per-output-channel int8 grid, kept in float."""
    from onnx import numpy_helper

    weights = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type in ("Conv", "MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in weights:
            w = numpy_helper.to_array(weights[n.input[1]])
            if w.ndim >= 2:
                axis = 0 if n.op_type == "Conv" else w.ndim - 1
                scale = np.abs(w).max(axis=tuple(a for a in range(w.ndim) if a != axis), keepdims=True) / 127
                q = np.round(w / np.where(scale == 0, 1, scale)) * scale
                weights[n.input[1]].CopyFrom(numpy_helper.from_array(q.astype(w.dtype), n.input[1]))
    return model


def _readers(model) -> dict:
    """Tensor name -> the nodes that read it."""
    readers = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    return readers


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def constant_convs(model) -> list:
    """The Conv nodes whose weights are constants of the graph (what GPTQ rounds)."""
    weights = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in weights]


def not_applied(model, options: dict) -> dict[str, str]:
    """The graph rewrites that ``options`` ask for and that step aside on this graph, each with why."""
    checks = {"equalize_relu": (relu_chains, "no Conv with bias -> Relu -> depthwise Conv chain"),
              "equalize": (depthwise_pairs, "no depthwise Conv -> pointwise Conv pair"),
              "gptq": (constant_convs, "no Conv with constant weights")}
    return {name: why for name, (find, why) in checks.items() if options.get(name) and not find(model)}


def relu_chains(model) -> list:
    """(Conv with bias, its Relu, the depthwise Conv that alone reads it) triples, where scaling a channel
    down before the Relu and up in the depthwise filter is exact and free for per-channel int8 weights."""
    readers, producer = _readers(model), {o: n for n in model.graph.node for o in n.output}
    chains = []
    for r in model.graph.node:
        conv, after = producer.get(r.input[0]) if r.op_type == "Relu" else None, readers.get(r.output[0], [])
        if (conv is not None and conv.op_type == "Conv" and len(conv.input) == 3 and len(after) == 1
                and len(readers.get(conv.output[0], [])) == 1 and after[0].op_type == "Conv"
                and _attrs(after[0]).get("group", 1) > 1):
            chains.append((conv, r, after[0]))
    return chains


def equalize_relu(model, batch: np.ndarray):
    """Give every channel of each chain's Relu output the same range: that tensor's one int8 scale then
    fits all its channels, as if it were quantized per channel; the float function is unchanged."""
    from onnx import numpy_helper

    weights = {i.name: i for i in model.graph.initializer}
    chains = relu_chains(model)
    ranges = tensor_means(model, [r.output[0] for _, r, _ in chains], batch, lambda a: np.abs(a).max(axis=(0, 2, 3)))
    for (conv, _, dw), r in zip(chains, ranges, strict=True):
        s = np.maximum(r, 1e-3 * r.max()) / r.max()
        for name, shape, power in ((conv.input[1], (-1, 1, 1, 1), -1), (conv.input[2], (-1,), -1),
                                   (dw.input[1], (-1, 1, 1, 1), 1)):
            w = numpy_helper.to_array(weights[name]) * s.reshape(shape) ** power
            weights[name].CopyFrom(numpy_helper.from_array(w.astype(np.float32), name))
    return model


def patches(x: np.ndarray, node) -> np.ndarray:
    """The (channels, kh*kw, positions) input patches a Conv node multiplies with its weights."""
    a = _attrs(node)
    s, p = a.get("strides", [1, 1]), a.get("pads", [0, 0, 0, 0])
    x = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    v = sliding_window_view(x, a["kernel_shape"], axis=(2, 3))[:, :, ::s[0], ::s[1]]
    n, c, oh, ow, kh, kw = v.shape
    return v.transpose(1, 4, 5, 0, 2, 3).reshape(c, kh * kw, n * oh * ow)


def _row_scales(w: np.ndarray, qmax: int) -> np.ndarray:
    """Each row's symmetric int8 step: its largest magnitude over ``qmax`` (1 for an all-zero row)."""
    scale = np.abs(w).max(1) / qmax
    scale[scale == 0] = 1
    return scale


def damped(h: np.ndarray, damp: float) -> np.ndarray:
    """``h`` (or each of a stack of them) plus ``damp`` times its mean diagonal on the diagonal, and 1 where
    its diagonal is 0 (an input never seen), so that it can be inverted."""
    eye, diag = np.eye(h.shape[-1]), np.diagonal(h, axis1=-2, axis2=-1)
    return h + damp * diag.mean(-1)[..., None, None] * eye + eye * (diag == 0)[..., None]


def patch_rows(x: np.ndarray, node, bias=False) -> np.ndarray:
    """A Conv's input patches as (groups, rows, positions) in float64: a group per channel for a depthwise
    Conv, else one; with ``bias``, a row of ones appended to each group."""
    p = patches(x, node).astype(np.float64)
    if _attrs(node).get("group", 1) == 1:
        p = p.reshape(1, -1, p.shape[-1])
    return np.concatenate([p, np.ones((len(p), 1, p.shape[-1]))], 1) if bias else p


def _round(x: np.ndarray, scale: np.ndarray, qmax: int) -> np.ndarray:
    """``x`` rounded onto the grid of ``scale`` steps, clipped to +-qmax steps."""
    return np.clip(np.round(x / scale), -qmax, qmax) * scale


def _keep_max_on_grid(q: np.ndarray, w: np.ndarray, scale: np.ndarray, qmax: int, free=0) -> np.ndarray:
    """Rows of ``q`` whose largest value moved off +-qmax steps replaced by plain rounding of ``w`` (its last
    ``free`` columns as they are), so the quantizer, which sets each row's scale from its max, finds the same grid."""
    n = w.shape[1] - free
    off_grid = np.abs(q[:, :n]).max(1) < (qmax - 0.5) * scale
    q[off_grid, :n] = _round(w[off_grid, :n], scale[off_grid, None], qmax)
    q[off_grid, n:] = w[off_grid, n:]
    return q


def gptq_rows(w: np.ndarray, h: np.ndarray, qmax=127, damp=0.01, block=128, free=0) -> np.ndarray:
    """Round each row of ``w`` (rows, inputs) to its symmetric grid (max |w| / qmax), column by column,
    moving each column's rounding error onto the columns not yet rounded as the input Hessian ``h`` says
    (GPTQ, Frantar et al. 2023); the last ``free`` columns (a float bias) take errors and stay unrounded;
    rows whose max moved keep plain rounding (``_keep_max_on_grid``)."""
    w0 = w.astype(np.float64)
    n = w0.shape[1] - free
    scale = _row_scales(w0[:, :n], qmax)
    hinv = np.linalg.cholesky(np.linalg.inv(damped(h, damp))).T
    q, w = np.zeros_like(w0), w0.copy()
    for i in range(0, w.shape[1], block):
        j = min(i + block, w.shape[1])
        err = np.zeros((w.shape[0], j - i))
        for k in range(i, j):
            q[:, k] = _round(w[:, k], scale, qmax) if k < n else w[:, k]
            err[:, k - i] = (w[:, k] - q[:, k]) / hinv[k, k]
            w[:, k:j] -= np.outer(err[:, k - i], hinv[k, k:j])
        w[:, j:] -= err @ hinv[i:j, j:]
    return _keep_max_on_grid(q, w0, scale, qmax, free)


def gptq_channels(w: np.ndarray, h: np.ndarray, qmax=127, damp=0.01, free=0) -> np.ndarray:
    """``gptq_rows`` of each row of ``w`` (channels, inputs) with its own Hessian ``h[c]`` (a depthwise
    filter), all channels at once."""
    w0 = w.astype(np.float64)
    n = w0.shape[1] - free
    scale = _row_scales(w0[:, :n], qmax)
    hinv = np.linalg.cholesky(np.linalg.inv(damped(h, damp))).transpose(0, 2, 1)
    q, w = np.zeros_like(w0), w0.copy()
    for k in range(w.shape[1]):
        q[:, k] = _round(w[:, k], scale, qmax) if k < n else w[:, k]
        w[:, k:] -= ((w[:, k] - q[:, k]) / hinv[:, k, k])[:, None] * hinv[:, k, k:]
    return _keep_max_on_grid(q, w0, scale, qmax, free)


def gptq(model, batch: np.ndarray, qmax=127, damp=0.01):
    """Every Conv weight of the graph rounded by GPTQ on the float inputs it sees for ``batch`` (kept in
    float, already on the grid the quantizer then uses: +-qmax steps); depthwise filters one channel at a time."""
    from onnx import numpy_helper

    weights = {i.name: i for i in model.graph.initializer}
    convs = constant_convs(model)
    inputs = list(dict.fromkeys(n.input[0] for n in convs))
    hessians = {}
    for acts in tensor_runs(model, inputs, batch):
        for n in convs:
            p = patch_rows(acts[n.input[0]], n)
            hessians[n.name] = hessians.get(n.name, 0) + p @ p.transpose(0, 2, 1)
    for n in convs:
        w = numpy_helper.to_array(weights[n.input[1]])
        if _attrs(n).get("group", 1) > 1:
            q = gptq_channels(w.reshape(len(w), -1), hessians[n.name], qmax, damp)
        else:
            q = gptq_rows(w.reshape(len(w), -1), hessians[n.name][0], qmax, damp)
        weights[n.input[1]].CopyFrom(numpy_helper.from_array(q.reshape(w.shape).astype(np.float32), n.input[1]))
    return model
