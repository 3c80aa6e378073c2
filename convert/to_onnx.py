"""ONNX exports: fp32 through Keras' exporter (tf2onnx), fp16 with float32 I/O, int8 by the methods of
``convert.int8_methods`` (static QDQ per channel by default)."""

import json

import numpy as np

from convert.int8_methods import Method, method
from runtime.backends import METADATA_KEY
from runtime.cpuinfo import cpu_info

EQUALIZE_IMAGES = 64


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


def prepared_file(source):
    """The fp32 export after onnxruntime's quantization pre-processing (shapes, fusions), made once."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = source.scratch / "fp32.pre.onnx"
    if not path.exists():
        quant_pre_process(str(fp32_file(source)), str(path), skip_symbolic_shape=True)
    return path


class Reader:
    """onnxruntime's CalibrationDataReader over preprocessed images, one at a time (also iterable)."""

    def __init__(self, name: str, batch: np.ndarray):
        self.items = iter([{name: x[None]} for x in batch])

    def get_next(self):
        return next(self.items, None)

    def __iter__(self):
        return self.items


def int8_options(forced: bool | None = None) -> dict:
    """reduce_range on CPUs without VNNI: 7-bit weights avoid AVX2's u8*s8 pair-sum saturation."""
    if forced is not None:
        return {"reduce_range": forced, "why": "set by --int8-reduce-range"}
    reduce = not cpu_info().vnni
    why = ("no VNNI: AVX2 u8*s8 multiply-add saturates 16-bit pair sums; 7-bit weights avoid it"
           if reduce else "VNNI present: full 8-bit weights are exact on its dot-product instructions")
    return {"reduce_range": reduce, "why": why}


def head_nodes(model) -> list[str]:
    """The nodes from the last MatMul/Gemm to the output: kept in float, they give float logits."""
    producer = {o: n for n in model.graph.node for o in n.output}
    names, node = [], producer.get(model.graph.output[0].name)
    while node is not None:
        names.append(node.name)
        if node.op_type in ("MatMul", "Gemm"):
            return names
        node = producer.get(node.input[0])
    return []


def tensor_means(model, tensors: list[str], batch: np.ndarray, reduce) -> list[np.ndarray]:
    """``reduce`` of each named tensor over ``batch`` (a float model run with those tensors as outputs)."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    m.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors)
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    runs = [session.run(tensors, {model.graph.input[0].name: batch[i:i + 8]}) for i in range(0, len(batch), 8)]
    return [reduce(np.concatenate([r[k] for r in runs])) for k in range(len(tensors))]


def depthwise_pairs(model) -> list:
    """(depthwise Conv, the pointwise Conv that alone reads its output) pairs of the graph."""
    readers = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    pairs = []
    for n in model.graph.node:
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        after = readers.get(n.output[0], [])
        if n.op_type == "Conv" and group > 1 and len(after) == 1 and after[0].op_type == "Conv":
            pairs.append((n, after[0]))
    return pairs


def equalize(model, batch: np.ndarray, alpha: float):
    """Scale each depthwise output channel c by s_c = (range_c / max range)^alpha, undone in the pointwise
    weights: the float function is unchanged, per-tensor int8 ranges of the depthwise outputs even out."""
    from onnx import numpy_helper

    weights = {i.name: i for i in model.graph.initializer}
    pairs = depthwise_pairs(model)
    ranges = tensor_means(model, [dw.output[0] for dw, _ in pairs], batch, lambda a: np.abs(a).max(axis=(0, 2, 3)))
    for (dw, pw), r in zip(pairs, ranges, strict=True):
        r = np.maximum(r, 1e-2 * r.max())
        s = np.clip((r / r.max()) ** alpha, 1 / 64, 1).astype(np.float32)
        for name, shape in ((dw.input[1], (-1, 1, 1, 1)), (pw.input[1], (1, -1, 1, 1))):
            w = numpy_helper.to_array(weights[name])
            scaled = w / s.reshape(shape) if name == dw.input[1] else w * s.reshape(shape)
            weights[name].CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), name))
    return model


def round_weights(model):
    """Every Conv/MatMul/Gemm weight rounded to its symmetric per-output-channel int8 grid, kept in float."""
    from onnx import numpy_helper

    weights = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type in ("Conv", "MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in weights:
            w = numpy_helper.to_array(weights[n.input[1]])
            if w.ndim >= 2:
                axis = 0 if n.op_type == "Conv" else w.ndim - 1
                scale = np.abs(w).max(axis=tuple(a for a in range(w.ndim) if a != axis), keepdims=True) / 127
                q = np.round(w / np.where(scale == 0, 1, scale)) * scale
                weights[n.input[1]].CopyFrom(numpy_helper.from_array(q.astype(w.dtype), n.input[1]))
    return model


def int8(source, calibration, dest, how: Method) -> dict:
    """Write ``source``'s int8 ONNX file made by method ``how``; return the notes that record it."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    o = how.options
    model = onnx.load(str(prepared_file(source)))
    tmp = source.scratch / "int8.onnx"
    opts = int8_options(source.reduce_range)
    if o.get("weights_only"):
        tmp = source.scratch / "weights-only.onnx"
        onnx.save_model(round_weights(model), str(tmp))
    elif o.get("dynamic"):
        quantize_dynamic(str(prepared_file(source)), str(tmp), weight_type=QuantType.QUInt8,
                         reduce_range=opts["reduce_range"])
    else:
        src = prepared_file(source)
        if o.get("equalize"):
            src = source.scratch / "equalized.onnx"
            onnx.save_model(equalize(model, calibration.batch[:EQUALIZE_IMAGES], o["equalize"]), str(src))
        activations = QuantType.QUInt16 if o.get("activations") == "uint16" else QuantType.QUInt8
        calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[o["calibration"]]
        quantize_static(str(src), str(tmp), Reader(model.graph.input[0].name, calibration.batch),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=opts["reduce_range"],
                        activation_type=activations, weight_type=QuantType.QInt8, calibrate_method=calibrate,
                        nodes_to_exclude=head_nodes(model) if o.get("float_logits", True) else [],
                        extra_options={"CalibPercentile": 99.999})
    notes = {"method": how.name, "about": how.about, **o, "calibration_images": len(calibration.files), **opts}
    _save(onnx.load(str(tmp)), {**source.metadata("onnx", "int8"), "quantization": notes}, dest)
    return {"quantization": notes}


def export(source, precision: str, calibration, dest):
    """Write the ONNX export at ``precision`` to ``dest``; return notes for the manifest."""
    import onnx

    if precision == "int8":
        return int8(source, calibration, dest, method("onnx"))
    model = onnx.load(str(fp32_file(source)))
    if precision == "fp16":
        from onnxconverter_common import float16

        model = float16.convert_float_to_float16(model, keep_io_types=True)
    _save(model, source.metadata("onnx", precision), dest)
    return {}
