"""Publishing a run: the best checkpoint becomes ``<bundle>/model.keras`` beside its records."""

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import keras

from runtime.files import sha256, write_json
from runtime.manifest import Manifest
from train.data import Batches, ImageFolder
from train.fit import FitResult

MODEL = "model.keras"


@dataclass
class Evaluation:
    """Loss and accuracy of a model on a labelled folder (course section 8.12)."""

    images: int
    loss: float
    accuracy: float


def evaluate(model, folder: ImageFolder, size: int, batch_size=32) -> Evaluation:
    """Evaluate a Keras model (or a path to one) on every image of ``folder``."""
    if not isinstance(model, keras.Model):
        model = keras.models.load_model(model)
    loss, acc = model.evaluate(Batches(folder, size, batch_size), verbose=1)
    return Evaluation(len(folder.paths), float(loss), float(acc))


def publish(result: FitResult, out, test: Evaluation | None):
    """Copy the best checkpoint to ``out/model.keras``; write history, train record and manifest."""
    out = Path(out)
    model = out / MODEL
    tmp = out / f".{MODEL}.partial"
    shutil.copyfile(result.best.file, tmp)
    tmp.replace(model)
    write_json(out / "history.json", {**result.history, "seconds": result.epoch_seconds})
    write_json(out / "train.json", {
        "config": asdict(result.config), "classes": result.classes, "best": asdict(result.best),
        "test": asdict(test) if test else None, "seconds": result.seconds,
        "cache_seconds": result.cache.seconds if result.cache else None})
    import tensorflow as tf

    source = {"file": MODEL, "sha256": sha256(model), "tensorflow": tf.__version__,
              "keras": keras.__version__}
    Manifest.for_model(out.name, result.classes, result.config.size, source).write(out)
    return model
