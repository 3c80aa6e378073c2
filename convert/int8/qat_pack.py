"""The files of quantization-aware fine-tuning: the pack that ``convert.int8.qat_train`` trains from (the gptq method's
graph with its weights as int8 codes, its activation grid, JPEG images with the float model's logits), and the
weights it trains (read back by ``convert.int8.qat_graph``)."""

import io
import json

import numpy as np

from convert.errors import ConvertError


def decode_jpeg(blob: bytes, mode: str) -> np.ndarray:
    """One packed image to the model's float input (the trainer decodes exactly as the pack did)."""
    from PIL import Image

    from runtime.preprocessing import to_array

    return to_array(Image.open(io.BytesIO(blob)).convert("RGB"), mode)


def int8_codes(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel (axis 0), symmetric -127..127 codes and their scales (max / 127; 1 for a zero channel)."""
    from convert.int8.onnx_graph import _row_scales

    scale = _row_scales(w.reshape(len(w), -1), 127).astype(np.float32)
    return np.round(w / scale.reshape(-1, *[1] * (w.ndim - 1))).astype(np.int8), scale


def weight_arrays(weights: dict, conv_weights: set) -> dict:
    """Initializers as arrays to save: convolution weights as int8 codes and scales, the rest as they are."""
    out = {}
    for name, w in weights.items():
        if name in conv_weights:
            out["codes:" + name], out["scale:" + name] = int8_codes(w)
        else:
            out["float:" + name] = w
    return out


def graph_json(model) -> dict:
    """The graph's nodes, input and output as plain JSON: what the trainer needs besides the weights."""
    from convert.int8.onnx_graph import _attrs

    def plain(v):
        return v.decode() if isinstance(v, bytes) else list(v) if isinstance(v, list | tuple) else v

    return {"input": model.graph.input[0].name, "output": model.graph.output[0].name,
            "nodes": [{"op": n.op_type, "in": list(n.input), "out": list(n.output),
                       "attrs": {k: plain(v) for k, v in _attrs(n).items()}} for n in model.graph.node]}


def _jpegs(folder, spec, classes, n: int, quality: int):
    """``n`` images spread over ``folder`` at the model's size, as JPEG bytes, the inputs they decode to, labels."""
    from tqdm import tqdm

    from runtime.cli import progress_options
    from runtime.errors import ImageError
    from runtime.images import labelled_images, spread
    from runtime.preprocessing import load_image

    blobs, inputs, labels = [], [], []
    for path, label in tqdm(spread(labelled_images(folder, classes), n), desc=f"pack {folder}", unit="img",
                            **progress_options()):
        try:
            img = load_image(path, spec.size, spec.resize)
        except ImageError:
            continue
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        blobs.append(buf.getvalue())
        inputs.append(decode_jpeg(blobs[-1], spec.mode))
        labels.append(-1 if label is None else label)
    if not blobs:
        raise ConvertError(f"no readable images in {folder}")
    return blobs, np.stack(inputs), np.array(labels)


def write_pack(source, calibration, folders: dict, counts: dict, out, quality: int = 95) -> dict:
    """Write ``source``'s training pack to ``out``: graph.json (graph and activation grid), weights.npz and one npz
    per split of ``folders`` (train: each image and its mirror image, with the float model's logits of both).
    Returns the number of images of each split."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from convert import to_onnx
    from convert.int8.methods import method
    from convert.int8.onnx_tf import unsupported
    from runtime.preprocessing import MODES

    spec = source.manifest.spec()
    if MODES[spec.mode].layout != "NHWC":
        raise ConvertError(f"quantization-aware training needs NHWC input; preprocessing {spec.mode!r} is not")
    if bad := unsupported(onnx.load(str(to_onnx.prepared_file(source)))):
        raise ConvertError(f"no quantization-aware training for a graph with {', '.join(bad)}")
    model, grid = to_onnx.rounded_graph(source, calibration, method("onnx", "gptq"))
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    np.savez_compressed(out / "weights.npz", **weight_arrays(weights, conv_weights))
    head = {"source_sha256": source.manifest.source.sha256, "mode": spec.mode, "graph": graph_json(model),
            "grid": {t: [float(s), int(z)] for t, (s, z) in grid.items()}}
    (out / "graph.json").write_text(json.dumps(head))
    fp32 = ort.InferenceSession(str(to_onnx.fp32_file(source)), providers=["CPUExecutionProvider"])
    name = fp32.get_inputs()[0].name

    def logits(x):
        return np.concatenate([fp32.run(None, {name: x[i:i + 32]})[0] for i in range(0, len(x), 32)])

    sizes = {}
    for split, folder in folders.items():
        blobs, x, labels = _jpegs(folder, spec, source.manifest.classes, counts[split], quality)
        teacher = [logits(x)] + ([logits(np.ascontiguousarray(x[:, :, ::-1]))] if split == "train" else [])
        np.savez(out / f"{split}.npz", blob=np.frombuffer(b"".join(blobs), np.uint8),
                 offsets=np.cumsum([0] + [len(b) for b in blobs]), teacher=np.stack(teacher, 1), labels=labels)
        sizes[split] = len(blobs)
    return sizes


def parser():
    from pathlib import Path

    from runtime.cli import command_parser, positive_int

    p = command_parser("python -m convert.int8.qat_pack", "Write the pack that python -m convert.int8.qat_train "
                       "fine-tunes: the int8 gptq graph of BUNDLE, JPEG images and the float model's logits.")
    p.add_argument("bundle", type=Path, help="a bundle folder (model.keras + manifest)")
    p.add_argument("--calibration", type=Path, required=True, help="images for the int8 grid (>= 100)")
    p.add_argument("--train", type=Path, required=True, help="images to fine-tune on")
    p.add_argument("--validation", type=Path, required=True, help="images that choose the epoch kept")
    p.add_argument("--images", type=positive_int, default=10000, help="training images at most (default 10000)")
    p.add_argument("--validation-images", type=positive_int, default=1000, help="default 1000")
    p.add_argument("--quality", type=positive_int, default=95, help="JPEG quality of the packed images (default 95)")
    p.add_argument("--out", type=Path, required=True, help="the pack folder")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from runtime.cli import import_tensorflow_quietly

    import_tensorflow_quietly(False)
    from convert.calibration import calibration_set
    from convert.source import open_source
    from runtime.errors import RuntimeToolkitError, one_line_errors
    from runtime.files import replacing_folder
    from runtime.images import list_images

    def go():
        for folder in (args.bundle, args.calibration, args.train, args.validation):
            if not folder.is_dir():
                raise ConvertError(f"{folder}: no such folder")
        for folder in (args.train, args.validation):  # before minutes of GPTQ and calibration
            if not list_images(folder):
                raise ConvertError(f"{folder}: no images")
        if not 1 <= args.quality <= 100:
            raise ConvertError(f"--quality {args.quality}: JPEG quality runs from 1 to 100")
        source = open_source(args.bundle)
        try:
            m = source.manifest
            calibration = calibration_set(args.calibration, m.spec(), m.classes, 200)
            with replacing_folder(args.out, "graph.json") as tmp:  # a failed pack leaves the previous one
                sizes = write_pack(source, calibration, {"train": args.train, "validation": args.validation},
                                   {"train": args.images, "validation": args.validation_images}, tmp, args.quality)
        except FileExistsError as e:
            raise ConvertError(str(e)) from None
        finally:
            source.close()
        mb = sum(f.stat().st_size for f in args.out.iterdir()) / 1e6
        print(f"pack in {args.out}: {sizes['train']} training and {sizes['validation']} validation images, {mb:.1f} MB")
        return 0

    return one_line_errors(go, (ConvertError, RuntimeToolkitError))


if __name__ == "__main__":
    import sys

    sys.exit(main())
