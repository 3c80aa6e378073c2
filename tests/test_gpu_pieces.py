"""The GPU machine's transfer script: files cut into pieces here, received over several calls there,
joined with every hash checked."""

import os
import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "gpu_pieces.py"


def pieces(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_files_cut_received_in_two_calls_and_joined_are_the_same_bytes(tmp_path):
    wheel, model = tmp_path / "w.whl", tmp_path / "m.onnx"
    wheel.write_bytes(os.urandom(5 * 2 ** 20 + 7))
    model.write_bytes(os.urandom(2 ** 20))
    assert pieces("split", wheel, model, "--out", tmp_path / "cut", "--piece-mib", 2).returncode == 0
    names = sorted(p.name for p in (tmp_path / "cut").glob("*.part*"))
    assert names == ["m.onnx.part0", "w.whl.part0", "w.whl.part1", "w.whl.part2"]
    store = tmp_path / "store"
    for batch in (names[:2], names[2:]):  # two calls, each carrying some pieces and the record
        carried = tmp_path / f"call-{batch[0]}"
        carried.mkdir()
        for name in [*batch, "pieces.json"]:
            (carried / name).write_bytes((tmp_path / "cut" / name).read_bytes())
        res = pieces("receive", carried, "--store", store)
        assert res.returncode == 0 and f"received {len(batch)} pieces" in res.stdout
        if batch == names[:2]:
            early = pieces("join", "--store", store, "--out", tmp_path / "out")
            assert early.returncode == 2 and "2 pieces not received yet: w.whl.part1, w.whl.part2" in early.stderr
    assert pieces("join", "--store", store, "--out", tmp_path / "out").returncode == 0
    assert (tmp_path / "out" / "w.whl").read_bytes() == wheel.read_bytes()
    assert (tmp_path / "out" / "m.onnx").read_bytes() == model.read_bytes()


def test_an_altered_piece_is_refused_in_one_line(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(3 * 2 ** 20))
    pieces("split", f, "--out", tmp_path / "cut", "--piece-mib", 1)
    part = tmp_path / "cut" / "f.bin.part1"
    part.write_bytes(b"x" + part.read_bytes()[1:])
    res = pieces("receive", tmp_path / "cut", "--store", tmp_path / "store")
    assert res.returncode == 2 and res.stderr.strip() == (
        "error: f.bin.part1: sha256 differs from the record (altered in transit?)")
    assert pieces("split", f, "--piece-mib", 64).stderr.strip() == (
        "error: --piece-mib 64: 1 to 63 (a call carries at most 64 MiB)")
