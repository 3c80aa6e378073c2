"""Multiply-adds per image, counted from an ONNX graph's Conv, MatMul and Gemm nodes."""

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
