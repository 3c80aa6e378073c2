"""The bodies of the ``python -m train`` commands: run, then print a short summary."""

import json
import time
from dataclasses import replace
from pathlib import Path

import keras

from runtime.errors import first_line
from train.bundle import publish, separation
from train.bundle import resize as resize_bundle
from train.cli import config_from, given_fields
from train.data import ImageFolder
from train.errors import ModelFileError
from train.evaluation import evaluate as evaluate_model
from train.fit import Splits, fit
from train.sweep import run_sweep, save, table


def train(args) -> int:
    """Train one model into the bundle ``--out``; evaluate it on the test split when there is one."""
    cfg = config_from(args)
    out = Path(args.out or f"artifacts/xception-{cfg.version}-{cfg.size}")
    out.mkdir(parents=True, exist_ok=True)
    splits = Splits.load(cfg.data, cfg.limit)
    res = fit(cfg, splits, checkpoints=out / "checkpoints")
    best = keras.models.load_model(res.best.file)
    sep = separation(best, splits.val, cfg.size, cfg.min_logit_std, cfg.batch_size)
    test = evaluate_model(best, splits.test, cfg.size, cfg.batch_size) if splits.test else None
    model = publish(res, out, test, sep)
    per_epoch = sum(res.epoch_seconds) / len(res.epoch_seconds)
    print(f"\nbest epoch {res.best.epoch}/{cfg.epochs}: val_accuracy {res.best.val_accuracy:.3f}"
          + (f", test_accuracy {test.accuracy:.3f} on {test.images} images" if test else ""))
    print(f"{'cached features' if res.cache else 'full model'}: {per_epoch:.1f} s/epoch"
          + (f" after {res.cache.seconds:.1f} s of feature extraction" if res.cache else "")
          + f", {res.seconds:.0f} s in all")
    print(f"validation logits {sep.logit_min:.2f}..{sep.logit_max:.2f}, std between images "
          f"{sep.between_image_std:.3f}, {sep.classes_predicted} classes predicted")
    print(f"model: {model}")
    return 0


def sweep(args) -> int:
    """Run one of the course's sweeps; write its table, JSON and plot."""
    cfg = config_from(args)
    splits = Splits.load(cfg.data, cfg.limit)
    result = run_sweep(args.name, cfg, splits, args.epochs, keep=given_fields(args))
    out = save(result, args.out or f"runs/sweeps/{args.name}-{cfg.size}")
    print("\n" + table(result))
    print(f"\n{len(result.rows)} settings in {result.seconds:.0f} s; table, results.json and "
          f"accuracy.png in {out}")
    return 0


def resize(args) -> int:
    """Write a copy of a bundle's model at another input size."""
    folder = ImageFolder.scan(args.recalibrate_on, limit=args.limit) if args.recalibrate_on else None
    model = resize_bundle(args.bundle, args.size, args.out, folder)
    print(f"model at {args.size} px: {model}")
    return 0


def load_keras_model(path):
    """A ``.keras``/``.h5`` model, or ModelFileError in one line."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    if path.suffix not in (".keras", ".h5"):
        raise ModelFileError(f"{path.name} is not a Keras model (.keras, .h5); for exported models use "
                             "`python -m runtime.compare` or `python -m benchmarks`")
    try:
        return keras.models.load_model(path)
    except Exception as e:  # Keras raises many kinds for a file that is not a model
        raise ModelFileError(f"cannot load Keras model {path}: {first_line(e)}") from None


def evaluate(args) -> int:
    """Accuracy of a saved model on a labelled folder (course 8.12), per class and as a confusion matrix."""
    model = load_keras_model(args.model)
    folder = ImageFolder.scan(args.data)
    ev = evaluate_model(model, folder, model.input_shape[1], args.batch_size)
    out = ev.save(args.out or Path("runs/evaluate") / Path(args.model).resolve().parent.name)
    print("\n" + ev.markdown() + "\n")
    print(f"evaluation.md, evaluation.json and confusion.png in {out}")
    print(json.dumps(ev.summary()))
    return 0


def cache_bench(args) -> int:
    """Time the learning-rate sweep with and without cached features, on the same data, in one run."""
    cfg = config_from(args)
    splits = Splits.load(cfg.data, cfg.limit)
    seconds = {}
    for cached in (True, False):
        t = time.perf_counter()
        run_sweep("lr", replace(cfg, cache=cached), splits, args.epochs)
        seconds["cached" if cached else "uncached"] = time.perf_counter() - t
    report = {"images": {"train": len(splits.train.paths), "validation": len(splits.val.paths)},
              "size": cfg.size, "epochs": args.epochs or 10, "settings": 4, **seconds,
              "speedup": seconds["uncached"] / seconds["cached"]}
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "cache-bench.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nlr sweep, 4 settings x {report['epochs']} epochs, {cfg.size} px, "
          f"{report['images']['train']} train images: cached {seconds['cached']:.0f} s, "
          f"uncached {seconds['uncached']:.0f} s, speed-up {report['speedup']:.1f}x")
    return 0
