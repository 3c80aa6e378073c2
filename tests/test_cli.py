"""What a user meets at the command line: checked flags, one-line errors, bare model files, compare."""

import argparse
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from runtime.classifier import Classifier
from runtime.preprocessing import preprocess
from tests.conftest import ROOT, run_module


def last_line(res) -> str:
    return res.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("command", [
    ["runtime.predict", "x.jpg", "--top-k", "0"], ["runtime.predict", "x.jpg", "--top-k", "-1"],
    ["runtime.predict", "x.jpg", "--threads", "0"], ["runtime.predict", "x.jpg", "--threads", "-3"],
    ["runtime.predict", "x.jpg", "--batch-size", "0"], ["runtime.serve", "--max-inflight", "0"],
    ["runtime.serve", "--port", "99999"], ["runtime.serve", "--header-timeout", "0"],
    ["runtime.serve", "--decode-deadline", "-1"], ["runtime.serve", "--max-connections", "0"],
    ["train", "--data", "d", "--epochs", "0"],
    ["train", "--data", "d", "--limit", "0"], ["train", "--data", "d", "--size", "70"],
    ["train", "--data", "d", "--dropout", "1.5"], ["convert", "b", "--parity-images", "0"],
    ["benchmarks", "b", "--images", "d", "--limit", "0"], ["benchmarks", "b", "--images", "d", "--runs", "0"],
    ["benchmarks.runtime_bench", "b", "--image", "x.jpg", "--runs", "0"],
    ["runtime.package", "install", "--format", "onnx", "--glibc", "0", "--target", "x"],
    ["runtime.package", "lambda", "--model", "b", "--format", "onnx", "--python", "abc"],
])
def test_out_of_range_numbers_are_usage_errors(command):
    res = run_module(*command)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "error: argument" in last_line(res) and ("is not" in last_line(res) or "is below" in last_line(res))


def test_predict_empty_folder_is_an_error_and_other_inputs_still_answered(converted, tiny_data, tmp_path):
    (tmp_path / "empty").mkdir()
    image = next((tiny_data / "test" / "red").iterdir())
    res = run_module("runtime.predict", tmp_path / "empty", image, "--model", converted)
    assert res.returncode == 1
    lines = res.stdout.strip().splitlines()
    assert lines[0] == f"{tmp_path / 'empty'}: error: folder holds no images"
    assert lines[1].startswith(f"{image}: ")
    assert last_line(res).startswith("2 images: 1 answered, 1 failed")


def test_predict_folder_ends_with_accuracy_on_labelled_images(converted, tiny_data):
    res = run_module("runtime.predict", tiny_data / "test", "--model", converted, "--json")
    assert res.returncode == 0, res.stderr
    answers = [json.loads(line) for line in res.stdout.splitlines()]
    right = sum(a["label"] == os.path.basename(os.path.dirname(a["input"])) for a in answers)
    assert last_line(res) == f"18 images: 18 answered, 0 failed; accuracy {right / 18:.3f} on 18 labelled images"


def test_predict_into_a_closed_pipe_ends_quietly(converted, tiny_data):
    cmd = f"{sys.executable} -m runtime.predict --json {tiny_data / 'test'} --model {converted} | head -1"
    res = subprocess.run(["bash", "-c", cmd], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120, check=False)
    assert json.loads(res.stdout)["label"]
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr and "failed" not in res.stderr


def test_default_model_missing_names_the_flag_and_the_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RUNTIME_MODEL"}
    res = subprocess.run([sys.executable, "-m", "runtime.predict", "x.jpg"], cwd=tmp_path,
                         env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=False)
    assert res.returncode == 2
    assert "no model at artifacts/default" in last_line(res)
    assert "--model" in last_line(res) and "RUNTIME_MODEL" in last_line(res)


@pytest.fixture(scope="module")
def bare_onnx(converted, tmp_path_factory):
    """The fp32 ONNX export with this project's metadata stripped: a file as a user may bring it."""
    model = onnx.load(str(converted / "model.fp32.onnx"))
    del model.metadata_props[:]
    path = tmp_path_factory.mktemp("bare") / "mine.onnx"
    onnx.save(model, str(path))
    return path


def test_bare_model_needs_classes_and_then_answers_like_its_bundle(bare_onnx, converted, tiny_data):
    image = next((tiny_data / "test" / "green").iterdir())
    res = run_module("runtime.predict", image, "--model", bare_onnx)
    assert res.returncode == 2 and "--classes" in last_line(res) and "Traceback" not in res.stderr
    res = run_module("runtime.predict", image, "--model", bare_onnx, "--classes", "blue,green,red", "--json")
    assert res.returncode == 0, res.stderr
    bare = json.loads(res.stdout)
    full = Classifier.load(converted / "model.fp32.onnx").predict([image])[0]
    assert bare["label"] == full.label and np.allclose(bare["logits"], full.logits, atol=1e-6)
    res = run_module("runtime.predict", image, "--model", bare_onnx, "--classes", "a,b")
    assert res.returncode == 2 and "3 outputs but 2 classes" in last_line(res)


def test_preprocessing_modes_match_keras_applications(tiny_data):
    from keras.applications import imagenet_utils

    image = next((tiny_data / "test" / "blue").iterdir())
    raw = preprocess(image, (71, 71), "none")
    for mode in ("caffe", "tf", "torch"):
        expected = imagenet_utils.preprocess_input(raw.copy()[None], mode=mode)[0]
        got = preprocess(image, (71, 71), mode)
        np.testing.assert_allclose(got.transpose(1, 2, 0) if mode == "torch" else got, expected, rtol=1e-5,
                                   atol=1e-4)
    assert raw.max() > 1 and raw.dtype == np.float32


def test_compare_two_exports_and_fail_beyond_a_tolerance(converted, tiny_data):
    res = run_module("runtime.compare", converted / "model.keras", converted / "model.fp32.onnx",
                     "--images", tiny_data / "test", "--max-diff", "1e-3", "--json")
    assert res.returncode == 1  # 18 of 18 agreeing: a lower bound of 82.4%, not enough to show fp32's 98%
    assert json.loads(res.stdout)["failed"] == ["top-1 agreement 100.0% [82.4%-100.0%] of 18: the 95% lower bound is "
                                                "under fp32's 98% (189 images are needed to show it)"]
    res = run_module("runtime.compare", converted / "model.keras", converted / "model.fp32.onnx",
                     "--images", tiny_data / "test", "--max-diff", "1e-3", "--json", "--min-agreement", "1")
    assert res.returncode == 0, res.stderr
    same = json.loads(res.stdout)
    assert same["images"] == 18 and same["top1_agreement"] == 1.0 and same["max_abs_logit_diff"] < 1e-3
    assert same["disagreements"] == [] and same["accuracy"] == same["accuracy_ref"]
    res = run_module("runtime.compare", converted / "model.fp32.onnx", converted / "model.int8.tflite",
                     "--images", tiny_data / "test", "--max-diff", "1e-9")
    assert res.returncode == 1
    assert "max |diff|" in res.stdout.splitlines()[-1] and "> 1e-09" in res.stdout.splitlines()[-1]


def test_compare_bad_inputs_are_one_line(converted, tmp_path):
    res = run_module("runtime.compare", converted, converted, "--images", tmp_path / "nope")
    assert res.returncode == 2 and last_line(res) == f"error: --images {tmp_path / 'nope'}: no such folder"
    res = run_module("runtime.compare", tmp_path / "nope.onnx", converted, "--images", tmp_path)
    assert res.returncode == 2 and last_line(res).startswith("error: no model at")


@pytest.mark.parametrize("args, expected", [
    (["evaluate", "{tmp}/nosuch.keras", "--data", "{data}/test"], "error: no model file at {tmp}/nosuch.keras"),
    (["evaluate", "{conv}/model.fp32.onnx", "--data", "{data}/test"],
     "error: model.fp32.onnx is not a Keras model (.keras, .h5); for exported models use `python -m runtime.compare`"
     " or `python -m benchmarks`"),
    (["resize", "{tmp}/nosuch", "--size", "96", "--out", "{tmp}/o"],
     "error: no model.keras in {tmp}/nosuch: give a bundle folder that `python -m train` wrote"),
    (["sweep", "lr", "--data", "{data}", "--lr", "0.01"],
     "error: the lr sweep varies learning_rate itself: drop that flag"),
])
def test_train_commands_fail_in_one_quiet_line(args, expected, converted, tiny_data, tmp_path):
    fill = {"tmp": tmp_path, "data": tiny_data, "conv": converted}
    res = run_module("train", *[a.format(**fill) for a in args])
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip() == expected.format(**fill)  # one line, no TensorFlow log lines


def test_benchmark_and_runtime_bench_bad_paths_are_one_line(converted, tiny_data, tmp_path):
    (tmp_path / "note.jpg").write_text("not an image")
    nope = tmp_path / "nope"
    cases = [(["benchmarks", converted, "--images", nope], f"--images {nope}: no such folder"),
             (["benchmarks", nope, "--images", tiny_data], f"no bundle or model file at {nope}"),
             (["benchmarks.runtime_bench", tmp_path / "nope", "--image", tmp_path / "note.jpg"],
              f"no bundle folder at {tmp_path / 'nope'}"),
             (["benchmarks.runtime_bench", converted, "--image", tmp_path / "note.jpg"], "not an image"),
             (["benchmarks.runtime_bench", converted, "--image", tmp_path / "nope.jpg"], "No such file"),
             (["benchmarks.cascade", converted, "--images", nope], f"--images {nope}: no such folder"),
             (["benchmarks.cascade", nope, "--images", tiny_data], "manifest.json"),
             (["benchmarks.architectures", "--data", tiny_data], "needs train/, validation/ and test/ with dress"),
             (["benchmarks.architectures", "--data", tiny_data, "--only", "VGG"], "none of 'VGG' is in the matrix")]
    for args, text in cases:
        res = run_module(*args)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert last_line(res).startswith("error: ") and text in last_line(res)


def test_convert_bare_model_without_fixed_size_or_images(tmp_path):
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.save(tmp_path / "free.keras")
    out = tmp_path / "bundle"
    res = run_module("convert", tmp_path / "free.keras", "--classes", "a,b", "--out", out)
    assert res.returncode == 2
    assert last_line(res) == "error: free.keras: input (None, None, 3) has no fixed size: give --size"
    assert not out.exists()
    res = run_module("convert", tmp_path / "free.keras", "--classes", "a,b", "--out", out, "--size", "32",
                     "--formats", "onnx")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "int8 skipped: it needs --calibration DIR" in res.stderr and "noise images" in res.stderr
    assert sorted(p.name for p in out.glob("model.*.onnx")) == ["model.fp16.onnx", "model.fp32.onnx"]


def _parsers():
    """Every command line of the project, by name."""
    from benchmarks import __main__ as bench
    from benchmarks import (
        architectures,
        cascade,
        device_profile,
        int8_methods,
        lambda_zip,
        runtime_bench,
        shared_cores,
    )
    from benchmarks.stress import bomb_cost, convert_race, fuzz_http, fuzz_images, hostile, serverload
    from convert import __main__ as conv
    from runtime import compare, predict
    from runtime.package import build as package
    from runtime.serve import app as serve
    from train import __main__ as train

    found = {"runtime.predict": predict.parser(), "runtime.serve": serve.parser(), "runtime.compare": compare.parser(),
             "convert": conv.parser(), "benchmarks": bench.parser(), "benchmarks.runtime_bench": runtime_bench.parser(),
             "benchmarks.stress.fuzz_images": fuzz_images.parser(), "benchmarks.stress.serverload": serverload.parser(),
             "benchmarks.stress.fuzz_http": fuzz_http.parser(), "benchmarks.stress.hostile": hostile.parser(),
             "benchmarks.int8_methods": int8_methods.parser(), "benchmarks.lambda_zip": lambda_zip.parser(),
             "benchmarks.shared_cores": shared_cores.parser(), "benchmarks.device_profile": device_profile.parser(),
             "benchmarks.cascade": cascade.parser(), "benchmarks.architectures": architectures.parser(),
             "benchmarks.stress.bomb_cost": bomb_cost.parser(), "benchmarks.stress.convert_race": convert_race.parser()}
    subs = next(a for a in package.parser()._actions if isinstance(a, argparse._SubParsersAction))
    found |= {"runtime.package": package.parser()} | {f"runtime.package {n}": p for n, p in subs.choices.items()}
    return found | {f"train {c or ''}": train.parser(c) for c in (None, *train.COMMANDS)}


def test_every_flag_has_help_and_no_help_shows_rst_markup():
    for name, p in _parsers().items():
        undocumented = [a.dest for a in p._actions if not a.help and not isinstance(a, argparse._HelpAction)]
        assert not undocumented, (name, undocumented)
        assert "``" not in p.format_help(), name


def test_no_verified_artifact_names_what_failed_and_the_next_command():
    from runtime.bundle import Artifact, Manifest, Source
    from runtime.choice import choose
    from runtime.errors import ModelError
    from runtime.parity import Parity

    m = Manifest.for_model("real", ["a", "b"], 150, Source("model.keras", "x"))
    failed = Artifact("model.int8.onnx", "onnx", "int8", 1, "x", Parity(1, 0, 0, 0, 0.9, 1))
    m = dataclasses.replace(m, artifacts=(failed,))
    with pytest.raises(ModelError) as e:
        choose(m, None, "int8")
    assert str(e.value) == ("bundle real: no verified int8 artifact (model.int8.onnx failed parity); run "
                            "`python -m convert BUNDLE --calibration DIR` or drop --format/--precision")


def test_number_types_accept_every_spelling_of_their_bounds_and_refuse_nan():
    from runtime.cli import fraction, non_negative_float, positive_float, share

    assert share("1.00") == 1.0 and share("0") == 0.0 and non_negative_float("0.00") == 0.0
    for parse, text in ((share, "1.01"), (share, "nan"), (fraction, "1.0"), (positive_float, "0.0"),
                        (non_negative_float, "-1e-9"), (positive_float, "nan")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
