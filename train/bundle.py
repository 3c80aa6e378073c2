"""Publishing a run: the best checkpoint becomes ``<bundle>/model.keras`` beside its records."""

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from runtime.bundle import Manifest, Source
from runtime.files import replacing, write_json
from train.data import Batches, ImageFolder
from train.errors import TrainError
from train.evaluation import Evaluation
from train.fit import FitResult
from train.fitting.checkpoint import save_atomic
from train.imagenet import resolve

MODEL = "model.keras"


@dataclass
class Separation:
    """Whether validation logits differ between images: a collapsed model gives std ~ 0."""

    logit_min: float
    logit_max: float
    between_image_std: float
    classes_predicted: int

    @classmethod
    def of(cls, logits: np.ndarray):
        """Spread of a (images, classes) logit matrix."""
        return cls(float(logits.min()), float(logits.max()), float(logits.std(0).mean()),
                   len(set(logits.argmax(1).tolist())))


def separation(model, folder: ImageFolder, size: int, minimum: float | None, batch_size=32) -> Separation:
    """Spread of the model's logits over ``folder``; TrainError when it is below ``minimum``."""
    sep = Separation.of(model.predict(Batches(folder, size, batch_size), verbose=0))
    if minimum is not None and sep.between_image_std < minimum:
        raise TrainError(f"logits are not separated: std between images {sep.between_image_std:.3g} < {minimum} "
                         f"(range {sep.logit_min:.2f}..{sep.logit_max:.2f}); nothing published")
    return sep


def publish(result: FitResult, out, test: Evaluation | None, sep: Separation):
    """Copy the best checkpoint to ``out/model.keras``; write history, train record and manifest."""
    out = Path(out)
    model = out / MODEL
    with replacing(model) as tmp:
        shutil.copyfile(result.best.file, tmp)
    write_json(out / "history.json", {**result.history, "seconds": result.epoch_seconds})
    weights = asdict(resolve(result.config.weights))
    write_json(out / "train.json", {
        "config": asdict(result.config), "classes": result.classes, "base_weights": weights,
        "best": asdict(result.best),
        "test": test.summary() if test else None, "separation": asdict(sep), "seconds": result.seconds,
        "cache_seconds": result.cache.seconds if result.cache else None})
    write_manifest(out, result.classes, result.config.size, base_weights=weights)
    return model


def write_manifest(out: Path, classes, size: int, **details):
    """The bundle's manifest for its model.keras, with no artifacts yet."""
    Manifest.for_model(out.name, classes, size, Source.of(out, MODEL, **details)).write(out)


def resize(bundle, size: int, out, recalibrate_on: ImageFolder | None = None):
    """Copy a bundle's model to another input size (Xception is fully convolutional) as a new bundle,
    optionally re-estimating BatchNorm statistics at the new size."""
    from train.fitting.bn import recalibrate
    from train.model import compile_model, make_base

    bundle, out = Path(bundle), Path(out)
    if not (bundle / MODEL).is_file():
        raise TrainError(f"no {MODEL} in {bundle}: give a bundle folder that `python -m train` wrote")
    old = keras.models.load_model(bundle / MODEL)
    base = make_base(size, "none")
    base.set_weights(old.get_layer("xception").get_weights())
    if recalibrate_on is not None:
        recalibrate(base, recalibrate_on, size)
    base.trainable = False
    head = keras.models.clone_model(old.get_layer("head"))
    head.set_weights(old.get_layer("head").get_weights())
    inputs = keras.Input((size, size, 3), name="image")
    outputs = head(keras.layers.GlobalAveragePooling2D(name="pool")(base(inputs, training=False)))
    lr = float(keras.ops.convert_to_numpy(old.optimizer.learning_rate)) if old.optimizer else 0.001
    model = compile_model(keras.Model(inputs, outputs, name=old.name), lr)
    out.mkdir(parents=True, exist_ok=True)
    save_atomic(model, out / MODEL)
    old_manifest = Manifest.read(bundle)
    write_manifest(out, old_manifest.classes, size, resized_from=str(bundle / MODEL),
                   base_weights=old_manifest.source.details.get("base_weights"))
    return out / MODEL
