"""An exported classifier's ONNX graph run as TensorFlow ops (NHWC), with fake quantization on the
tensors of an int8 grid and on the convolution weights: TFLite's converter turns those ops into int8
with exactly that grid, so TFLite gets the ONNX method's ranges and rounded weights."""

import numpy as np

from convert.int8.onnx_graph import _attrs

OPS = ("Transpose", "Conv", "Relu", "Add", "MaxPool", "GlobalAveragePool", "Squeeze", "Gemm", "MatMul")


def unsupported(model) -> list[str]:
    """What of ``model`` has no TensorFlow form here: operators outside OPS, a Transpose other than the
    input's NHWC -> NCHW (empty when the whole graph has one)."""
    bad = sorted({n.op_type for n in model.graph.node} - set(OPS))
    first = model.graph.input[0].name
    if any(n.op_type == "Transpose" and (n.input[0] != first or list(_attrs(n).get("perm", [])) != [0, 3, 1, 2])
           for n in model.graph.node):
        bad.append("a Transpose other than the input's NHWC -> NCHW")
    return bad


def _pad(x, pads, value=0.0):
    """ONNX's begin/end ``pads`` of the two spatial axes applied to an NHWC tensor."""
    import tensorflow as tf

    if not any(pads):
        return x
    return tf.pad(x, [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]], constant_values=value)


def _same(size, kernel, strides) -> list[int]:
    """The ONNX pads (begins, then ends) that TensorFlow's SAME padding gives an input of ``size``."""
    total = [max((-(-n // s) - 1) * s + k - n, 0) for n, k, s in zip(size, kernel, strides, strict=True)]
    return [t // 2 for t in total] + [t - t // 2 for t in total]


class OnnxGraph:
    """The float graph's function in TensorFlow; ``grid`` (tensor -> uint8 scale, zero point) marks the
    activations to round, every convolution's weights round per output channel to int8 (max / 127) unless
    ``round_weights`` is false."""

    def __init__(self, model, grid: dict, round_weights: bool = True):
        import tensorflow as tf
        from onnx import numpy_helper

        if bad := unsupported(model):
            raise ValueError(f"no TensorFlow form for {', '.join(bad)}")
        self.nodes = list(model.graph.node)
        self.input, self.output = model.graph.input[0].name, model.graph.output[0].name
        self.grid = {t: (float(s), float(z)) for t, (s, z) in grid.items()}
        self.round_weights = round_weights
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.consts = {}
        for n in self.nodes:
            if n.op_type == "Conv":  # OIHW -> HWIO, or HW(C)(1) for a depthwise filter
                w = inits[n.input[1]]
                hw = w.transpose(2, 3, 0, 1) if _attrs(n).get("group", 1) > 1 else w.transpose(2, 3, 1, 0)
                self.consts[n.input[1]] = tf.constant(hw, tf.float32)
            for t in n.input[1:]:
                if t in inits and t not in self.consts:
                    self.consts[t] = tf.constant(inits[t], tf.float32)

    def _round(self, x, t: str):
        import tensorflow as tf

        if t not in self.grid:
            return x
        low, high = self.range(t)
        return tf.quantization.fake_quant_with_min_max_vars(x, low, high, num_bits=8)

    def range(self, t: str) -> tuple:
        """The float range of tensor ``t``'s uint8 grid (zero exactly on it)."""
        s, z = self.grid[t]
        return -z * s, (255 - z) * s

    @staticmethod
    def _round_weight(w, depthwise: bool):
        """Per output channel (the last axis, the third for a depthwise filter), symmetric, -127..127."""
        import tensorflow as tf

        if depthwise:
            return tf.transpose(OnnxGraph._round_weight(tf.transpose(w, [0, 1, 3, 2]), False), [0, 1, 3, 2])
        top = tf.reduce_max(tf.abs(w), axis=[0, 1, 2])
        return tf.quantization.fake_quant_with_min_max_vars_per_channel(w, -top, top, num_bits=8, narrow_range=True)

    def __call__(self, x):
        """Logits of an NHWC float batch."""
        env = {self.input: self._round(x, self.input)}
        for n in self.nodes:
            env[n.output[0]] = self._round(self._node(n, [env.get(t, self.consts.get(t)) for t in n.input]),
                                           n.output[0])
        return env[self.output]

    def _node(self, n, ins: list):
        """One operator on NHWC tensors (the graph's one Transpose, NHWC -> NCHW, is where NHWC stays)."""
        import tensorflow as tf

        a, op = _attrs(n), n.op_type
        if op == "Transpose":
            return ins[0]
        if op == "Conv":
            depthwise = a.get("group", 1) > 1
            w = self._round_weight(ins[1], depthwise) if self.round_weights else ins[1]
            strides = [1, *a.get("strides", [1, 1]), 1]
            x = _pad(ins[0], a.get("pads", [0, 0, 0, 0]))
            y = (tf.nn.depthwise_conv2d(x, w, strides, "VALID") if depthwise else tf.nn.conv2d(x, w, strides, "VALID"))
            return y + ins[2] if len(ins) > 2 else y
        if op == "MaxPool":
            k, strides, pads = a["kernel_shape"], a["strides"], a.get("pads", [0, 0, 0, 0])
            if pads == _same(ins[0].shape[1:3], k, strides):  # one TFLite operator, not a PAD before it
                return tf.nn.max_pool2d(ins[0], [1, *k, 1], [1, *strides, 1], "SAME")
            x = _pad(ins[0], pads, float(np.finfo(np.float32).min))
            return tf.nn.max_pool2d(x, [1, *k, 1], [1, *strides, 1], "VALID")
        if op == "GlobalAveragePool":
            return tf.reduce_mean(ins[0], axis=[1, 2], keepdims=True)
        if op == "Squeeze":  # (N, 1, 1, C) after the pool
            return tf.reshape(ins[0], [-1, ins[0].shape[-1]])
        if op == "Gemm":
            y = tf.matmul(ins[0], ins[1], transpose_b=bool(a.get("transB", 0))) * a.get("alpha", 1.0)
            return y + a.get("beta", 1.0) * ins[2] if len(ins) > 2 else y
        if op == "MatMul":
            return tf.matmul(ins[0], ins[1])
        return tf.nn.relu(ins[0]) if op == "Relu" else ins[0] + ins[1]
