"""Re-estimate BatchNormalization statistics ("precise BN") of an untrained or re-used base.

A randomly initialised Xception in inference mode normalises with mean 0 and variance 1,
so its features vanish (about 1e-5 here) and every image gets the same logits. One pass
over the training images in training mode, averaging each layer's batch statistics,
gives the moving statistics the layers really see.
"""

import keras
from tqdm import tqdm

from runtime.cli import progress_options
from train.data import Batches, ImageFolder


def recalibrate(base: keras.Model, folder: ImageFolder, size: int, batch_size=32) -> int:
    """Set every BN layer's moving mean/variance to the average over ``folder``; return batches used."""
    bns = [layer for layer in base._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [(layer.momentum, layer.trainable) for layer in bns]
    batches = Batches(folder, size, batch_size, shuffle=True, labels=False)
    try:
        for layer in bns:
            layer.trainable = True
        for k in tqdm(range(len(batches)), desc="recalibrating BatchNorm", unit="batch", **progress_options()):
            for layer in bns:
                layer.momentum = 1.0 - 1.0 / (k + 1)
            base(batches[k][0], training=True)
    finally:
        for layer, (momentum, trainable) in zip(bns, saved, strict=True):
            layer.momentum, layer.trainable = momentum, trainable
    return len(batches)


class RecalibrateEachEpoch(keras.callbacks.Callback):
    """When the base is trained, re-estimate its BN statistics after each epoch's last batch,
    so that validation and checkpoints see statistics that match the new weights."""

    def __init__(self, base, folder: ImageFolder, size: int, batch_size: int, steps: int):
        super().__init__()
        self.args, self.steps = (base, folder, size, batch_size), steps

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.steps - 1:
            recalibrate(*self.args)
