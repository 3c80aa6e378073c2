"""Fuzz the model-file path: mutated ONNX and TFLite files and mutated embedded metadata, loaded and run by
the runtime as a user's file; only its typed errors may come out.

``python -m benchmarks.stress.fuzz_models --seconds 600 [--found DIR] [--out DIR]``. The seeds are two tiny
classifiers (an ONNX graph built here, a TFLite file converted here) carrying this project's metadata.
Each case is a byte mutation of a seed file, or a seed whose metadata text is mutated; it is written to a
file and loaded and run (``Classifier.load`` and one prediction) in a worker process, so that a crash or a
hang of an inference library is a finding, not the end of the run. A finding (a crash, a hang past
CASE_SECONDS, an untyped exception) is kept under ``--found`` as its bytes and what happened.
"""

import hashlib
import json
import multiprocessing
import queue
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.stress.fuzz_images import mutate
from runtime.cli import command_parser, error, positive_float

CASE_SECONDS = 10
CLASSES = ["a", "b", "c"]
META = {"name": "fuzz", "classes": CLASSES, "input": {"height": 8, "width": 8, "channels": 3},
        "preprocessing": {"mode": "xception"}, "output": "logits"}
KINDS = ("flip", "set", "insert", "delete", "truncate", "dup")


def onnx_seed(meta: str | None = None) -> bytes:
    """A tiny NHWC classifier as ONNX (Transpose, Conv, Relu, global mean, Gemm) with ``meta`` embedded."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w, fc = rng.normal(size=(4, 3, 3, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["logits"])]
    graph = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, 8, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3])],
                              [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(fc, "fc")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {"edge_classifier": json.dumps(META) if meta is None else meta})
    return model.SerializeToString()


def tflite_seed() -> bytes | None:
    """The same kind of classifier as TFLite with the metadata embedded, or None without TensorFlow."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    from convert.to_tflite import with_metadata

    tf.random.set_seed(0)
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(x))
    return with_metadata(tf.lite.TFLiteConverter.from_keras_model(model).convert(), META)


def case_of(rng: random.Random, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """One case: (suffix, bytes), a seed's bytes mutated, or the ONNX seed with its metadata text mutated."""
    if rng.random() < 0.3:
        text = mutate(json.dumps(META).encode(), [(rng.choice(KINDS), rng.randrange(1 << 20), rng.randrange(256))
                                                   for _ in range(rng.randrange(1, 6))])
        return ".onnx", onnx_seed(text.decode("utf-8", "replace"))  # protobuf strings are UTF-8
    suffix = rng.choice(sorted(seeds))
    edits = [(rng.choice(KINDS), rng.randrange(1 << 20), rng.randrange(256)) for _ in range(rng.randrange(1, 9))]
    return suffix, mutate(seeds[suffix], edits)


def _worker(jobs, results):
    """Load and run each case file; report 'ok', 'typed' or 'untyped: ...'."""
    from runtime.classifier import Classifier
    from runtime.errors import RuntimeToolkitError

    x = np.zeros((1, 8, 8, 3), np.float32)
    while (path := jobs.get()) is not None:
        try:
            Classifier.load(path).answer(x)
            results.put("ok")
        except RuntimeToolkitError:
            results.put("typed")
        except Exception as e:  # the finding: an error the runtime does not turn into its own
            results.put(f"untyped: {type(e).__name__}: {str(e)[:200]}")


def fuzz(seconds: float, seeds: dict[str, bytes], found: Path, seed: int = 0) -> dict:
    """Run cases for ``seconds`` in a worker process (restarted after a crash or a hang); counts by outcome."""
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(seed)
    stats = {"cases": 0, "ok": 0, "typed_errors": 0, "findings": 0, "crash": 0, "hang": 0}
    end = time.monotonic() + seconds
    with tempfile.TemporaryDirectory(prefix="edge-fuzz-models-") as tmp:
        worker = None
        while time.monotonic() < end:
            if worker is None or not worker[0].is_alive():
                jobs, results = ctx.Queue(), ctx.Queue()
                worker = (ctx.Process(target=_worker, args=(jobs, results), daemon=True), jobs, results)
                worker[0].start()
            process, jobs, results = worker
            suffix, data = case_of(rng, seeds)
            path = Path(tmp) / f"case{suffix}"
            path.write_bytes(data)
            jobs.put(str(path))
            stats["cases"] += 1
            try:
                outcome = results.get(timeout=CASE_SECONDS + (30 if stats["cases"] == 1 else 0))
            except queue.Empty:
                outcome = "crash" if not process.is_alive() else "hang"
                process.kill()
                process.join()
                worker = None
            if outcome == "ok":
                stats["ok"] += 1
            elif outcome == "typed":
                stats["typed_errors"] += 1
            else:
                stats["findings"] += 1
                if outcome in ("crash", "hang"):
                    stats[outcome] += 1
                save(found, suffix, data, outcome)
        if worker is not None:
            worker[1].put(None)
            worker[0].join(timeout=10)
    return stats


def save(found: Path, suffix: str, data: bytes, what: str):
    """Keep a finding as ``<sha><suffix>`` with what happened beside it."""
    found.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(data).hexdigest()[:16]
    (found / f"{name}{suffix}").write_bytes(data)
    (found / f"{name}.txt").write_text(what + "\n")


def parser():
    p = command_parser("python -m benchmarks.stress.fuzz_models", __doc__)
    p.add_argument("--seconds", type=positive_float, default=600, help="how long to fuzz (default 600)")
    p.add_argument("--found", type=Path, default=Path("runs/fuzz-models"),
                   help="where each finding is kept (default runs/fuzz-models)")
    p.add_argument("--out", type=Path, help="folder to write fuzz_models.json into")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.out and args.out.exists() and not args.out.is_dir():
        return error(f"--out {args.out} is a file; give the folder to write fuzz_models.json into")
    seeds = {".onnx": onnx_seed()}
    if (tfl := tflite_seed()) is not None:
        seeds[".tflite"] = tfl
    stats = fuzz(args.seconds, seeds, args.found)
    print(json.dumps({**stats, "seeds": sorted(seeds)}))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "fuzz_models.json").write_text(json.dumps({**stats, "seconds": args.seconds,
                                                               "seeds": sorted(seeds)}, indent=1))
    print(f"{stats['cases']} cases in {args.seconds:g} s: {stats['ok']} ran, {stats['typed_errors']} typed errors, "
          f"{stats['findings']} findings" + (f" (kept in {args.found})" if stats["findings"] else ""), file=sys.stderr)
    return 1 if stats["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
