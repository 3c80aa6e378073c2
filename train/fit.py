"""One training run: data, model, cached or full fitting, best-only checkpoints."""

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from runtime.cli import keras_verbosity
from train.augment import make_augmenter
from train.config import TrainConfig
from train.data import Batches, ImageFolder
from train.fitting.bn import RecalibrateEachEpoch, recalibrate
from train.fitting.checkpoint import BestCheckpoint, Checkpoint, EpochTimer
from train.fitting.features import FeatureCache, ViewBatches, extract
from train.model import FEATURES, make_base, make_model


@dataclass
class Splits:
    """Train and validation folders (and test, when the dataset has one), sharing class order."""

    train: ImageFolder
    val: ImageFolder
    test: ImageFolder | None

    @classmethod
    def load(cls, root, limit=None):
        """Scan ``root/train``, ``root/validation`` and, if present, ``root/test``."""
        root = Path(root)
        train = ImageFolder.scan(root / "train", limit=limit)
        val = ImageFolder.scan(root / "validation", train.classes, limit)
        test = ImageFolder.scan(root / "test", train.classes, limit) if (root / "test").is_dir() else None
        return cls(train, val, test)


@dataclass
class FitResult:
    """What a run produced: its model, per-epoch history and best checkpoint."""

    config: TrainConfig
    classes: list[str]
    model: keras.Model
    history: dict[str, list[float]]
    best: Checkpoint
    seconds: float
    epoch_seconds: list[float]
    cache: FeatureCache | None = None

    @property
    def gap(self) -> float:
        """Train minus validation accuracy at the last epoch (overfitting)."""
        return self.history["accuracy"][-1] - self.history["val_accuracy"][-1]


def strategy_scope(distribute: bool):
    """MirroredStrategy over all visible GPUs when asked, else no scope."""
    if not distribute:
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.distribute.MirroredStrategy().scope()


def cached_views(cfg: TrainConfig, splits: Splits, base, cache: FeatureCache | None) -> FeatureCache:
    """The cache this run trains on: ``cache`` itself, its unaugmented part, or it extended by new views."""
    if cache and cache.fits(cfg.augment, cfg.augment_copies):
        return cache
    if cache and not cfg.augment:
        return cache.plain()
    return extract(base, splits.train, splits.val, cfg.size, cfg.batch_size, cfg.augment, cfg.augment_copies,
                   reuse=cache)


def fit(cfg: TrainConfig, splits: Splits, checkpoints=None, cache: FeatureCache | None = None):
    """Train one model; cached features are computed here (or reused) when ``cfg.cacheable``."""
    t0 = time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    n = len(splits.train.classes)
    with strategy_scope(cfg.distribute):
        cache = cache if cfg.cacheable else None
        base = cache.base if cache else make_base(cfg.size, cfg.weights)
        if cache is None and cfg.recalibrate_bn and not cfg.train_base:
            recalibrate(base, splits.train, cfg.size, cfg.batch_size)
        if cfg.cacheable:
            cache = cached_views(cfg, splits, base, cache)
        model = make_model(cfg.size, cfg.learning_rate, cfg.size_inner, cfg.droprate, cfg.weights,
                           cfg.train_base, n, base=base)
        best, timer = BestCheckpoint(model, checkpoints, cfg.version), EpochTimer()
        if cache:
            # A wrapper (not the nested head) shares the full model's optimizer, so the saved
            # model.keras carries the optimizer state at its top level and reloads cleanly.
            head = keras.Sequential([keras.Input((FEATURES,)), model.get_layer("head")])
            head.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
            train = ViewBatches(cache.train, splits.train.one_hot(slice(None)), cfg.batch_size, cfg.seed)
            hist = head.fit(train, epochs=cfg.epochs, callbacks=[best, timer], verbose=2,
                            validation_data=(cache.val, splits.val.one_hot(slice(None))))
        else:
            train = Batches(splits.train, cfg.size, cfg.batch_size, shuffle=True, seed=cfg.seed,
                            augment=make_augmenter(cfg.augment, cfg.size))
            val = Batches(splits.val, cfg.size, cfg.batch_size)
            extra = [RecalibrateEachEpoch(base, splits.train, cfg.size, cfg.batch_size, len(train))
                     ] if cfg.train_base and cfg.recalibrate_bn else []
            hist = model.fit(train, validation_data=val, epochs=cfg.epochs, callbacks=[*extra, best, timer],
                             verbose=keras_verbosity())
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    return FitResult(cfg, splits.train.classes, model, history, best.best,
                     time.perf_counter() - t0, timer.seconds, cache)
