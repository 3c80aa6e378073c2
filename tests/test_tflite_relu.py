"""convert.int8.tflite_relu: int8 RELUs of a TFLite file computed in float, onto the same grids."""

import numpy as np

from convert.int8.tflite_relu import float_relus


def _convert(int8: bool) -> bytes:
    """A TFLite file of Xception's residual pattern: the Add's sum goes on both through a RELU and a convolution
    and around them (so the RELU cannot be fused into the Add); full integer (float I/O) or float."""
    import keras
    import tensorflow as tf

    inputs = keras.Input((12, 12, 8))
    x = keras.layers.Add()([inputs, keras.layers.Conv2D(8, 3, padding="same")(inputs)])
    model = keras.Model(inputs, keras.layers.Add()([x, keras.layers.Conv2D(8, 1)(keras.layers.ReLU()(x))]))
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.normal(size=(1, 12, 12, 8)).astype(np.float32)] for _ in range(16))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def _relu_io(data: bytes, x):
    """Per RELU of ``data`` run on ``x``: (its input's int8 values and grid, its int8 output and grid),
    following a DEQUANTIZE before and a QUANTIZE after a float RELU."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    ops = it._get_ops_details()
    real = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {t: op for op in real for t in op["outputs"]}
    consumer = {t: op for op in real for t in op["inputs"]}

    def tensor(i):
        return it.get_tensor(i), it._get_tensor_details(i, 0)["quantization"]

    found = []
    for op in real:
        if op["op_name"] != "RELU":
            continue
        src, dst = op["inputs"][0], op["outputs"][0]
        if producer[src]["op_name"] == "DEQUANTIZE":
            src, dst = producer[src]["inputs"][0], consumer[dst]["outputs"][0]
        found.append((tensor(src), tensor(dst)))
    return found, it.get_tensor(it.get_output_details()[0]["index"]), ops


def test_int8_relu_becomes_float_relu_onto_the_same_grid():
    data = _convert(int8=True)
    rewritten, count = float_relus(data)
    x = np.random.default_rng(1).normal(size=(1, 12, 12, 8)).astype(np.float32) * 2
    before, out_before, ops_before = _relu_io(data, x)
    after, out_after, ops = _relu_io(rewritten, x)
    assert count == len(before) == len(after) == 1
    names, names_before = ([op["op_name"] for op in o] for o in (ops, ops_before))
    real, real_before = ([n for n in o if n != "DELEGATE"] for o in (names, names_before))
    assert real.count("RELU") == 1 and len(real) == len(real_before) + 2
    # With every tensor kept, XNNPACK takes each operator it runs as a delegate node of its own.
    assert names.count("DELEGATE") == len(real) and names_before.count("DELEGATE") == len(real_before) - 1
    ((q_in, (s_in, z_in)), (q_out, (s_out, z_out))), = after
    ((q_in0, grid_in0), (q_out0, grid_out0)), = before
    assert (s_in, z_in, s_out, z_out) == (*grid_in0, *grid_out0) and np.array_equal(q_in, q_in0)
    assert q_in.dtype == q_out.dtype == np.int8 and (s_in, z_in) != (s_out, z_out)
    want = np.clip(np.round(np.maximum((q_in.astype(np.float32) - z_in) * s_in, 0) / s_out) + z_out, -128, 127)
    assert np.array_equal(q_out, want)
    assert np.abs(q_out0.astype(int) - want).max() <= 1  # TFLite's fixed-point rescale: ties may round apart
    assert np.abs(out_after - out_before).max() <= 0.05 * np.ptp(out_before)


def test_a_file_without_int8_relus_is_returned_as_it_was():
    data = _convert(int8=False)
    assert float_relus(data) == (data, 0)

