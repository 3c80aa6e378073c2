"""The weights quantization-aware fine-tuning wrote to ``BUNDLE/qat/``, read back into the ONNX graph for the
``qat`` int8 methods (no import of the exporters: they import this)."""

import json
from pathlib import Path

import numpy as np

from convert.errors import ConvertError

PARTS = 2  # trained weights come in two files of under 16 MB, what a lent GPU machine sends back
SAME_AS_INPUT = ("MaxPool", "Squeeze")  # onnxruntime gives their output the scale of their input


def shared_scales(graph: dict, grid: dict) -> dict:
    """tensor -> the tensor whose scale it must keep: the outputs of operators that onnxruntime quantizes
    with their input's scale and zero point (a scale learned for them alone would not reach the file).
    ``graph`` is the pack's plain JSON form (``qat_pack.graph_json``)."""
    same = {}
    for n in graph["nodes"]:
        if n["op"] in SAME_AS_INPUT and n["out"][0] in grid and n["in"][0] in grid:
            same[n["out"][0]] = same.get(n["in"][0], n["in"][0])
    return same


def write_weights(out: Path, weights: dict, convs: set, grid: dict, record: dict):
    """OUT/weights.0.npz, weights.1.npz (initializers in ONNX layout, the convolution weights ``convs`` as int8
    codes) and qat.json: ``record`` (with the source's ``source_sha256``) and the ``grid`` (tensor -> [scale,
    zero point]) that ``trained_graph`` reads back."""
    from convert.int8.qat_pack import weight_arrays

    arrays = weight_arrays(weights, convs)
    total, parts, done = sum(a.nbytes for a in arrays.values()), [{} for _ in range(PARTS)], 0
    for k in sorted(arrays):
        parts[min(PARTS - 1, done * PARTS // total)][k] = arrays[k]
        done += arrays[k].nbytes
    out.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(parts):
        np.savez_compressed(out / f"weights.{i}.npz", **part)
    (out / "qat.json").write_text(json.dumps({**record, "grid": grid}, indent=1))


def weight_values(arrays: dict) -> dict:
    """The initializers that ``weight_arrays`` saved, convolution weights back on their int8 grid."""
    out = {}
    for key, a in arrays.items():
        kind, name = key.split(":", 1)
        if kind == "codes":
            s = arrays["scale:" + name]
            out[name] = a.astype(np.float32) * s.reshape(-1, *[1] * (a.ndim - 1))
        elif kind == "float":
            out[name] = a
    return out


def read_record(folder: Path, source_sha256: str) -> dict:
    """``folder``'s qat.json, checked to belong to the source model of hash ``source_sha256``; ConvertError when it
    is missing, unreadable, over 16 MB or another model's."""
    from runtime.errors import first_line

    path = folder / "qat.json"
    try:
        if path.stat().st_size > 16 << 20:
            raise ValueError(f"{path.stat().st_size} bytes")
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConvertError(f"no trained weights in {folder} ({first_line(e)}): python -m convert --qat or "
                           "python -m convert.int8.qat_train makes them") from None
    if not isinstance(record, dict) or not isinstance(record.get("grid"), dict):
        raise ConvertError(f"{path}: not a record of fine-tuned weights")
    if record.get("source_sha256") != source_sha256:
        raise ConvertError(f"{folder} holds weights trained for another model (source sha256 differs)")
    return record


def trained_graph(source, prepared) -> tuple:
    """The source's graph (``prepared``: its prepared fp32 ONNX file) with the weights that
    ``convert.int8.qat_train`` wrote to BUNDLE/qat/, their activation grid (tensor -> scale, zero point) and the
    training record; ConvertError when they are missing or another model's."""
    import onnx
    from onnx import numpy_helper

    from runtime.errors import first_line

    folder = source.bundle / "qat"
    record = read_record(folder, source.manifest.source.sha256)
    arrays = {}
    try:
        for i in range(PARTS):
            with np.load(folder / f"weights.{i}.npz") as part:
                arrays.update(part)
    except (OSError, ValueError) as e:
        raise ConvertError(f"no trained weights in {folder} ({first_line(e)}): python -m convert --qat or "
                           "python -m convert.int8.qat_train makes them") from None
    values = weight_values(arrays)
    model = onnx.load(str(prepared))
    if missing := [i.name for i in model.graph.initializer if i.name not in values]:
        raise ConvertError(f"{folder} lacks {len(missing)} of the graph's weights, {missing[0]} first")
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(values[init.name].astype(numpy_helper.to_array(init).dtype), init.name))
    grid = {t: (np.asarray(s, np.float32), np.asarray(z, np.uint8)) for t, (s, z) in record["grid"].items()}
    return model, grid, record
