"""A model file hashed once is not hashed again while unchanged; any change to it is hashed and caught."""

import os

import pytest

import runtime.bundle
from runtime.bundle import ManifestError
from runtime.checks.verified import identity, known, remember
from runtime.classifier import Classifier
from tests.conftest import clone


@pytest.fixture
def bundle(converted, tmp_path, monkeypatch):
    """A copy of the tiny bundle, its own records folder, and a count of the hashes computed."""
    copy = tmp_path / "bundle"
    clone(converted, copy, own=("model.int8.onnx",))
    monkeypatch.setenv("RUNTIME_VERIFY_CACHE", str(tmp_path / "records"))
    hashes = []
    real = runtime.bundle.sha256_mapped
    monkeypatch.setattr(runtime.bundle, "sha256_mapped", lambda path: hashes.append(path) or real(path))
    return copy, tmp_path / "records", hashes


def load(folder):
    return Classifier.load(folder, "onnx", "int8")


def test_an_unchanged_file_is_hashed_once_and_a_changed_one_is_caught(bundle):
    folder, records, hashes = bundle
    model = folder / "model.int8.onnx"
    load(folder)
    load(folder)
    assert len(hashes) == 1 and len(list(records.iterdir())) == 1
    st, original = model.stat(), model.read_bytes()
    model.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: the change time still moved
    with pytest.raises(ManifestError, match="hash differs"):
        load(folder)
    model.write_bytes(original)
    load(folder)
    assert len(hashes) == 3
    load(folder)
    assert len(hashes) == 3


def test_off_or_an_unwritable_folder_hashes_every_load(bundle, monkeypatch, tmp_path):
    folder, _, hashes = bundle
    monkeypatch.setenv("RUNTIME_VERIFY_CACHE", "off")
    load(folder)
    load(folder)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("RUNTIME_VERIFY_CACHE", str(blocked))
    load(folder)
    load(folder)
    assert len(hashes) == 4 and blocked.read_text() == "not a folder"


def test_a_manifest_hash_that_is_not_hex_never_names_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNTIME_VERIFY_CACHE", str(tmp_path / "records"))
    model = tmp_path / "m.bin"
    model.write_bytes(b"x")
    for bad in ("../../escape", "A" * 64, "0" * 63):
        remember(model, bad, identity(model))
        assert not known(model, bad)
    assert not (tmp_path / "records").exists() and not (tmp_path.parent / "escape").exists()
    good = "0" * 64
    remember(model, good, identity(model))
    assert known(model, good) and not known(model, "1" * 64)
    remember(model, good, "another identity")  # the file changed while it was hashed: not noted again
    assert (tmp_path / "records" / good).read_text().split() == [identity(model)]
