"""Argument parsing shared by ``python -m train``, its sweeps and the cache benchmark."""

import argparse

from runtime.cli import fraction, non_negative_float, non_negative_int, positive_float, positive_int
from train.config import AUGMENTATIONS, COURSE_AUGMENT, TrainConfig
from train.profiles import PROFILES

FLAGS = {"size": "size", "epochs": "epochs", "lr": "learning_rate", "inner": "size_inner",
         "dropout": "droprate", "augment": "augment", "augment_copies": "augment_copies",
         "weights": "weights",
         "batch_size": "batch_size", "limit": "limit", "seed": "seed", "version": "version",
         "min_logit_std": "min_logit_std"}
SWITCHES = ("train_base", "recalibrate_bn", "distribute")


def inner(text: str):
    """``--inner 100`` or ``--inner none`` (no inner layer)."""
    return None if text == "none" else positive_int(text)


def input_size(text: str) -> int:
    """An input size Xception accepts: at least 71 pixels."""
    size = positive_int(text)
    if size < 71:
        raise argparse.ArgumentTypeError(f"{size} is below Xception's smallest input, 71")
    return size


def augment(text: str) -> tuple[str, ...]:
    """``--augment none|course|rotation,shift,...``."""
    if text == "none":
        return ()
    names = COURSE_AUGMENT if text == "course" else tuple(n for n in text.split(",") if n)
    bad = [n for n in names if n not in AUGMENTATIONS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown augmentation {bad[0]!r}")
    return names


def add_config_args(p: argparse.ArgumentParser):
    """The flags that build a TrainConfig; unset ones fall back to the profile, then the defaults."""
    p.add_argument("--data", required=True, help="dataset root holding train/, validation/ (and test/)")
    p.add_argument("--profile", choices=sorted(PROFILES), help="preset of the settings below")
    p.add_argument("--size", type=input_size, help="input size in pixels, >= 71 (default 150)")
    p.add_argument("--epochs", type=positive_int, help="default 10")
    p.add_argument("--lr", type=positive_float, help="learning rate of Adam (default 0.001)")
    p.add_argument("--inner", type=inner, default=argparse.SUPPRESS, help="inner dense size, or none")
    p.add_argument("--dropout", type=fraction, help="dropout rate before the logits, in [0, 1) (default 0.2)")
    p.add_argument("--augment", type=augment,
                   help=f"none, course ({','.join(COURSE_AUGMENT)}) or a list of {','.join(AUGMENTATIONS)}")
    p.add_argument("--augment-copies", type=non_negative_int,
                   help="cache the base's features of N fixed augmented copies of each training image "
                        "(fast; 0 = augment on the fly, uncached)")
    p.add_argument("--weights", help="base weights: imagenet (default; Keras' download, else the copy "
                                     "`python -m train.imagenet fetch` extracted), none, or PATH.h5")
    p.add_argument("--batch-size", type=positive_int, help="default 32")
    p.add_argument("--limit", type=positive_int, help="at most this many images per class and split (default all)")
    p.add_argument("--seed", type=int, help="default 1")
    p.add_argument("--version", help="checkpoint name version, as xception_v1_...")
    p.add_argument("--min-logit-std", type=non_negative_float,
                   help="refuse to publish when validation logits vary less than this between images "
                        "(default 0.01; a collapsed model gives ~1e-5; 0 turns the guard off)")
    p.add_argument("--train-base", action="store_true", help="also train the Xception base")
    p.add_argument("--recalibrate-bn", action="store_true",
                   help="re-estimate the base's BatchNorm statistics on the training images first")
    p.add_argument("--no-cache", action="store_true", help="never cache the frozen base's features")
    p.add_argument("--distribute", action="store_true", help="tf.distribute.MirroredStrategy over GPUs")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")


def given_fields(args) -> set[str]:
    """The TrainConfig fields set by flags on the command line (a sweep keeps them)."""
    fields = {name for flag, name in FLAGS.items() if getattr(args, flag, None) is not None}
    return fields | ({"size_inner"} if hasattr(args, "inner") else set())


def config_from(args) -> TrainConfig:
    """Merge defaults, the profile and the flags given, in that order."""
    values = dict(PROFILES.get(args.profile) or {})
    values.update({name: getattr(args, flag) for flag, name in FLAGS.items() if name in given_fields(args)})
    values.update({switch: True for switch in SWITCHES if getattr(args, switch)})
    if args.no_cache:
        values["cache"] = False
    return TrainConfig(data=args.data, **values)
