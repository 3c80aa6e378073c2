"""Int8 RELUs of a TFLite file rewritten as DEQUANTIZE -> float RELU -> QUANTIZE onto the same grid.

XNNPACK has no int8 RELU: each one runs on TFLite's own scalar kernel, one thread, between two delegated
parts of the graph. In Xception the 11 RELUs after a residual Add took about half the int8 file's time. The
three float operators run in XNNPACK and compute relu(x) rounded onto the RELU's output grid, as onnxruntime
computes the same Q/DQ Relu; TFLite's kernel rescales by a fixed-point multiplier instead (at most one step
apart)."""

import copy

import numpy as np

from convert.int8.tflite_flatbuffer import packed, read


def _opcode(model, fb, builtin: int) -> int:
    """The index of ``builtin``'s operator code in ``model``, added when missing."""
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = fb.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _float_tensor(model, subgraph, fb, like, tag: str) -> int:
    """A new float32 activation tensor shaped as ``like``; returns its index."""
    t = fb.TensorT()
    t.shape, t.shapeSignature, t.type = like.shape, like.shapeSignature, fb.TensorType.FLOAT32
    t.name = (like.name or b"") + f"/{tag}".encode()
    model.buffers.append(fb.BufferT())
    t.buffer = len(model.buffers) - 1
    subgraph.tensors.append(t)
    return len(subgraph.tensors) - 1


def _operator(fb, opcode: int, inputs: list, outputs: list):
    """An operator without options."""
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, np.array(inputs, np.int32), np.array(outputs, np.int32)
    return op


def float_relus(data: bytes) -> tuple[bytes, int]:
    """``data`` with every RELU of an int8 tensor computed in float between its input's and output's grids;
    returns the new flatbuffer and how many RELUs it rewrote (0: ``data`` itself)."""
    from tensorflow.lite.python import schema_py_generated as fb

    model = read(data)
    ops = fb.BuiltinOperator
    relu = _opcode(model, fb, ops.RELU)
    count = 0
    for sg in model.subgraphs:
        rewritten = []
        for op in sg.operators:
            if op.opcodeIndex != relu or sg.tensors[op.inputs[0]].type != fb.TensorType.INT8:
                rewritten.append(op)  # only a RELU is sure to have an input
                continue
            src = sg.tensors[op.inputs[0]]
            low, high = (_float_tensor(model, sg, fb, src, tag) for tag in ("dequantized", "relu_float"))
            float_relu = copy.copy(op)
            float_relu.inputs, float_relu.outputs = np.array([low], np.int32), np.array([high], np.int32)
            rewritten += [_operator(fb, _opcode(model, fb, ops.DEQUANTIZE), [op.inputs[0]], [low]), float_relu,
                          _operator(fb, _opcode(model, fb, ops.QUANTIZE), [high], list(op.outputs))]
            count += 1
        sg.operators = rewritten
    if not count:
        return data, 0
    return packed(model, len(data)), count
