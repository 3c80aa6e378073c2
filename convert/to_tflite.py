"""TFLite exports from the SavedModel: fp32, fp16 weights, int8 (float I/O), plus a metadata buffer."""

import json

import numpy as np

from runtime.backends import METADATA_KEY


def with_metadata(data: bytes, meta: dict) -> bytes:
    """Append a JSON metadata buffer named METADATA_KEY to a TFLite flatbuffer."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    buf = fb.BufferT()
    buf.data = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    model.buffers.append(buf)
    entry = fb.MetadataT()
    entry.name, entry.buffer = METADATA_KEY, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_KEY.encode()] + [entry]
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def export(source, precision: str, calibration, dest):
    """Convert the source's SavedModel at ``precision`` and write it, with metadata, to ``dest``."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(source.saved_model()))
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in calibration.batch)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    dest.write_bytes(with_metadata(conv.convert(), source.metadata("tflite", precision)))
    return {"quantization": "int8 weights and activations, float32 I/O"} if precision == "int8" else {}
