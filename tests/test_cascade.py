"""The cascade: int8 answers, a float file re-checks the near-ties; its gate, its record, and every place
the runtime answers through it."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from convert.cascade import MISS_RATE, STEP, error_bound, fit, fit_gate, halves, margin_error
from runtime.bundle import FILE, Artifact, Manifest, ManifestError
from runtime.cascade import margins, merge
from runtime.classifier import Classifier
from runtime.images import list_images
from runtime.parity import Parity, judge, wilson
from runtime.preprocessing import preprocess_batch
from tests.conftest import clone, run_module
from tests.test_bundle import edited


def entry(file, precision, ms):
    return Artifact(file, file.rsplit(".", 1)[1], precision, 1, "x", Parity(400, 0, 0, 0, 1, 1, passed=True), ms,
                    None)


def noisy_pair(n=400, seed=1):
    """Reference logits, an exact copy with tiny noise and a fast copy whose noise flips near-ties."""
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n, 10)) * 2
    return ref, ref + rng.normal(scale=1e-4, size=ref.shape), ref + rng.normal(scale=0.3, size=ref.shape)


def test_margins_and_merge_pick_rows_by_the_fast_files_top2_gap():
    fast = np.array([[3.0, 1.0, 0.0], [1.0, 1.2, 0.0], [np.nan, 0.0, 0.0]])
    exact = np.full((3, 3), 7.0)
    assert margins(fast[:2]).tolist() == pytest.approx([2.0, 0.2])
    out, again = merge(fast, exact, 0.5)
    assert again.tolist() == [False, True, True]  # a NaN row is answered again, never trusted
    assert out[0].tolist() == [3.0, 1.0, 0.0] and (out[1:] == 7.0).all()


def test_the_fitted_gate_is_the_largest_flip_margin_and_fixes_every_flip():
    ref, exact, fast = noisy_pair()
    flips = fast.argmax(1) != ref.argmax(1)
    assert 5 <= flips.sum() <= 60, "the example must have flips to fix"
    gate = fit_gate(ref, fast, exact)
    gaps = np.sort(fast[flips], 1)
    assert gate == pytest.approx((gaps[:, -1] - gaps[:, -2]).max())
    out, _ = merge(fast, exact, gate)
    assert (out.argmax(1) == ref.argmax(1)).all()
    assert fit_gate(ref, ref.copy(), exact) == 0.0


def test_the_gate_covers_the_error_model_and_is_checked_on_held_out_halves():
    from scipy.stats import norm

    ref, exact, fast = noisy_pair()
    top2 = np.argsort(-ref, 1)[:, :2]
    rows = np.arange(len(ref))
    gap = ref[rows, top2[:, 0]] - ref[rows, top2[:, 1]]
    err = (fast[rows, top2[:, 0]] - fast[rows, top2[:, 1]]) - gap
    sigma = math.sqrt(np.mean(err ** 2))
    assert margin_error(ref, fast) == pytest.approx(sigma)
    bound = error_bound(ref, fast)
    assert np.mean(norm.sf((gap + bound) / sigma)) <= MISS_RATE < np.mean(norm.sf((gap + bound - STEP) / sigma))
    c = fit(ref, fast, exact, None, entry("model.int8.tflite", "int8", 2.0), entry("model.fp32.onnx", "fp32", 10.0),
            "validation")
    assert c.margin == pytest.approx(max(fit_gate(ref, fast, exact), bound))
    assert c.widened_by == pytest.approx(c.margin - fit_gate(ref, fast, exact))
    a, b = halves(len(ref))
    assert sorted([*a, *b]) == list(range(len(ref))) and abs(len(a) - len(b)) <= 1
    for half, (fitted, checked) in zip(c.halves, ((a, b), (b, a)), strict=True):
        gate = max(fit_gate(ref[fitted], fast[fitted], exact[fitted]), error_bound(ref[fitted], fast[fitted]))
        out, again = merge(fast[checked], exact[checked], gate)
        assert half.margin == pytest.approx(gate) and half.checked_images == len(checked)
        assert half.agreement == pytest.approx(np.mean(out.argmax(1) == ref[checked].argmax(1)))
        assert half.recheck_rate == pytest.approx(again.mean())
    agreeing = sum(h.agreement * h.checked_images for h in c.halves)
    assert c.parity.images == len(ref) and c.parity.top1_agreement == pytest.approx(agreeing / len(ref))
    assert c.recheck_rate == pytest.approx(np.mean(margins(fast) < c.margin))
    assert [p.margin for p in c.tradeoff] == sorted(p.margin for p in c.tradeoff)
    hand = fit(ref, fast, exact, None, entry("model.int8.tflite", "int8", 2), entry("model.fp32.onnx", "fp32", 10),
               "validation", margin=0.0)
    assert hand.set_by == "hand" and hand.recheck_rate == 0 and hand.parity.top1_agreement < 1


def test_agreement_is_judged_by_the_lower_bound_of_its_interval():
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # the textbook example
    p = Parity(341, 0, 0, 0, 333 / 341, 1)
    assert p.agreeing == 333 and judge(p, "int8").passed  # lower bound 95.4% >= 92%
    assert not judge(Parity(100, 0, 0, 0, 1.0, 1, accuracy_ref=1, accuracy=1), "fp32").passed
    assert "189 needed" in judge(Parity(100, 0, 0, 0, 1.0, 1), "fp32").failures[0]
    assert judge(Parity(189, 0, 0, 0, 1.0, 1), "fp32").passed


def test_conversion_publishes_a_cascade_per_int8_file_over_an_exact_float_file(converted, tiny_data):
    m = Manifest.read(converted)
    assert {c.fast for c in m.cascades} == {"model.int8.onnx", "model.int8.tflite"}
    for c in m.cascades:
        assert m.entry(c.exact).precision == "fp32" and c.parity.passed and c.parity.images >= 189
        assert c.set_by == "fitted" and len(c.halves) == 2 and c.latency_ms > 0
        assert c.fitted_on == f"{tiny_data / 'validation'} (210 images)"


def test_the_default_answer_is_the_cascade_and_names_the_file_that_gave_it(converted, tiny_data, tmp_path):
    x = preprocess_batch(list_images(tiny_data / "test"), (71, 71))
    clf = Classifier.load(converted)
    assert clf.exact_file is not None and clf.precision == "cascade" and "cascade" in clf.reason
    m = Manifest.read(converted)
    fast, exact = m.entry(Path(clf.file).name), m.entry(Path(clf.exact_file).name)
    fast_logits = Classifier.load(converted, fast.format, fast.precision).infer(x)
    exact_logits = Classifier.load(converted, exact.format, exact.precision).infer(x)
    gate = float(np.median(margins(fast_logits)))  # about half the rows under it
    bundle = edited(converted, tmp_path, lambda d: [c.__setitem__("margin", gate) for c in d["cascades"]])
    mixed = Classifier.load(bundle)
    assert Path(mixed.file).name == fast.file
    out = mixed.answer(x)
    under = margins(fast_logits) < gate
    assert out.rechecked.tolist() == under.tolist() and 0 < under.sum() < len(x)
    np.testing.assert_allclose(out.logits[under], exact_logits[under], atol=1e-5)
    np.testing.assert_allclose(out.logits[~under], fast_logits[~under], atol=1e-5)
    preds = mixed.predict_batch(x)
    assert [p.model for p in preds] == [exact.file if a else fast.file for a in under]
    assert [p.rechecked for p in preds] == under.tolist()


def test_predict_gathers_the_rechecks_of_several_batches_and_answers_in_input_order(converted, tiny_data, tmp_path):
    files = list_images(tiny_data / "test")
    x = preprocess_batch(files, (71, 71))
    clf = Classifier.load(converted)
    m = Manifest.read(converted)
    fast, exact = m.entry(Path(clf.file).name), m.entry(Path(clf.exact_file).name)
    fast_logits = Classifier.load(converted, fast.format, fast.precision).infer(x)
    exact_logits = Classifier.load(converted, exact.format, exact.precision).infer(x)
    gate = float(np.median(margins(fast_logits)))
    bundle = edited(converted, tmp_path, lambda d: [c.__setitem__("margin", gate) for c in d["cascades"]])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    inputs = [*files[:5], bad, *files[5:]]
    res = run_module("runtime.predict", *inputs, "--model", bundle, "--json", "--batch-size", "2")
    assert res.returncode == 1, res.stderr  # the bad input failed, every other was answered
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [d["input"] for d in lines] == [str(p) for p in inputs]
    assert "error" in lines[5] and "not an image" in lines[5]["error"]
    answered = lines[:5] + lines[6:]
    under = margins(fast_logits) < gate
    assert 0 < under.sum() < len(x)
    assert [d["model"] for d in answered] == [exact.file if a else fast.file for a in under]
    want = np.where(under[:, None], exact_logits, fast_logits)
    np.testing.assert_allclose([d["logits"] for d in answered], want, atol=1e-4)


def test_predict_cli_runs_the_cascade_and_int8_or_fp32_when_asked(converted, tiny_data, tmp_path):
    bundle = edited(converted, tmp_path, lambda d: [c.__setitem__("margin", 1000.0) for c in d["cascades"]])
    res = run_module("runtime.predict", tiny_data / "test" / "red", "--model", bundle, "--json")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    exact = Manifest.read(bundle).cascades[0].exact
    assert {d["model"] for d in lines} == {exact} and all(d["rechecked"] for d in lines)
    assert "chosen: cascade:" in res.stderr
    for precision in ("int8", "fp32"):
        res = run_module("runtime.predict", tiny_data / "test" / "red", "--model", bundle, "--json",
                         "--precision", precision)
        lines = [json.loads(line) for line in res.stdout.splitlines()]
        assert res.returncode == 0 and {d["model"].split(".")[1] for d in lines} == {precision}
        assert not any(d["rechecked"] for d in lines) and "cascade" not in res.stderr


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.__setitem__("margin", -0.5), "gate -0.5 is not a margin"),
    (lambda c: c.__setitem__("margin", float("nan")), "margin: expected"),
    (lambda c: c.pop("margin"), "margin: expected"),
    (lambda c: c.__setitem__("margin", 1e9), "is not a margin"),
    (lambda c: c.__setitem__("exact", "model.fp64.onnx"), "model.fp64.onnx is not in the bundle"),
    (lambda c: c.__setitem__("fast", "../model.int8.onnx"), "not a file name inside the bundle"),
    (lambda c: c.__setitem__("exact", c["fast"]), "are both"),
    (lambda c: c.__setitem__("recheck_rate", 2), "not in"),
    (lambda c: c.__setitem__("parity", []), "parity: expected dict"),
])
def test_malformed_cascades_are_one_error_line(converted, tmp_path, edit, match):
    bundle = edited(converted, tmp_path, lambda d: edit(d["cascades"][0]))
    with pytest.raises(ManifestError, match=match):
        Manifest.read(bundle)
    res = run_module("runtime.predict", "x.jpg", "--model", bundle)
    assert res.returncode == 2 and res.stderr.strip().startswith("error: ") and len(res.stderr.splitlines()) == 1


def test_a_cascade_over_a_file_that_failed_parity_is_refused(converted, tmp_path):
    def fail(d):
        fast = d["cascades"][0]["fast"]
        next(a for a in d["artifacts"] if a["file"] == fast)["parity"]["passed"] = False
    with pytest.raises(ManifestError, match="cascades\\[0\\].fast: model.int8.* failed parity"):
        Manifest.read(edited(converted, tmp_path, fail))


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "1001", "x"])
def test_cascade_margin_out_of_range_is_refused(converted, value):
    res = run_module("convert", converted, "--cascade-margin", value)
    assert res.returncode == 2 and "error: argument --cascade-margin" in res.stderr


def test_too_few_parity_images_is_refused_before_any_export(tiny_bundle, tiny_data, tmp_path):
    bundle = clone(tiny_bundle, tmp_path / "b")
    before = sorted(p.name for p in bundle.iterdir())
    res = run_module("convert", bundle, "--precisions", "fp32", "--parity", tiny_data / "validation",
                     "--parity-images", "50")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: 50 parity images ({tiny_data / 'validation'}) cannot show fp32's 98% top-1 agreement (even all 50 "
        f"agreeing gives a 95% lower bound of {wilson(50, 50)[0]:.1%}): give at least 189 (--parity DIR, "
        "--parity-images N)")
    assert sorted(p.name for p in bundle.iterdir()) == before


def test_manifest_cascades_round_trip(converted, tmp_path):
    m = Manifest.read(converted)
    m.write(tmp_path)
    assert Manifest.read(tmp_path) == m and json.loads((tmp_path / FILE).read_text())["cascades"]


def test_the_cascade_benchmark_recomputes_independently(converted, tiny_data, tmp_path):
    res = run_module("benchmarks.cascade", converted, "--images", tiny_data / "test", "--out", tmp_path, "--e2e")
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads((tmp_path / "tiny" / "report.json").read_text())
    x = preprocess_batch(list_images(tiny_data / "test"), (71, 71))
    m = Manifest.read(converted)
    exact = Classifier.load(converted, data["fp32_file"].split(".")[-1], "fp32").infer(x)
    for row in data["cascades"]:
        c = next(c for c in m.cascades if row["name"] == f"cascade {c.name}")
        fast = Classifier.load(converted, m.entry(c.fast).format, "int8").infer(x)
        second = Classifier.load(converted, m.entry(c.exact).format, "fp32").infer(x)
        out, again = merge(fast, second, c.margin)
        assert row["recheck_rate"] == pytest.approx(again.mean())
        assert row["agreement_fp32"] == pytest.approx(np.mean(out.argmax(1) == exact.argmax(1)))
        assert row["timing"]["mean_ms"] > 0 and row["gate"] == c.margin
    assert sum(row["default"] for row in data["cascades"]) == 1
    assert any(g["goal"].startswith("default cascade") for g in data["goals"])
    for row in data["plain"]:
        alone = Classifier.load(converted, row["file"].split(".")[-1], "int8").infer(x)
        assert row["agreement_fp32"] == pytest.approx(np.mean(alone.argmax(1) == exact.argmax(1)))
    assert {r["file"] for r in data["plain"]} == {a.file for a in m.verified() if a.precision == "int8"}
    e = data["e2e"]
    assert set(e["peak_rss_mb"]) == set(e["seconds"]) == {"default", "fp32 onnx", e["plain"]}
    assert all(50 < mb < 2000 for mb in e["peak_rss_mb"].values())  # a Python process with a model, in MB
    assert any(g["goal"].startswith("best plain int8 file") for g in data["goals"])
    assert any("peak RSS" in g["goal"] for g in data["goals"])
    assert "## Goals" in (tmp_path / "tiny" / "report.md").read_text()


def test_cascades_only_retimes_and_refits_by_hand_without_exporting(converted, tiny_data, tmp_path):
    from runtime.choice import this_machine

    bundle = edited(converted, tmp_path, lambda d: [a.update(measured_on="another CPU") for a in d["artifacts"]])
    files = {p.name: p.stat().st_mtime_ns for p in bundle.glob("model.*")}
    res = run_module("convert", bundle, "--cascades-only", "--cascade-margin", "0.5", "--parity",
                     tiny_data / "validation")
    assert res.returncode == 0, res.stderr[-2000:]
    m = Manifest.read(bundle)
    assert {c.fast for c in m.cascades} == {"model.int8.onnx", "model.int8.tflite"}
    assert all(c.set_by == "hand" and c.margin == 0.5 and c.widened_by == 0 for c in m.cascades)
    assert all(h.margin == 0.5 for c in m.cascades for h in c.halves)
    assert {p.name: p.stat().st_mtime_ns for p in bundle.glob("model.*")} == files
    assert all(a.measured_on == this_machine() and a.latency_ms > 0 for a in m.verified())
    assert "| model.int8.onnx > " in res.stdout and "0/0 artifacts published" in res.stdout
