"""The Lambda zip: built from the registry's wheels, unpacked, and called from a clean interpreter."""

import json
import sys
import zipfile

import pytest

from benchmarks.lambda_zip import invoke, serving
from runtime.bundle import FILE, Manifest
from runtime.classifier import Classifier
from runtime.package.build import build_lambda, main
from runtime.package.wheels import Target

NOT_IMPORTED = {"flatbuffers", "packaging", "google", "sympy", "coloredlogs", "tqdm", "ml_dtypes", "tensorflow",
                "keras", "onnx", "train", "convert", "benchmarks"}


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_the_unpacked_zip_answers_the_course_event_like_the_runtime(converted, tiny_data, tmp_path, fmt):
    package = build_lambda(converted, fmt, "fp32", Target.here(), tmp_path / "function.zip")
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(package.path) as z:
        assert sum(i.file_size for i in z.infolist()) == package.unzipped
        z.extractall(folder)
    image = next((tiny_data / "test/red").iterdir())
    with serving(image) as url:
        call = invoke(folder, {"url": url}, {"RUNTIME_ALLOW_PRIVATE_URLS": "1", "RUNTIME_MODEL": ""})
    expected = Classifier.load(converted, fmt, "fp32").predict([image], top_k=1)[0]
    assert call.answer == pytest.approx(dict(zip(Classifier.load(converted, fmt, "fp32").info.classes,
                                                 expected.logits, strict=True)), abs=1e-5)
    assert [p for p in call.sys_path if not p.startswith(sys.base_prefix)] == [str(folder)]
    assert not any("-packages" in p for p in call.sys_path)
    assert not NOT_IMPORTED & set(call.modules)
    assert package.artifact == f"model.fp32.{'onnx' if fmt == 'onnx' else 'tflite'}"


@pytest.fixture(scope="module")
def cascade_zip(converted, tmp_path_factory):
    """The default TFLite Lambda zip of the converted bundle (its cascade), built once for this module."""
    return build_lambda(converted, "tflite", None, Target.here(), tmp_path_factory.mktemp("zip") / "function.zip")


def test_the_zip_carries_the_cascade_and_its_handler_runs_it(converted, cascade_zip, tiny_data, tmp_path):
    package = cascade_zip
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(package.path) as z:
        z.extractall(folder)
    m = Manifest.read(folder / "model")
    (pair,) = m.cascades
    assert pair.fast == "model.int8.tflite" and m.entry(pair.exact).format == "tflite"
    assert m.entry(pair.exact).parity.top1_agreement == 1.0 and len(m.artifacts) == 2
    assert package.artifact.startswith(f"cascade model.int8.tflite > {pair.exact} (gate ")
    data = json.loads((folder / "model" / FILE).read_text())
    data["cascades"][0]["margin"] = 1000.0  # every answer re-checked: the float half must answer
    (folder / "model" / FILE).write_text(json.dumps(data))
    image = next((tiny_data / "test/red").iterdir())
    with serving(image) as url:
        call = invoke(folder, {"url": url}, {"RUNTIME_ALLOW_PRIVATE_URLS": "1", "RUNTIME_MODEL": ""})
    exact = Classifier.load(converted, "tflite", m.entry(pair.exact).precision)
    expected = dict(zip(exact.info.classes, exact.predict([image], top_k=1)[0].logits, strict=True))
    assert call.answer == pytest.approx(expected, abs=1e-5)


def test_a_bad_bundle_or_an_unknown_artifact_leaves_no_zip(converted, tmp_path, capsys):
    out = tmp_path / "function.zip"
    assert main(["lambda", "--model", str(tmp_path), "--format", "onnx", "--out", str(out)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert main(["lambda", "--model", str(converted), "--format", "onnx", "--python", "3.11",
                 "--glibc", "2.16", "--out", str(out)]) == 2
    assert "at least 2.17" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".function.zip*"))


def test_python_311_lambda_names_the_glibc_that_lacks_wheels(converted, tmp_path, capsys):
    out = tmp_path / "function.zip"
    assert main(["lambda", "--model", str(converted), "--format", "onnx", "--python", "3.11", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "glibc <= 2.26" in err and "--python 3.12" in err
    assert not out.exists()


def test_install_refuses_a_folder_that_is_not_empty_and_a_failed_one_leaves_nothing(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["install", "--format", "onnx", "--target", str(tmp_path)]) == 2
    assert "not an empty folder" in capsys.readouterr().err and (tmp_path / "keep.txt").read_text() == "mine"
    new = tmp_path / "slim"
    assert main(["install", "--format", "onnx", "--glibc", "2.16", "--target", str(new)]) == 2
    assert "at least 2.17" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_two_builds_of_one_bundle_are_the_same_bytes_and_list_every_file(converted, cascade_zip, tmp_path):
    import hashlib

    first = cascade_zip
    second = build_lambda(converted, "tflite", None, Target.here(), tmp_path / "b.zip")
    digest = [hashlib.sha256(p.path.read_bytes()).hexdigest() for p in (first, second)]
    assert digest[0] == digest[1]
    with zipfile.ZipFile(first.path) as z:
        listed = json.loads(z.read("FILES.json"))
        names = {i.filename for i in z.infolist()} - {"FILES.json"}
        assert set(listed) == names and "lambda_function.py" in names and "model/model.int8.tflite" in names
        assert all(hashlib.sha256(z.read(n)).hexdigest() == listed[n] for n in names)
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_a_wheel_whose_hash_differs_from_the_lock_is_refused(converted, tmp_path, capsys, monkeypatch):
    from runtime.package import wheels

    lock = json.loads(wheels.LOCK.read_text())
    key = wheels.lock_key("onnx", Target.here())
    pin = next(p for p in lock["sets"][key] if p.startswith("numpy=="))
    lock["sets"][key][pin] = "0" * 64
    (tmp_path / "wheels.lock.json").write_text(json.dumps(lock))
    monkeypatch.setattr(wheels, "LOCK", tmp_path / "wheels.lock.json")
    out = tmp_path / "function.zip"
    assert main(["lambda", "--model", str(converted), "--format", "onnx", "--precision", "fp32", "--python",
                 f"{sys.version_info.major}.{sys.version_info.minor}", "--glibc", Target.here().glibc,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {pin} for {key.split(' ', 1)[1]}: its sha256 ")
    assert err.endswith("is not the one in wheels.lock.json: refused")
    assert not out.exists()
    lock["sets"].pop(key)
    (tmp_path / "wheels.lock.json").write_text(json.dumps(lock))
    assert main(["install", "--format", "onnx", "--target", str(tmp_path / "slim")]) == 2
    assert f"no locked wheels for {key} in wheels.lock.json" in capsys.readouterr().err


def test_a_faithful_int8_file_is_what_answers_and_what_ships_alone(converted, tmp_path):
    """Where an int8 file agreed on every parity image (its lower bound clears the cascade's threshold), the runtime
    loads it alone and the package commands copy exactly it, saying why."""
    from runtime.package.build import copy_model
    from tests.test_bundle import edited

    def perfect(data):
        entry = next(a for a in data["artifacts"] if a["file"] == "model.int8.tflite")
        entry["parity"]["top1_agreement"] = 1.0

    bundle = edited(converted, tmp_path, perfect)
    assert Manifest.read(bundle).entry("model.int8.tflite").parity.images >= 189  # enough to clear 98%
    clf = Classifier.load(bundle)
    assert clf.file.endswith("model.int8.tflite") and clf.exact_file is None and "faithful" in clf.reason
    said = copy_model(bundle, "tflite", None, tmp_path / "model")
    assert said.startswith("model.int8.tflite (one faithful int8 file")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [FILE, "model.int8.tflite"]
    m = Manifest.read(tmp_path / "model")
    assert [a.file for a in m.artifacts] == ["model.int8.tflite"] and m.cascades == ()
