"""ONNX exports: fp32 through Keras' exporter (tf2onnx), fp16 with float32 I/O, int8 static QDQ per channel."""

import json

import numpy as np

from runtime.backends import METADATA_KEY
from runtime.cpuinfo import cpu_info


def _save(model, meta: dict, dest):
    """Set the metadata property and save as one self-contained file."""
    import onnx

    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.save_model(model, str(dest))


def fp32_file(source):
    """The fp32 ONNX export, made once per source in its scratch folder."""
    path = source.scratch / "fp32.onnx"
    if not path.exists():
        source.model.export(str(path), format="onnx", verbose=False)
    return path


class _Reader:
    """onnxruntime's CalibrationDataReader over preprocessed images, one at a time."""

    def __init__(self, name: str, batch: np.ndarray):
        self.items = iter([{name: x[None]} for x in batch])

    def get_next(self):
        return next(self.items, None)


def int8_options(forced: bool | None = None) -> dict:
    """reduce_range on CPUs without VNNI: 7-bit weights avoid AVX2's u8*s8 pair-sum saturation."""
    if forced is not None:
        return {"reduce_range": forced, "why": "set by --int8-reduce-range"}
    reduce = not cpu_info().vnni
    why = ("no VNNI: AVX2 u8*s8 multiply-add saturates 16-bit pair sums; 7-bit weights avoid it"
           if reduce else "VNNI present: full 8-bit weights are exact on its dot-product instructions")
    return {"reduce_range": reduce, "why": why}


def export(source, precision: str, calibration, dest):
    """Write the ONNX export at ``precision`` to ``dest``; return notes for the manifest."""
    import onnx

    base = fp32_file(source)
    meta = source.metadata("onnx", precision)
    if precision == "fp32":
        _save(onnx.load(str(base)), meta, dest)
        return {}
    if precision == "fp16":
        from onnxconverter_common import float16

        _save(float16.convert_float_to_float16(onnx.load(str(base)), keep_io_types=True), meta, dest)
        return {}
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    opts = int8_options(source.reduce_range)
    tmp = source.scratch / "int8.onnx"
    name = onnx.load(str(base), load_external_data=False).graph.input[0].name
    quantize_static(str(base), str(tmp), _Reader(name, calibration.batch), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=opts["reduce_range"], activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    _save(onnx.load(str(tmp)), meta, dest)
    return {"quantization": {"scheme": "static QDQ, per-channel weights", "activations": "uint8",
                             "weights": "int8", "calibration_images": len(calibration.files), **opts}}
