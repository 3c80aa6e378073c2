"""``python -m convert BUNDLE --int8-report``: the error each quantized layer adds, for both formats, as
Markdown, JSON and a PNG plot. Built on onnxruntime's ``qdq_loss_debug`` and TFLite's
``QuantizationDebugger``; SQNR in dB = 10 log10(sum(float^2) / sum((float - int8)^2)), higher is better."""

import csv
import io
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from convert import to_onnx, to_tflite
from convert.int8.methods import method
from runtime.files import write_json


@dataclass
class LayerError:
    """One quantized layer: the error its int8 output adds, that of its weights, and the error accumulated
    up to it (float model against int8 model at this layer's output). None where a library gives no number."""

    format: str
    index: int
    name: str
    op: str
    output_sqnr_db: float | None
    weight_sqnr_db: float | None = None
    model_sqnr_db: float | None = None


def sqnr_db(ref, approx) -> float | None:
    """SQNR of ``approx`` against ``ref`` in dB; None when they are equal (no noise to measure)."""
    ref, approx = np.asarray(ref, np.float64).ravel(), np.asarray(approx, np.float64).ravel()
    noise = float(np.sum((ref - approx) ** 2))
    return None if noise == 0 else round(10 * float(np.log10(max(float(np.sum(ref ** 2)), 1e-30) / noise)), 2)


def onnx_layers(source, calibration, images: int) -> list[LayerError]:
    """Per-node errors of the default ONNX int8 method on the first ``images`` calibration images."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as dbg

    qdq, default = source.scratch / "report.int8.onnx", method("onnx")
    unpadded = replace(default, options={**default.options, "pad_channels": False})  # the float graph's shapes
    to_onnx.int8(source, calibration, qdq, unpadded)
    float_file = to_onnx.reference_file(source)
    acts = {}
    for kind, path in (("qdq", qdq), ("float", float_file)):
        augmented = source.scratch / f"report.{kind}.augmented.onnx"
        dbg.modify_model_output_intermediate_tensors(str(path), str(augmented))
        name = onnx.load(str(path), load_external_data=False).graph.input[0].name
        acts[kind] = dbg.collect_activations(str(augmented), to_onnx.Reader(name, calibration.batch[:images]))
    matched = dbg.create_activation_matching(acts["qdq"], acts["float"])
    weights = dbg.create_weight_matching(str(float_file), str(qdq))
    graph = onnx.load(str(float_file)).graph
    producer = {o: n for n in graph.node for o in n.output}
    rows = []
    for node in graph.node:
        m = matched.get(node.output[0])
        if not m or "post_qdq" not in m:
            continue
        pre = np.concatenate(m["pre_qdq"])
        layer, op = node, node.op_type
        if node.op_type == "Relu":  # the quantizer folds Relu into the Q range of the Conv before it
            pre = np.maximum(pre, 0)
            if getattr(producer.get(node.input[0]), "op_type", None) == "Conv":
                layer, op = producer[node.input[0]], "Conv+Relu"
        w = weights.get(layer.input[1]) if len(layer.input) > 1 else None
        rows.append(LayerError("onnx", len(rows), layer.name, op, sqnr_db(pre, np.concatenate(m["post_qdq"])),
                               sqnr_db(w["float"], w["dequantized"]) if w else None,
                               sqnr_db(np.concatenate(m["float"]), np.concatenate(m["post_qdq"]))))
    return rows


def tflite_layers(source, calibration, images: int) -> list[LayerError]:
    """Per-op errors of TFLite full-integer int8: each op's dequantized output against the same op in
    float on the same (dequantized) inputs, over the first ``images`` calibration images."""
    import tensorflow as tf

    def sqnr(floats, quants, scale, zero_point):  # one image's tensors, as the debugger passes them
        return sqnr_db(floats, (quants.astype(np.float64) - zero_point) * scale)

    data = lambda: ([x[None]] for x in calibration.batch[:images])  # noqa: E731
    debug = tf.lite.experimental.QuantizationDebugger
    built = debug(converter=to_tflite.converter(source, calibration), debug_dataset=data)
    # built from a converter, the debugger's interpreter does not keep intermediate tensors, so the float
    # values that direct comparison reads are overwritten; built from the debug model it keeps them
    options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={"sqnr": sqnr})
    debugger = debug(quant_debug_model_content=built.quant_model, debug_dataset=data, debug_options=options)
    debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = []
    for r in csv.DictReader(io.StringIO(buf.getvalue())):
        value = float(r["sqnr"]) if r.get("sqnr") not in (None, "", "nan") else None
        rows.append(LayerError("tflite", len(rows), r["tensor_name"].split(";")[0], r["op_name"], value))
    return rows


def markdown(rows: list[LayerError], head: dict, worst: int = 10) -> str:
    """The report: what was measured, the worst layers per format, then every layer."""
    lines = [f"# int8 per-layer error: {head['bundle']}", "",
             f"{head['images']} calibration images from {head['calibration']}; CPU {head['cpu']}. SQNR in dB "
             "(higher is better; every 6 dB halves the error). *output*: the error this layer's int8 output "
             "adds; *weights*: its int8 weights; *model*: float model against int8 model at this output "
             "(ONNX only; TFLite's debugger compares each op against float on the same inputs, so its number is "
             "the error the op adds, weights and output together).", ""]
    for fmt in sorted({r.format for r in rows}):
        mine = [r for r in rows if r.format == fmt and r.output_sqnr_db is not None]
        bad = sorted(mine, key=lambda r: r.output_sqnr_db)[:worst]
        lines += [f"## {fmt}: the {len(bad)} layers that add the most error", "",
                  "| # | layer | op | output dB | weights dB | model dB |", "|---|---|---|---|---|---|"]
        lines += [row_line(r) for r in bad] + [""]
    lines += ["## Every layer", "", "| format | # | layer | op | output dB | weights dB | model dB |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.format} " + row_line(r) for r in rows]
    return "\n".join(lines) + "\n"


def row_line(r: LayerError) -> str:
    """One Markdown row of a layer (cells for missing numbers are '-')."""
    cells = ["-" if v is None else f"{v:.1f}" for v in (r.output_sqnr_db, r.weight_sqnr_db, r.model_sqnr_db)]
    return f"| {r.index} | {r.name} | {r.op} | " + " | ".join(cells) + " |"


def plot(rows: list[LayerError], out: Path):
    """int8_layers.png: SQNR per layer, one panel per format."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    formats = sorted({r.format for r in rows})
    fig, axes = plt.subplots(len(formats), 1, figsize=(12, 3.5 * len(formats)), sharey=True, squeeze=False)
    for ax, fmt in zip(axes[:, 0], formats, strict=True):
        mine = [r for r in rows if r.format == fmt]
        for key, label in (("output_sqnr_db", "output (added by this layer)"), ("weight_sqnr_db", "weights"),
                           ("model_sqnr_db", "model (accumulated)")):
            pts = [(r.index, getattr(r, key)) for r in mine if getattr(r, key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=".", lw=1, label=label)
        ax.set(title=f"{fmt} int8: SQNR per quantized layer", xlabel="layer (graph order)", ylabel="SQNR, dB")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "int8_layers.png", dpi=100)
    plt.close(fig)


def write(rows: list[LayerError], head: dict, out: Path):
    """int8_layers.md, int8_layers.json and int8_layers.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_layers.md").write_text(markdown(rows, head))
    write_json(out / "int8_layers.json", {**head, "layers": [asdict(r) for r in rows]})
    plot(rows, out)
