"""TFLite exports from the SavedModel: fp32, fp16 weights, int8 by the methods of ``convert.int8.methods``
(full integer with float32 I/O by default, its RELUs in float: ``convert.int8.tflite_relu``), plus a metadata buffer."""

import json

import numpy as np

from convert.int8.methods import Method, method
from convert.int8.tflite_flatbuffer import packed, read
from convert.int8.tflite_relu import float_relus
from runtime.backends import METADATA_KEY


def with_metadata(data: bytes, meta: dict) -> bytes:
    """Append a JSON metadata buffer named METADATA_KEY to a TFLite flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as fb

    model = read(data)
    buf = fb.BufferT()
    buf.data = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    model.buffers.append(buf)
    entry = fb.MetadataT()
    entry.name, entry.buffer = METADATA_KEY, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_KEY.encode()] + [entry]
    return packed(model, len(data))


def converter(source, calibration=None, saved=None):
    """A TFLiteConverter of the source's SavedModel (or ``saved``); full-integer int8 when calibration images
    are given."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved or source.saved_model()))
    if calibration is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in calibration.batch)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv


def gptq_saved_model(source, calibration):
    """A SavedModel of the source with convolution weights rounded by GPTQ in its ONNX graph (on TFLite's grid:
    per channel, max / 127); the source model itself is left as it was. No Relu equalization: scaled-up
    channels' rare outliers would set TFLite's min/max ranges (it lowered agreement at 150 px)."""
    import onnx

    from convert import to_onnx
    from convert.keras_weights import carry

    original = onnx.load(str(to_onnx.prepared_file(source)))
    path, _ = to_onnx.prepare(source, onnx.load(str(to_onnx.prepared_file(source))), calibration,
                              {"gptq": True}, {"reduce_range": False})
    weights, dest = source.model.get_weights(), source.scratch / "saved_model.gptq"
    try:
        carry(source.model, original, onnx.load(str(path)))
        source.model.export(str(dest), format="tf_saved_model", verbose=False)
    finally:
        source.model.set_weights(weights)
    return dest


def grid_converter(source, calibration, onnx_method: Method) -> tuple:
    """A converter of ``onnx_method``'s graph (equalized, GPTQ-rounded or fine-tuned by
    ``convert.int8.qat_train``) run as TensorFlow ops with fake quantization on its activation grid: TFLite's
    int8 file then has the ONNX file's ranges and weights instead of its own min/max calibration. Returns the
    converter and notes on the training."""
    import tensorflow as tf

    from convert import to_onnx
    from convert.int8.onnx_graph import not_applied
    from convert.int8.onnx_tf import OnnxGraph
    from convert.int8.qat_graph import trained_graph

    notes = {}
    if onnx_method.options.get("qat"):
        model, grid, record = trained_graph(source, to_onnx.prepared_file(source))
        notes["training"] = record["training"]
    else:
        model, grid = to_onnx.rounded_graph(source, calibration, onnx_method)
        if skipped := not_applied(model, onnx_method.options):
            notes["not_applied"] = skipped
    graph = OnnxGraph(model, grid)
    spec = source.manifest.spec()
    fn = tf.function(graph.__call__, input_signature=[tf.TensorSpec([None, spec.height, spec.width, 3], tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[None]] for x in calibration.batch)
    return conv, notes


def with_float_ops(conv, ops: list[str]) -> bytes:
    """Quantize what ``conv`` converts, the operators ``ops`` left in float."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfl_convert

    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    # What QuantizationDebugger.get_nondebug_quantized_model does, without building its debug model.
    conv.experimental_mlir_quantizer, conv._experimental_calibrate_only = True, True
    return tfl_convert.mlir_quantize(conv.convert(), disable_per_channel=conv._experimental_disable_per_channel,
                                     fully_quantize=False, denylisted_ops=ops)


def usable(source, how: Method) -> tuple[Method, dict]:
    """``how``, or float-head with a note of why when ``how`` needs the source's ONNX graph in TensorFlow ops and
    that graph has an operator without one (a user's own model: Clip for ReLU6, Concat, ...)."""
    import onnx

    from convert import to_onnx
    from convert.int8.onnx_tf import unsupported

    if not how.options.get("onnx_grid") or not (bad := unsupported(onnx.load(str(to_onnx.prepared_file(source))))):
        return how, {}
    return method("tflite", "float-head"), {"fallback": f"{how.name}: no TensorFlow form for {', '.join(bad)}"}


def int8(source, calibration, dest, how: Method) -> dict:
    """Write ``source``'s int8 TFLite file made by method ``how``; return the notes that record it."""
    import tensorflow as tf

    how, extra = usable(source, how)
    o = how.options
    if o["mode"] == "dynamic":
        conv = converter(source)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        data = conv.convert()
    elif o.get("onnx_grid"):
        conv, trained = grid_converter(source, calibration, method("onnx", o["onnx_grid"]))
        data, extra = with_float_ops(conv, o["float_ops"]), {**extra, **trained}
    elif o.get("float_ops"):
        saved = gptq_saved_model(source, calibration) if o.get("gptq") else None
        data = with_float_ops(converter(source, calibration, saved), o["float_ops"])
    else:
        data = converter(source, calibration).convert()
    if o["mode"] == "int8" and o.get("float_relu", True):
        data, count = float_relus(data)
        extra["relu_in_float"] = count
    notes = {"method": how.name, "about": how.about, **o, "calibration_images": len(calibration.files), **extra}
    dest.write_bytes(with_metadata(data, {**source.metadata("tflite", "int8"), "quantization": notes}))
    return {"quantization": notes}


def export(source, precision: str, calibration, dest):
    """Convert the source's SavedModel at ``precision`` and write it, with metadata, to ``dest``."""
    import tensorflow as tf

    if precision == "int8":
        return int8(source, calibration, dest, method("tflite", source.int8_methods.get("tflite")))
    conv = converter(source)
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    dest.write_bytes(with_metadata(conv.convert(), source.metadata("tflite", precision)))
    return {}
