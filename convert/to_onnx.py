"""ONNX exports: fp32 through Keras' exporter (tf2onnx), fp16 with float32 I/O, int8 by the methods of
``convert.int8.methods`` (static QDQ per channel by default)."""

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from convert.cache import cached
from convert.int8.channel_pad import pad_channels
from convert.int8.methods import Method, method
from convert.int8.mixed import activation_grid, unround, worst_tensors
from convert.int8.onnx_graph import equalize, equalize_relu, gptq, not_applied, round_weights
from convert.int8.sequential import sequential_gptq
from runtime.backends import METADATA_KEY
from runtime.machine.cpuinfo import cpu_info

EQUALIZE_IMAGES = 64
GPTQ_IMAGES = 128
SEQUENTIAL_IMAGES = 64
RANKING_IMAGES = 16
CALIBRATION_CHUNK = 10  # images whose every activation is held at once while calibrating


def _save(model, meta: dict, dest):
    """Set the metadata property and save as one self-contained file."""
    import onnx

    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.save_model(model, str(dest))


def fp32_file(source):
    """The fp32 ONNX export, made once per source in its scratch folder."""
    path = source.scratch / "fp32.onnx"
    if not path.exists():
        cached(source.manifest.source.sha256, "fp32-folded.onnx", lambda dest: export_fp32(source, dest), path)
    return path


def export_fp32(source, dest):
    """Keras' own ONNX export of the source model (tf2onnx underneath), with captured constants folded in."""
    import onnx
    import tensorflow as tf
    import tf2onnx
    from keras import tree
    from keras.src.export.export_utils import get_input_signature, make_tf_tensor_spec
    from keras.src.export.onnx import get_concrete_fn
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    spec = source.manifest.spec()
    source.predict(np.zeros((1, spec.height, spec.width, spec.channels), np.float32))  # Keras exports called models
    signature = tree.map_structure(make_tf_tensor_spec, get_input_signature(source.model))
    fn = get_concrete_fn(source.model, signature)
    patch_tf2onnx()
    model, _ = tf2onnx.convert.from_function(fn, signature)
    fold_captures(model, captured_constants(fn.get_concrete_function(*signature), tf))
    onnx.save_model(model, str(dest))


def captured_constants(concrete, tf) -> dict[str, np.ndarray]:
    """The values of the eager tensors a traced model captured (a Normalization layer's mean and variance), by
    the name tf2onnx gives them: it makes them graph inputs, not constants."""
    pairs = zip(concrete.captured_inputs, concrete.graph.internal_captures, strict=True)
    return {inner.name: outer.numpy() for outer, inner in pairs if inner.dtype != tf.resource}


def fold_captures(model, constants: dict[str, np.ndarray]):
    """Turn the graph inputs that are captured constants into initializers."""
    from onnx import numpy_helper

    for inp in [i for i in model.graph.input if i.name in constants]:
        model.graph.input.remove(inp)
        model.graph.initializer.append(numpy_helper.from_array(constants[inp.name], inp.name))


def prepared_file(source):
    """The fp32 export after onnxruntime's quantization pre-processing (shapes, fusions), made once."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = source.scratch / "fp32.pre.onnx"
    if not path.exists():
        quant_pre_process(str(fp32_file(source)), str(path), skip_symbolic_shape=True)
    return path


class Reader:
    """onnxruntime's CalibrationDataReader over preprocessed images, one at a time (also iterable); its
    ``set_range`` lets the calibrator take them in chunks, so memory does not grow with their number."""

    def __init__(self, name: str, batch: np.ndarray):
        self.name, self.batch = name, batch
        self.set_range(0, len(batch))

    def set_range(self, start_index: int, end_index: int):
        self.items = iter([{self.name: x[None]} for x in self.batch[start_index:end_index]])

    def __len__(self):
        return len(self.batch)

    def get_next(self):
        return next(self.items, None)

    def __iter__(self):
        return self.items


def chunk(n: int, most=CALIBRATION_CHUNK) -> int:
    """The largest divisor of ``n`` up to ``most``: onnxruntime calibrates in chunks that divide the total."""
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


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


def prepare(source, model, calibration, o: dict, opts: dict) -> tuple[Path, dict]:
    """The float graph (``model``: ``prepared_file``'s) transformed as method options ``o`` ask, saved for the
    quantizer, and the quantizer's per-tensor overrides. The equalized graph (the same function as the export) is
    kept as ``reference_file`` for the per-layer report; the GPTQ rounding, per options, in the run's scratch."""
    import onnx
    from onnxruntime.quantization import QuantType

    batch, qmax = calibration.batch, 64 if opts["reduce_range"] else 127  # as onnxruntime's grid: max / 64 or 127
    if o.get("equalize_relu"):
        model = equalize_relu(model, batch[:EQUALIZE_IMAGES])
    if o.get("equalize"):
        model = equalize(model, batch[:EQUALIZE_IMAGES], o["equalize"])
    onnx.save_model(model, str(reference_file(source)))
    if not o.get("gptq"):
        return reference_file(source), {}
    path, overrides = source.scratch / "prepared.int8.onnx", {}
    if o["gptq"] == "sequential":
        grid = first_grid(source, reference_file(source), calibration, o, opts, model)
        model = sequential_gptq(model, grid, batch[:SEQUENTIAL_IMAGES], qmax)
        overrides = grid_overrides(grid)
    else:
        rounded = gptq_file(source, calibration, o, qmax)
        if not rounded.exists():  # the same rounding for the ONNX file, TFLite's onnx-grid and every gptq variant
            onnx.save_model(gptq(model, batch[:GPTQ_IMAGES], qmax), str(rounded))
        model = onnx.load(str(rounded))
    onnx.save_model(model, str(path))
    if o.get("act16_worst"):
        grid = first_grid(source, path, calibration, o, opts, model)
        worst = worst_tensors(model, grid, batch[:RANKING_IMAGES], o["act16_worst"])
        overrides = {t: [{"quant_type": QuantType.QUInt16}] for t in worst}
    return path, overrides


def rounded_graph(source, calibration, how: Method) -> tuple:
    """Method ``how``'s graph (equalized, GPTQ-rounded on the full 8-bit weight grid that TFLite and VNNI CPUs use)
    and the activation grid (tensor -> scale, zero point) of its QDQ file: the ONNX int8 file's own where that was
    made on the same grid in this run."""
    import onnx

    o, opts = how.options, {"reduce_range": False}
    qdq = onnx.load(str(quantized(source, calibration, o, opts)))  # prepares the graph below on the way
    return onnx.load(str(gptq_file(source, calibration, o, 127))), activation_grid(qdq)


def grid_overrides(grid: dict) -> dict:
    """onnxruntime's TensorQuantOverrides that put each tensor of ``grid`` on its (scale, zero point)."""
    return {t: [{"scale": s, "zero_point": z}] for t, (s, z) in grid.items()}


def first_grid(source, src: Path, calibration, o: dict, opts: dict, model) -> dict:
    """The activation grid (tensor -> scale, zero point) that plain calibration gives ``src``."""
    import onnx

    first = source.scratch / "grid.int8.onnx"
    quantize(src, first, calibration, o, opts, model)
    return activation_grid(onnx.load(str(first)))


def quantize(src: Path, dest: Path, calibration, o: dict, opts: dict, model, overrides: dict | None = None):
    """onnxruntime's static QDQ quantization of ``src`` as options ``o`` ask, with per-tensor ``overrides``
    (onnxruntime's TensorQuantOverrides)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    activations = QuantType.QUInt16 if o.get("activations") == "uint16" else QuantType.QUInt8
    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[o["calibration"]]
    quantize_static(str(src), str(dest), Reader(model.graph.input[0].name, calibration.batch),
                    quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=opts["reduce_range"],
                    activation_type=activations, weight_type=QuantType.QInt8, calibrate_method=calibrate,
                    nodes_to_exclude=head_nodes(model) if o.get("float_logits", True) else [],
                    extra_options={"CalibPercentile": 99.999, "TensorQuantOverrides": overrides or {},
                                   "CalibStridedMinMax": chunk(len(calibration.batch))})


def scratch_file(source, kind: str, key: list, calibration) -> Path:
    """Where this run keeps a ``kind`` of file made from ``source`` with ``calibration`` and the settings ``key``."""
    text = json.dumps([key, [str(f) for f in calibration.files]], sort_keys=True)
    return source.scratch / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.onnx"


def gptq_file(source, calibration, o: dict, qmax: int) -> Path:
    """Where ``prepare`` keeps the equalized, GPTQ-rounded float graph of options ``o`` on the ``qmax`` grid."""
    return scratch_file(source, "gptq", [o.get("equalize_relu"), o.get("equalize"), qmax], calibration)


AFTER_QUANTIZATION = ("float_activations", "pad_channels")  # options that change the QDQ file, not how it is made


def quantized(source, calibration, o: dict, opts: dict) -> Path:
    """The QDQ file that options ``o`` make of ``source`` with ``calibration``: made once per source, so the methods
    that differ only after quantization (AFTER_QUANTIZATION) share one calibration and one GPTQ."""
    import onnx

    made = {k: v for k, v in o.items() if k not in AFTER_QUANTIZATION}
    path = scratch_file(source, "qdq", [made, opts], calibration)
    if not path.exists():
        model = onnx.load(str(prepared_file(source)))
        src, overrides = prepare(source, model, calibration, o, opts)
        quantize(src, path, calibration, o, opts, model, overrides)
    return path


def reference_file(source) -> Path:
    """The float graph of the last QDQ file ``quantized`` made, weights not yet rounded."""
    return source.scratch / "float.int8.onnx"


def int8(source, calibration, dest, how: Method) -> dict:
    """Write ``source``'s int8 ONNX file made by method ``how``; return the notes that record it."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from convert.int8.qat_graph import trained_graph

    o, recorded = how.options, {}
    tmp = source.scratch / "int8.onnx"
    opts = int8_options(source.reduce_range)
    if o.get("dynamic"):
        quantize_dynamic(str(prepared_file(source)), str(tmp), weight_type=QuantType.QUInt8,
                         reduce_range=opts["reduce_range"])
    elif o.get("weights_only"):
        tmp = source.scratch / "weights-only.onnx"
        model = onnx.load(str(prepared_file(source)))
        if o.get("gptq"):
            model = onnx.load(str(prepare(source, model, calibration, o, opts)[0]))
        onnx.save_model(round_weights(model), str(tmp))
    elif o.get("qat"):
        model, grid, record = trained_graph(source, prepared_file(source))
        onnx.save_model(model, str(src := source.scratch / "qat.onnx"))
        quantize(src, tmp, calibration, o, opts, model, grid_overrides(grid))
        recorded = {"training": record["training"]}
    else:
        qdq = onnx.load(str(quantized(source, calibration, o, opts)))
        if o.get("float_activations"):
            relus = {n.output[0] for n in onnx.load(str(prepared_file(source))).graph.node if n.op_type == "Relu"}
            recorded = {"float_activation_tensors": unround(qdq, relus, o["float_activations"])}
        onnx.save_model(qdq, str(tmp))
    notes = {"method": how.name, "about": how.about, **o, "calibration_images": len(calibration.files), **opts,
             **recorded}
    if skipped := not_applied(onnx.load(str(prepared_file(source))), o):
        notes["not_applied"] = skipped
    model = onnx.load(str(tmp))
    if not (o.get("dynamic") or o.get("weights_only")) and o.get("pad_channels", True):
        notes["channel_padding"] = asdict(pad_channels(model))  # every number the same, depthwise faster
    _save(model, {**source.metadata("onnx", "int8"), "quantization": notes}, dest)
    return {"quantization": notes}


def export(source, precision: str, calibration, dest):
    """Write the ONNX export at ``precision`` to ``dest``; return notes for the manifest."""
    import onnx

    if precision == "int8":
        return int8(source, calibration, dest, method("onnx", source.int8_methods.get("onnx")))
    model = onnx.load(str(fp32_file(source)))
    if precision == "fp16":
        from onnxconverter_common import float16

        model = float16.convert_float_to_float16(model, keep_io_types=True)
    _save(model, source.metadata("onnx", precision), dest)
    return {}
