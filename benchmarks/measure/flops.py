"""Multiply-adds per image, counted from an ONNX graph's Conv, MatMul and Gemm nodes or a Keras model's layers."""

import math

import numpy as np


def count_macs(path) -> int:
    """Multiply-accumulates of one image through the model at ``path`` (batch dimension set to 1)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    for dim in model.graph.input[0].type.tensor_type.shape.dim[:1]:
        dim.dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    weights = {w.name: numpy_helper.to_array(w).shape for w in model.graph.initializer}
    macs = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if node.op_type == "Conv" and out and node.input[1] in weights:
            kernel = weights[node.input[1]]  # (out_channels, in_channels / group, kh, kw)
            macs += int(np.prod(out)) * int(np.prod(kernel[1:]))
        elif node.op_type in ("MatMul", "Gemm") and out:
            w = weights.get(node.input[1], shapes.get(node.input[1])) or (0, 0)
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            macs += int(np.prod(out)) * int(w[1] if trans_b else w[0])
    return macs


def count_keras_macs(path) -> int:
    """Multiply-accumulates of one image through the .keras model at ``path``, counted as the ONNX graph
    counts them: Conv2D, DepthwiseConv2D, both halves of SeparableConv2D, and Dense."""
    import keras

    from convert.keras_weights import leaf_layers

    macs = 0
    for layer in leaf_layers(keras.saving.load_model(path, compile=False)):
        kind = type(layer).__name__
        if kind not in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"):
            continue
        out = math.prod(layer.output.shape[1:])
        if kind == "SeparableConv2D":
            kh, kw, cin, mult = layer.depthwise_kernel.shape
            macs += out // layer.filters * cin * mult * (kh * kw + layer.filters)
        elif kind == "DepthwiseConv2D":
            macs += out * math.prod(layer.kernel.shape[:2])
        else:
            macs += out * math.prod(layer.kernel.shape[:-1])
    return macs


def count_file_macs(path) -> int:
    """Multiply-accumulates per image of an .onnx or .keras file; 0 for no file or another format."""
    if path is None or not path.is_file():
        return 0
    return {".onnx": count_macs, ".keras": count_keras_macs}.get(path.suffix, lambda _: 0)(path)
