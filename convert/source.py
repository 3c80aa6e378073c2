"""The source Keras model of a bundle: loading, its SavedModel export, the metadata every file carries."""

import json
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convert.cache import cached
from convert.errors import SourceError
from runtime.bundle import MAX_SIDE, Manifest, Source
from runtime.errors import first_line
from runtime.files import replacing, sha256
from runtime.preprocessing import color_problem


@dataclass
class SourceModel:
    """A loaded Keras model, its bundle manifest and a scratch folder for intermediate exports."""

    model: object
    manifest: Manifest
    scratch: Path
    reduce_range: bool | None = None  # ONNX int8: None chooses by the CPU's VNNI flag
    int8_methods: dict = field(default_factory=dict)  # format -> int8 method (convert.int8.methods); else its default
    fine_tuning: object | None = None  # convert.int8.qat_tf.FineTuning of this conversion, if any
    _saved_model: Path | None = field(default=None, repr=False)

    @property
    def bundle(self) -> Path:
        """The bundle folder (the scratch folder is made inside it)."""
        return self.scratch.parent

    def metadata(self, fmt: str, precision: str) -> dict:
        """What a model file carries so that it predicts labels alone."""
        d = self.manifest.to_dict()
        return {**{k: d[k] for k in ("name", "classes", "input", "preprocessing", "output")}, "format": fmt,
                "precision": precision, "source_sha256": self.manifest.source.sha256}

    def saved_model(self) -> Path:
        """The model exported once as a TF SavedModel (Keras 3's ``model.export``)."""
        if self._saved_model is None:
            self._saved_model = cached(self.manifest.source.sha256, "saved_model", lambda dest: self.model.export(
                str(dest), format="tf_saved_model", verbose=False), self.scratch / "saved_model")
        return self._saved_model

    def predict(self, batch: np.ndarray, batch_size=32) -> np.ndarray:
        """Reference logits from Keras."""
        return self.model.predict(batch, batch_size=batch_size, verbose=0)

    def close(self):
        shutil.rmtree(self.scratch, ignore_errors=True)


def read_keras(path):
    """Load a ``.keras`` or legacy HDF5 ``.h5`` model without its training configuration."""
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises many kinds for a bad file
        raise SourceError(f"cannot load Keras model {path}: {first_line(e)}") from None


def check_outputs(model, classes: int, where: str):
    """SourceError unless the model has one output per class."""
    if model.output_shape[-1] != classes:
        raise SourceError(f"{where}: {model.output_shape[-1]} outputs but {classes} classes")


def open_source(bundle: Path) -> SourceModel:
    """Load ``bundle/model.keras``; refresh the manifest's source hash if the model changed."""
    manifest = Manifest.read(bundle)
    model_file = bundle / manifest.source.file
    model = read_keras(model_file)
    digest = sha256(model_file)
    manifest = manifest.with_source(Source(manifest.source.file, digest, manifest.source.details))
    shape = model.input_shape
    fixed = [d for d in shape[1:3] if d is not None]
    if fixed and (shape[1], shape[2]) != (manifest.input.height, manifest.input.width):
        raise SourceError(f"{model_file}: input {shape[1:3]} differs from the manifest's "
                          f"{manifest.input.height}x{manifest.input.width}")
    check_outputs(model, len(manifest.classes), str(model_file))
    return SourceModel(model, manifest, Path(tempfile.mkdtemp(prefix=".convert-", dir=bundle)))


SCALING = ("Rescaling", "Normalization")


def output_kind(model) -> str:
    """``probabilities`` when the model ends in a softmax (a Softmax layer, or an activation of softmax),
    else ``logits``."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if type(last).__name__ == "Softmax" or getattr(activation, "__name__", "") == "softmax":
        return "probabilities"
    return "logits"


def scaling_layers(model) -> list[str]:
    """The Rescaling/Normalization layers among the model's first layers: the model scales its own pixels."""
    return [f"{type(layer).__name__} {layer.name!r}" for layer in model.layers[:4] if type(layer).__name__ in SCALING]


def declared_input(path: Path) -> tuple | None:
    """The (height, width) a saved model's config declares for its one input, read without Keras or TensorFlow
    (.keras: its config.json; .h5: its model_config attribute); None where it cannot be told from the file (the
    loaded model is checked again in any case)."""
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as z:
                info = z.getinfo("config.json")
                config = json.loads(z.read(info)) if info.file_size <= 16 << 20 else {}
        elif path.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                config = json.loads(f.attrs.get("model_config", "{}"))
        else:
            return None
        layers = config["config"]["layers"]
        shapes = [layer["config"].get("batch_shape") or layer["config"].get("batch_input_shape")
                  for layer in layers if layer.get("class_name") == "InputLayer"]
    except Exception:  # any file Keras may still read: the check after loading decides
        return None
    if len(shapes) != 1 or not isinstance(shapes[0], list) or len(shapes[0]) != 4:
        return None
    return tuple(shapes[0][1:3])


def check_declared_size(path: Path, size: int | None):
    """SourceError, before TensorFlow is imported, when ``size`` contradicts the input the model file declares."""
    hw = declared_input(path) if size else None
    if hw and all(isinstance(d, int) for d in hw) and hw != (size, size):
        raise SourceError(f"the model's input is {hw[0]}x{hw[1]}; --size {size} disagrees")


def check_shapes(model, name: str, size: int | None) -> tuple[int, str]:
    """The model's square input side (from the model or ``size``) and colour (RGB, or L for one channel);
    SourceError for several inputs or outputs, an output that is not (batch, classes), a ``size`` that the
    model's own fixed input contradicts."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise SourceError(f"{name}: {len(model.inputs)} inputs and {len(model.outputs)} outputs; an image classifier "
                          "has one of each")
    shape, out = model.input_shape, model.output_shape
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise SourceError(f"{name}: input {shape[1:]} is not an RGB or grayscale image (height, width, 3 or 1)")
    if len(out) != 2:
        raise SourceError(f"{name}: output {out[1:]} is not one row of class scores (batch, classes)")
    h, w = shape[1:3]
    if h is not None and w is not None:
        if size is not None and (h, w) != (size, size):
            raise SourceError(f"the model's input is {h}x{w}; --size {size} disagrees")
    elif size is None:
        raise SourceError(f"{name}: input {shape[1:]} has no fixed size: give --size")
    elif size > MAX_SIDE:
        raise SourceError(f"--size {size}: at most {MAX_SIDE} pixels per side")
    h, w = h or size, w or size
    if h != w:
        raise SourceError(f"{name}: input {h}x{w} is not square; only square inputs are supported")
    return h, "RGB" if shape[3] == 3 else "L"


def make_bundle(model_path: Path, out: Path, classes: list[str], size: int | None = None,
                mode: str | None = None) -> Path:
    """Turn a user's own ``.keras``/``.h5`` model into a bundle (model.keras + manifest), with its input
    size, preprocessing ``mode`` (default xception, said on stderr) and output kind recorded."""
    if not classes:
        raise SourceError("a bare model needs --classes (comma-separated, in output order)")
    model = read_keras(model_path)
    side, color = check_shapes(model, model_path.name, size)
    if problem := color_problem(mode or "xception", color):
        raise SourceError(f"{model_path.name}: {problem}")
    check_outputs(model, len(classes), model_path.name)
    scales = scaling_layers(model)
    if scales and mode not in ("none", None):
        print(f"note: the model scales its own input ({', '.join(scales)}); --preprocessing {mode} scales it too: "
              "use --preprocessing none if it was trained on raw 0-255 pixels", file=sys.stderr)
    if mode is None:
        print("note: preprocessing xception (x / 127.5 - 1) assumed" + (
              f"; the model scales its own input ({', '.join(scales)}): --preprocessing none may be meant"
              if scales else "") + "; give --preprocessing MODE if the model was trained otherwise", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    with replacing(out / "model.keras", ".keras") as tmp:
        model.save(tmp)
    Manifest.for_model(out.name, classes, side, Source.of(out, **{"from": str(model_path)}), mode or "xception",
                       output_kind(model), color).write(out)
    return out
