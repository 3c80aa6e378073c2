"""The export cache: made once per model and tool versions, copied after, bounded, and switchable off."""

from convert import cache


def maker(calls: list):
    """A ``make`` that writes a file and counts its calls."""
    def make(dest):
        calls.append(dest)
        dest.write_bytes(b"export %d" % len(calls))
    return make


def test_an_export_is_made_once_then_copied(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_EXPORT_CACHE", str(tmp_path / "cache"))
    calls = []
    first = cache.cached("a" * 64, "fp32.onnx", maker(calls), tmp_path / "one.onnx")
    second = cache.cached("a" * 64, "fp32.onnx", maker(calls), tmp_path / "two.onnx")
    assert len(calls) == 1 and first.read_bytes() == second.read_bytes() == b"export 1"
    cache.cached("b" * 64, "fp32.onnx", maker(calls), tmp_path / "three.onnx")  # another model
    cache.cached("a" * 64, "saved_model", maker(calls), tmp_path / "four")  # another kind
    assert len(calls) == 3
    assert not list((tmp_path / "cache").glob(".*"))  # no partial entry left


def test_the_cache_keeps_only_the_most_recent_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_EXPORT_CACHE", str(tmp_path / "cache"))
    for i in range(cache.KEEP + 3):
        cache.cached(f"{i:064d}", "fp32.onnx", maker([]), tmp_path / f"{i}.onnx")
    assert len(list((tmp_path / "cache").iterdir())) == cache.KEEP


def test_the_default_cache_is_its_own_folder_beside_the_imagenet_copy(tmp_path, monkeypatch):
    from train import imagenet

    monkeypatch.delenv("EDGE_EXPORT_CACHE")
    monkeypatch.delenv("EDGE_CLASSIFIER_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    keep = tmp_path / ".cache/edge-classifier/xception-imagenet-notop.weights.h5"
    keep.parent.mkdir(parents=True)
    keep.write_bytes(b"weights")
    for i in range(cache.KEEP + 2):  # pruning never reaches beyond the cache's own folder
        cache.cached(f"{i:064d}", "fp32.onnx", maker([]), tmp_path / f"{i}.onnx")
    assert keep.read_bytes() == b"weights" and cache.root() == keep.parent / "exports"
    assert imagenet.cache_dir() == keep.parent


def test_off_makes_every_time_and_stores_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_EXPORT_CACHE", "off")
    monkeypatch.setenv("HOME", str(tmp_path))
    calls = []
    for name in ("one", "two"):
        cache.cached("a" * 64, "fp32.onnx", maker(calls), tmp_path / name)
    assert len(calls) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
