"""Zero channels that give every depthwise convolution a multiple of 16 channels: the same numbers, float
or quantized by onnxruntime, and nothing touched where a channel could reach the output."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from convert.int8.channel_pad import pad_channels


def _graph(head: str):
    """x (8 channels) -> Conv to 24 -> Relu -> depthwise Conv -> Conv 24 -> Add with the Relu -> MaxPool -> ``head``:
    "conv" (Conv to 16, then global pooling) or "pool" (the 24 channels pooled straight to the output)."""
    rng = np.random.default_rng(0)

    def w(name, *shape):
        return numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "wd", "bd"], ["d"], group=24, pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["d", "w2", "b2"], ["c2"]), helper.make_node("Add", ["c2", "r1"], ["s"]),
             helper.make_node("MaxPool", ["s"], ["m"], kernel_shape=[2, 2], strides=[2, 2])]
    inits = [w("w1", 24, 8, 1, 1), w("b1", 24), w("wd", 24, 1, 3, 3), w("bd", 24), w("w2", 24, 24, 1, 1), w("b2", 24)]
    if head == "conv":
        nodes += [helper.make_node("Conv", ["m", "w3", "b3"], ["c3"]),
                  helper.make_node("GlobalAveragePool", ["c3"], ["y"])]
        inits += [w("w3", 16, 24, 1, 1), w("b3", 16)]
    else:
        nodes += [helper.make_node("GlobalAveragePool", ["m"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _inputs(n=6, seed=1):
    return np.random.default_rng(seed).normal(0, 1, (n, 1, 8, 12, 12)).astype(np.float32)


def _run(model, xs):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"x": x})[0] for x in xs])


def _quantized(model, tmp_path):
    """onnxruntime's static QDQ int8 of ``model`` as ``convert`` makes it: per-channel int8 weights, uint8
    activations."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    class Reader:
        def __init__(self):
            self.items = iter({"x": x} for x in _inputs(seed=2))

        def get_next(self):
            return next(self.items, None)

    onnx.save(model, tmp_path / "float.onnx")
    quantize_static(str(tmp_path / "float.onnx"), str(tmp_path / "int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return onnx.load(str(tmp_path / "int8.onnx"))


def _depthwise_groups(model):
    return [a.i for n in model.graph.node for a in n.attribute if n.op_type == "Conv" and a.name == "group"]


def test_padding_a_quantized_graph_keeps_every_output_bit_and_aligns_its_depthwise_channels(tmp_path):
    q = _quantized(_graph("conv"), tmp_path)
    xs, padded = _inputs(), onnx.ModelProto()
    padded.CopyFrom(q)
    done = pad_channels(padded)
    assert done.channels == {24: 32} and done.tensors > 0
    assert _depthwise_groups(q) == [24] and _depthwise_groups(padded) == [32]
    out = _run(padded, xs)
    assert np.array_equal(out, _run(q, xs)) and np.ptp(out) > 0  # onnxruntime still fuses every Conv as before
    fused = ort.SessionOptions()
    fused.optimized_model_filepath = str(tmp_path / "fused.onnx")
    ort.InferenceSession(padded.SerializeToString(), fused, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(str(tmp_path / "fused.onnx")).graph.node}
    assert "QLinearConv" in ops and "Conv" not in ops, ops


def test_padding_a_float_graph_keeps_its_function():
    model, xs = _graph("conv"), _inputs()
    ref = _run(model, xs)
    assert pad_channels(model).channels == {24: 32}
    assert np.abs(_run(model, xs) - ref).max() <= 1e-5 * np.ptp(ref)


@pytest.mark.parametrize("multiple", [16, 32])
def test_channels_that_reach_an_operator_not_known_to_keep_them_apart_stay(multiple):
    model = _graph("pool")  # the 24 channels go to global pooling and out: zero channels would change the output
    before = model.SerializeToString()
    done = pad_channels(model, multiple)
    assert done.channels == {} and done.tensors == 0 and model.SerializeToString() == before
