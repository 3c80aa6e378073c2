"""The weights quantization-aware fine-tuning wrote to ``BUNDLE/qat/``, read back into the ONNX graph for the
``qat`` int8 methods (no import of the exporters: they import this)."""

import json

import numpy as np

from convert.errors import ConvertError

PARTS = 2  # trained weights come in two files of under 16 MB, what a lent GPU machine sends back


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


def trained_graph(source, prepared) -> tuple:
    """The source's graph (``prepared``: its prepared fp32 ONNX file) with the weights that
    ``convert.int8.qat_train`` wrote to BUNDLE/qat/, their activation grid (tensor -> scale, zero point) and the
    training record; ConvertError when they are missing or another model's."""
    import onnx
    from onnx import numpy_helper

    from runtime.errors import first_line

    folder = source.bundle / "qat"
    try:
        record = json.loads((folder / "qat.json").read_text())
        arrays = {}
        for i in range(PARTS):
            with np.load(folder / f"weights.{i}.npz") as part:
                arrays.update(part)
    except (OSError, ValueError) as e:
        raise ConvertError(f"no trained weights in {folder} ({first_line(e)}): python -m convert.int8.qat_train "
                           "makes them") from None
    if record.get("source_sha256") != source.manifest.source.sha256:
        raise ConvertError(f"{folder} holds weights trained for another model (source sha256 differs)")
    values = weight_values(arrays)
    model = onnx.load(str(prepared))
    if missing := [i.name for i in model.graph.initializer if i.name not in values]:
        raise ConvertError(f"{folder} lacks {len(missing)} of the graph's weights, {missing[0]} first")
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(values[init.name].astype(numpy_helper.to_array(init).dtype), init.name))
    grid = {t: (np.asarray(s, np.float32), np.asarray(z, np.uint8)) for t, (s, z) in record["grid"].items()}
    return model, grid, record
