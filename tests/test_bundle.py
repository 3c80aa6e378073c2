"""The bundle contract: every malformed manifest field refused by name, paths kept inside the bundle."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from runtime.bundle import FILE, Manifest, ManifestError, Source, artifact_path
from runtime.classifier import Classifier
from tests.conftest import clone


def edited(converted, tmp_path, edit):
    """A copy of the converted bundle whose manifest JSON went through ``edit(data)``."""
    bundle = tmp_path / "b"
    clone(converted, bundle)
    data = json.loads((bundle / FILE).read_text())
    edit(data)
    (bundle / FILE).write_text(json.dumps(data))
    return bundle


def set_first_artifact(key, value):
    return lambda d: d["artifacts"][0].__setitem__(key, value)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.__setitem__("schema", 2), "schema 2, expected 1"),
    (lambda d: d.__setitem__("classes", "abc"), "classes: expected list"),
    (lambda d: d.__setitem__("classes", ["a", "a", "b"]), "distinct non-empty"),
    (lambda d: d.__setitem__("classes", ["a", "\x1b]0;owned\x07", "b"]), r"'\\x1b\]0;owned\\x07' is not a class"),
    (lambda d: d.__setitem__("classes", ["a", "b\r\nc", "d"]), "is not a class name"),
    (lambda d: d.__setitem__("classes", ["a", "\ud800", "d"]), r"'\\ud800' is not a class name"),
    (lambda d: d["input"].__setitem__("height", "71"), "input.height: expected int"),
    (lambda d: d["input"].__setitem__("width", True), "input.width: expected int"),
    (lambda d: d["preprocessing"].__setitem__("mode", "magic"), "unknown mode"),
    (lambda d: d["source"].pop("sha256"), "source.sha256: expected str"),
    (lambda d: d.__setitem__("artifacts", {}), "artifacts: expected list"),
    (set_first_artifact("format", "pt"), "unknown format/precision pt/"),
    (set_first_artifact("file", "../model.fp32.onnx"), "not a file name inside the bundle"),
    (set_first_artifact("file", "/etc/passwd"), "not a file name inside the bundle"),
    (set_first_artifact("bytes", 1.5), r"artifacts\[0\].bytes: expected int"),
    (set_first_artifact("latency_ms", "fast"), "latency_ms: expected"),
    (set_first_artifact("parity", {"passed": True}), "parity: .*missing"),
    (set_first_artifact("sha256", None), r"artifacts\[0\].sha256: expected str"),
    (lambda d: d["artifacts"].append(d["artifacts"][0]), "listed twice"),
])
def test_malformed_manifests_are_refused_naming_the_field(converted, tmp_path, edit, match):
    bundle = edited(converted, tmp_path, edit)
    with pytest.raises(ManifestError, match=match):
        Manifest.read(bundle)
    with pytest.raises(ManifestError):
        Classifier.load(bundle)


def test_a_manifest_round_trips_and_old_parity_records_still_read(converted, tmp_path):
    m = Manifest.read(converted)
    bundle = edited(converted, tmp_path, lambda d: [a["parity"].__setitem__("failure", None) or
                                                    a["parity"].pop("failures") for a in d["artifacts"]])
    assert Manifest.read(bundle) == m
    m.write(tmp_path)
    assert Manifest.read(tmp_path) == m


def test_a_symlink_leaving_the_bundle_is_refused(converted, tmp_path):
    bundle = tmp_path / "b"
    clone(converted, bundle)
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(bundle / "model.fp32.onnx", outside)
    (bundle / "model.fp32.onnx").symlink_to(outside)
    entry = Manifest.read(bundle).entry("model.fp32.onnx")
    with pytest.raises(ManifestError, match="symlink that leaves the bundle"):
        artifact_path(bundle, entry)


def test_a_changed_source_model_clears_the_artifacts_and_the_same_keeps_them(converted):
    m = Manifest.read(converted)
    assert m.with_source(m.source).artifacts == m.artifacts
    changed = m.with_source(dataclasses.replace(m.source, sha256="0" * 64))
    assert changed.artifacts == () and changed.source.details == m.source.details
    assert Source.of(converted).sha256 == m.source.sha256


def test_an_export_refused_by_parity_is_recorded_without_a_hash_and_never_loaded(converted, tmp_path):
    from runtime.choice import choose
    from runtime.errors import ModelError

    def refuse_int8(d):
        for a in d["artifacts"]:
            if a["file"] == "model.int8.onnx":
                a["sha256"], a["parity"]["passed"], a["parity"]["failures"] = None, False, ["top-1 agreement low"]
        d["cascades"] = [c for c in d["cascades"] if c["fast"] != "model.int8.onnx"]  # as a conversion drops it
    bundle = edited(converted, tmp_path, refuse_int8)
    m = Manifest.read(bundle)
    (refused,) = m.refused()
    assert refused.file == "model.int8.onnx" and refused.sha256 is None and refused not in m.verified()
    with pytest.raises(ManifestError, match="failed parity at conversion"):
        artifact_path(bundle, refused)
    with pytest.raises(ModelError, match=r"no verified onnx/int8 artifact \(model.int8.onnx failed parity\)"):
        choose(m, "onnx", "int8")
    m.write(tmp_path)
    assert Manifest.read(tmp_path) == m


def test_the_mapped_hash_equals_the_streamed_one(tmp_path):
    from runtime.files import sha256, sha256_mapped

    data = tmp_path / "blob"
    data.write_bytes(np.random.default_rng(0).integers(0, 256, 3 * 4096 + 17, np.uint8).tobytes())
    (tmp_path / "empty").write_bytes(b"")
    for path in (data, tmp_path / "empty"):
        assert sha256_mapped(path, chunk=4096) == sha256(path) == sha256_mapped(path)
