"""Zero channels that put every depthwise convolution of an int8 ONNX file on onnxruntime's fast kernel.

onnxruntime's symmetric int8 depthwise kernel (AVX2/AVX-512 VNNI) needs a channel count that is a
multiple of 16; other counts (Xception's 728) fall back to a generic kernel several times slower.
``pad_channels`` widens each such group of tensors with channels that are zero everywhere: the
convolutions that write them get zero filters and biases, the ones that read them zero weights, so every
number of the file, its quantization grid included, is unchanged."""

from dataclasses import dataclass

import numpy as np

from convert.int8.onnx_graph import _attrs, _readers

CHANNEL_MULTIPLE = 16  # MLAS's depthwise group alignment on x86-64 (8 on ARM64, which 16 also meets)
PRESERVING = {"Relu", "MaxPool", "Add", "QuantizeLinear", "DequantizeLinear"}  # channel i in -> channel i out


@dataclass
class Padding:
    """What ``pad_channels`` did: channel counts before -> after, and how many tensors widened."""

    multiple: int
    channels: dict[int, int]
    tensors: int


def _depthwise(node) -> bool:
    return node.op_type == "Conv" and _attrs(node).get("group", 1) > 1


class _Graph:
    """Producers, readers and initializers of a model, and the values behind a Conv's weight or bias
    (the initializer itself in a float graph, the one its DequantizeLinear reads in a QDQ graph)."""

    def __init__(self, model):
        self.model = model
        self.init = {i.name: i for i in model.graph.initializer}
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.readers = _readers(model)

    def array(self, name):
        from onnx import numpy_helper

        return numpy_helper.to_array(self.init[name])

    def put(self, name, a):
        from onnx import numpy_helper

        self.init[name].CopyFrom(numpy_helper.from_array(a, name))

    def parts(self, tensor) -> list[str] | None:
        """[values, its scale, its zero point] (the last two only in a QDQ graph) of a Conv input that is a
        constant read by that Conv alone, else None."""
        dq = self.producer.get(tensor)
        names = [tensor] if tensor in self.init else list(dq.input) if (
            dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in self.init) else []
        if not names or len(self.readers.get(tensor, [])) != 1 or len(self.readers[names[0]]) != 1:
            return None
        return names

    def pad(self, tensor, axis: int, extra: int):
        """Append ``extra`` zero channels to a constant Conv input along ``axis``. A QDQ weight's or bias's
        per-channel scale and zero point repeat their last channel's, so that bias scale = input scale x
        weight scale still holds, which onnxruntime checks before it fuses a Conv into QLinearConv."""
        values, *params = self.parts(tensor)
        a = self.array(values)
        self.put(values, np.pad(a, [(0, extra if d == axis else 0) for d in range(a.ndim)]))
        for name in params:
            a = self.array(name)
            if axis == 0 and a.size > 1:
                self.put(name, np.pad(a, (0, extra), mode="edge"))

    def is_activation(self, node) -> bool:
        """A Q/DQ of an activation with one scale (not a weight's), or a channel-preserving operator."""
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            return node.input[0] not in self.init and all(self.array(t).size == 1 for t in node.input[1:]
                                                          if t in self.init)
        return node.op_type in PRESERVING or _depthwise(node)


def components(g: _Graph) -> list[set[str]]:
    """Sets of tensors tied channel for channel by channel-preserving operators and depthwise Convs."""
    parent = {}

    def find(t):
        while parent.setdefault(t, t) != t:
            t = parent[t]
        return t

    for n in g.model.graph.node:
        if g.is_activation(n):
            for i in n.input[:2] if n.op_type == "Add" else n.input[:1]:
                parent[find(i)] = find(n.output[0])
    groups = {}
    for t in parent:
        groups.setdefault(find(t), set()).add(t)
    return list(groups.values())


def _width(g: _Graph, tensors: set[str]) -> int | None:
    """The channel count of a set of tensors when every tensor comes from a Conv or a channel-preserving
    operator and goes only to those or to the data input of a Conv; None when it cannot be padded."""
    outputs = {o.name for o in g.model.graph.output}
    widths = set()
    for t in tensors:
        n = g.producer.get(t)
        if n is None or t in outputs or not (g.is_activation(n) or n.op_type == "Conv"):
            return None
        if n.op_type == "Conv":
            if any(g.parts(i) is None for i in n.input[1:]):
                return None
            widths.add(g.array(g.parts(n.input[1])[0]).shape[0])
        for r in g.readers.get(t, []):
            if not (g.is_activation(r) or (r.op_type == "Conv" and r.input[0] == t and g.parts(r.input[1]))):
                return None
    return widths.pop() if len(widths) == 1 else None


def pad_channels(model, multiple: int = CHANNEL_MULTIPLE) -> Padding:
    """Widen, in place, every group of tensors whose channel count is not a multiple of ``multiple`` with
    zero channels; groups that reach a graph output or an operator not known to keep channels apart stay."""
    g, done, widened = _Graph(model), Padding(multiple, {}, 0), set()
    for tensors in components(g):
        width = _width(g, tensors)
        if width is None or width % multiple == 0:
            continue
        extra = -width % multiple
        for n in {id(n): n for n in (g.producer[t] for t in tensors) if n.op_type == "Conv"}.values():
            for i in n.input[1:]:
                g.pad(i, 0, extra)
            for a in n.attribute:
                if a.name == "group" and a.i > 1:
                    a.i = width + extra
        for n in {id(r): r for t in tensors for r in g.readers.get(t, []) if r.op_type == "Conv"}.values():
            if not _depthwise(n):
                g.pad(n.input[1], 1, extra)
        done.channels[width], done.tensors = width + extra, done.tensors + len(tensors)
        widened |= tensors
    kept = [v for v in model.graph.value_info if v.name not in widened]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    return done
