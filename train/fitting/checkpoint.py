"""Best-only checkpoints with versioned names, and per-epoch timing."""

import time
from dataclasses import dataclass
from pathlib import Path

import keras

from runtime.files import replacing


@dataclass
class Checkpoint:
    """The best epoch so far: its number (from 1), file and validation metrics."""

    epoch: int
    file: str | None
    val_accuracy: float
    val_loss: float


def save_atomic(model, path: Path):
    """Save a Keras model under a temporary name (Keras wants the .keras suffix), then rename it."""
    with replacing(path, ".keras") as tmp:
        model.save(tmp)


class BestCheckpoint(keras.callbacks.Callback):
    """Save ``model`` whenever ``val_accuracy`` improves, as ``xception_<version>_<epoch>_<acc>.keras``.

    ``model`` may differ from the one being fitted (cached training fits only the head).
    With ``folder=None`` it only tracks the best epoch.
    """

    def __init__(self, model, folder=None, version="v1"):
        super().__init__()
        self.full_model, self.folder, self.version = model, folder, version
        self.best: Checkpoint | None = None

    def on_epoch_end(self, epoch, logs=None):
        acc, loss = float(logs["val_accuracy"]), float(logs["val_loss"])
        if self.best is not None and acc <= self.best.val_accuracy:
            return
        file = None
        if self.folder is not None:
            Path(self.folder).mkdir(parents=True, exist_ok=True)
            file = str(Path(self.folder) / f"xception_{self.version}_{epoch + 1:02d}_{acc:.3f}.keras")
            save_atomic(self.full_model, Path(file))
        self.best = Checkpoint(epoch + 1, file, acc, loss)


class EpochTimer(keras.callbacks.Callback):
    """Record the wall-clock seconds of every epoch."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t)
