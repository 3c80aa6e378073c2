"""int8: the per-layer error report, the methods table and benchmark, float logits, exact equalization."""

import json

import numpy as np
import onnx
import pytest

from runtime.bundle import Manifest

from .conftest import clone, run_module


def test_top2_margin_is_the_gap_between_the_two_best_logits():
    from benchmarks.int8_methods import top2_margin

    assert top2_margin(np.array([[1.0, 3.0, 2.5], [0.0, 0.0, -1.0]])).tolist() == [0.5, 0.0]


def test_sqnr_is_signal_power_over_noise_power():
    from convert.int8.layer_report import sqnr_db

    x = np.ones(1000)
    assert sqnr_db(x, x + 0.1) == pytest.approx(20.0)  # power 1 over noise 0.01
    assert sqnr_db(x, x) is None


def test_report_names_every_quantized_conv_of_both_formats(small_bundle, tiny_data, tmp_path):
    res = run_module("convert", small_bundle, "--int8-report", tmp_path, "--calibration", tiny_data / "train",
                     "--report-images", "2")
    assert res.returncode == 0, res.stderr
    out = tmp_path / small_bundle.name
    report = json.loads((out / "int8_layers.json").read_text())
    assert report["images"] == 2 and (out / "int8_layers.png").read_bytes()[:4] == b"\x89PNG"
    layers = report["layers"]
    onnx_rows = [r for r in layers if r["format"] == "onnx"]
    tflite_rows = [r for r in layers if r["format"] == "tflite"]
    convs = [r for r in onnx_rows if r["op"] in ("Conv", "Conv+Relu")]
    assert len(convs) == 10  # the small model's 10 convolutions (4 of them depthwise), each quantized
    assert all(r["weight_sqnr_db"] > 30 for r in convs)  # per-channel int8 weights: ~40 dB or better
    assert all(np.isfinite(r["output_sqnr_db"]) and np.isfinite(r["model_sqnr_db"]) for r in convs)
    assert sum(r["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D") for r in tflite_rows) == 10
    assert all(r["output_sqnr_db"] is None or r["output_sqnr_db"] > 0 for r in tflite_rows)
    assert "layers that add the most error" in (out / "int8_layers.md").read_text()
    assert "most error added by" in res.stdout


def test_report_without_calibration_is_one_line(tiny_bundle, tmp_path):
    res = run_module("convert", tiny_bundle, "--int8-report", tmp_path)
    assert res.returncode != 0 and res.stderr.strip().splitlines() == [
        "error: --int8-report needs --calibration DIR (real images); got None"]
    assert not any(tmp_path.iterdir())


def test_default_onnx_int8_gives_float_logits_and_records_its_method(converted, tiny_data):
    from convert.int8.methods import DEFAULT
    from runtime.formats import FORMATS
    from runtime.images import load_images

    model = onnx.load(str(converted / "model.int8.onnx"))
    producer = {o: n for n in model.graph.node for o in n.output}
    assert producer[model.graph.output[0].name].op_type != "DequantizeLinear"
    m = Manifest.read(converted)
    entry = m.entry("model.int8.onnx")
    assert entry.notes["quantization"]["method"] == DEFAULT["onnx"]
    meta = json.loads({p.key: p.value for p in model.metadata_props}["edge_classifier"])
    assert meta["quantization"]["method"] == DEFAULT["onnx"]
    # Xception's 728-channel tensors widened to 736, so that every depthwise Conv runs on the fast kernel
    assert entry.notes["quantization"]["channel_padding"]["channels"] == {"728": 736}
    groups = [a.i for n in model.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"]
    depthwise = [g for g in groups if g > 1]
    assert len(depthwise) == 34 and all(g % 16 == 0 for g in depthwise) and 736 in depthwise
    images = load_images(tiny_data / "test", m.spec(), m.classes, 18)
    out = FORMATS["onnx"].load(converted / "model.int8.onnx", None, "cpu").infer(images.batch)
    assert all(len(set(row)) == len(row) for row in out.tolist())  # no two classes share a logit


def test_default_tflite_int8_computes_its_logits_in_float(converted):
    from ai_edge_litert.interpreter import Interpreter

    from convert.int8.methods import DEFAULT

    assert Manifest.read(converted).entry("model.int8.tflite").notes["quantization"]["method"] == DEFAULT["tflite"]
    it = Interpreter(model_path=str(converted / "model.int8.tflite"))
    output = it.get_output_details()[0]["index"]
    (last,) = [op for op in it._get_ops_details() if output in op["outputs"]]
    assert last["op_name"] == "FULLY_CONNECTED"  # not DEQUANTIZE of an int8 result
    assert it._get_tensor_details(last["inputs"][1], 0)["dtype"] == np.float32  # its weights too


def test_default_tflite_int8_runs_every_relu_in_float_between_int8_grids(converted):
    from ai_edge_litert.interpreter import Interpreter

    notes = Manifest.read(converted).entry("model.int8.tflite").notes["quantization"]
    it = Interpreter(model_path=str(converted / "model.int8.tflite"))
    ops = [op for op in it._get_ops_details() if op["op_name"] != "DELEGATE"]
    producer = {t: op["op_name"] for op in ops for t in op["outputs"]}
    relus = [op for op in ops if op["op_name"] == "RELU"]
    assert len(relus) == notes["relu_in_float"] > 0  # Xception's Relus after a residual Add
    assert all(it._get_tensor_details(op["inputs"][0], 0)["dtype"] == np.float32 for op in relus)
    assert all(producer[op["inputs"][0]] == "DEQUANTIZE" for op in relus)


def test_equalizing_depthwise_outputs_keeps_the_float_function(converted, tiny_data):
    import onnxruntime as ort

    from convert.int8.onnx_graph import depthwise_pairs, equalize
    from runtime.images import load_images

    m = Manifest.read(converted)
    batch = load_images(tiny_data / "train", m.spec(), m.classes, 16).batch
    model = onnx.load(str(converted / "model.fp32.onnx"))
    before = {i.name: onnx.numpy_helper.to_array(i).copy() for i in model.graph.initializer}
    assert len(depthwise_pairs(model)) == 34

    def run(mdl):
        s = ort.InferenceSession(mdl.SerializeToString(), providers=["CPUExecutionProvider"])
        return s.run(None, {mdl.graph.input[0].name: batch})[0]
    ref = run(model)
    eq = equalize(model, batch, 0.5)
    changed = [i.name for i in eq.graph.initializer
               if not np.array_equal(onnx.numpy_helper.to_array(i), before[i.name])]
    assert len(changed) >= 34
    assert np.abs(run(eq) - ref).max() <= 1e-5 * np.ptp(ref)


def test_methods_benchmark_measures_each_method_against_fp32_of_its_format(small_bundle, tiny_data, tmp_path):
    res = run_module("benchmarks.int8_methods", small_bundle, "--calibration", tiny_data / "train",
                     "--parity", tiny_data / "test", "--parity-images", "50", "--runs", "3",
                     "--methods", "minmax,minmax-float-logits,weights-only,gptq-weights-only,full-int8",
                     "--out", tmp_path)
    assert res.returncode == 0, res.stderr
    table = json.loads((tmp_path / "small" / "methods.json").read_text())
    rows = {(r["format"], r["method"]): r for r in table["rows"]}
    assert table["images"] == 18 and table["calibration_images"] == 102  # what the folders had, not what was asked
    assert set(rows) == {("onnx", "fp32"), ("tflite", "fp32"), ("onnx", "minmax"), ("onnx", "minmax-float-logits"),
                         ("onnx", "weights-only"), ("onnx", "gptq-weights-only"), ("tflite", "full-int8")}
    assert rows[("onnx", "fp32")]["top1_agreement"] == 1.0 and rows[("tflite", "fp32")]["top1_agreement"] == 1.0
    for r in rows.values():  # each file timed alternately with its format's fp32 file
        assert r["p50_ms"] > 0 and r["fp32_p50_ms"] > 0 and r["mb"] > 0
        assert r["speedup_vs_fp32"] == pytest.approx(r["fp32_p50_ms"] / r["p50_ms"])
    assert rows[("onnx", "weights-only")]["diagnostic"] and not rows[("onnx", "minmax")]["diagnostic"]
    assert rows[("onnx", "gptq-weights-only")]["diagnostic"]  # float weights on the int8 grid: fp32's size
    assert rows[("onnx", "gptq-weights-only")]["mb"] == pytest.approx(rows[("onnx", "fp32")]["mb"], rel=0.01)
    assert rows[("onnx", "minmax-float-logits")]["tie_rows"] == 0
    assert 0 <= 100 * rows[("onnx", "fp32")]["logit_rms"] < rows[("onnx", "minmax")]["logit_rms"]
    for r in rows.values():  # Keras's top-2 gap of each of the 18 images whose top class the file changed
        assert len(r["flip_margins"]) == round((1 - r["top1_agreement"]) * 18)
        assert r["flip_margins"] == sorted(r["flip_margins"]) and all(g >= 0 for g in r["flip_margins"])
    ties = list(table["near_ties"].values())
    assert list(table["near_ties"]) == ["0.1", "0.2", "0.5"] and ties == sorted(ties) and ties[-1] <= 18
    assert rows[("onnx", "minmax")]["mb"] < rows[("onnx", "fp32")]["mb"] / 3
    assert "| onnx | minmax |" in (tmp_path / "small" / "methods.md").read_text()


@pytest.mark.parametrize("selection, message", [
    (["--formats", "onnx", "--methods", "float-head"], "error: no int8 method 'float-head' for onnx; known: minmax,"),
    (["--formats", "nope"], "error: no int8 methods for format 'nope'; known: onnx, tflite")])
def test_methods_benchmark_refuses_an_unknown_method_or_format_in_one_line(tiny_bundle, tiny_data, tmp_path,
                                                                          selection, message):
    res = run_module("benchmarks.int8_methods", tiny_bundle, "--calibration", tiny_data / "train",
                     "--parity", tiny_data / "test", *selection, "--out", tmp_path)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith(message), res.stderr
    assert not any(tmp_path.iterdir())


def test_gptq_of_all_depthwise_channels_at_once_equals_one_channel_at_a_time():
    from convert.int8.onnx_graph import gptq_channels, gptq_rows

    rng = np.random.default_rng(1)
    w = rng.normal(size=(50, 9))
    x = rng.normal(size=(50, 9, 300)) * rng.uniform(0.1, 3, (50, 9, 1))
    h = np.einsum("ckp,clp->ckl", x, x)
    h[3] = 0  # a channel that never saw a non-zero input
    one_by_one = np.concatenate([gptq_rows(w[c:c + 1], h[c]) for c in range(len(w))])
    assert np.array_equal(gptq_channels(w, h), one_by_one)
    assert not np.array_equal(one_by_one, np.round(w / (np.abs(w).max(1, keepdims=True) / 127)) *
                              (np.abs(w).max(1, keepdims=True) / 127))


def test_gptq_rounds_onto_the_quantizers_grid_with_less_output_error_than_rounding():
    from convert.int8.onnx_graph import gptq_rows

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4000)) * rng.uniform(0.1, 3, (64, 1))
    x[1::2] += 0.8 * x[::2]  # correlated inputs, as after a convolution
    w = rng.normal(size=(32, 64))
    q = gptq_rows(w, x @ x.T)
    scale = np.abs(w).max(1, keepdims=True) / 127
    steps = q / scale
    assert np.allclose(steps, np.round(steps), atol=1e-6) and np.allclose(np.abs(steps).max(1), 127)
    rtn = np.round(w / scale) * scale
    assert np.linalg.norm((q - w) @ x) < 0.95 * np.linalg.norm((rtn - w) @ x)  # 0.91 with seed 0


def test_relu_equalization_evens_channel_ranges_and_keeps_the_float_function(converted, tiny_data):
    import onnxruntime as ort

    from convert.int8.onnx_graph import equalize_relu, relu_chains, tensor_means
    from runtime.images import load_images

    m = Manifest.read(converted)
    batch = load_images(tiny_data / "train", m.spec(), m.classes, 16).batch
    model = onnx.load(str(converted / "model.fp32.onnx"))
    chains = relu_chains(model)
    assert len(chains) == 21  # Xception: the second/third Relu of each separable block (entry, middle, exit)
    relus = [r.output[0] for _, r, _ in chains]

    def spread(mdl):
        ranges = tensor_means(mdl, relus, batch, lambda a: np.abs(a).max(axis=(0, 2, 3)))
        return np.median([np.median(r[r > 0]) / r.max() for r in ranges])

    def run(mdl):
        s = ort.InferenceSession(mdl.SerializeToString(), providers=["CPUExecutionProvider"])
        return s.run(None, {mdl.graph.input[0].name: batch})[0]
    ref, before = run(model), spread(model)
    eq = equalize_relu(model, batch)
    assert spread(eq) > 0.99 > before
    assert np.abs(run(eq) - ref).max() <= 1e-5 * np.ptp(ref)


@pytest.mark.parametrize("reduce_range", [False, True])
def test_gptq_weights_are_exactly_the_ones_onnxruntime_stores(small_bundle, tiny_data, reduce_range):
    from onnxruntime.quantization.qdq_loss_debug import create_weight_matching

    from convert import to_onnx
    from convert.calibration import calibration_set
    from convert.int8.methods import method
    from convert.source import open_source

    source = open_source(small_bundle)
    source.reduce_range = reduce_range
    try:
        m = source.manifest
        images = calibration_set(tiny_data / "train", m.spec(), m.classes, 16)
        dest = source.scratch / "gptq.int8.onnx"
        to_onnx.int8(source, images, dest, method("onnx", "gptq"))
        matched = create_weight_matching(str(source.scratch / "prepared.int8.onnx"), str(dest))
    finally:
        source.close()
    convs = [w for w in matched.values() if w["float"].ndim == 4]
    assert len(convs) == 10  # the small model's convolutions, 4 of them depthwise, each quantized
    for w in convs:  # the quantizer found each row already on its grid: nothing rounded twice
        kept = tuple(slice(0, n) for n in w["float"].shape)  # the rest: zero channels (convert/int8/channel_pad.py)
        assert np.allclose(w["dequantized"][kept], w["float"], rtol=1e-5, atol=1e-7)
        assert np.count_nonzero(w["dequantized"]) == np.count_nonzero(w["dequantized"][kept])
    assert any(w["dequantized"].shape != w["float"].shape for w in convs)  # the 8-channel convolutions


def _relu_graph():
    """x -> Relu -> y -> Neg -> z: a float graph small enough to check by hand."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["y"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_fake_quant_rounds_each_tensor_of_the_grid_as_uint8_does():
    from convert.int8.sequential import compute, fake_quant

    scale, zero = np.array(0.5, np.float32), np.array(0, np.uint8)
    fq = fake_quant(_relu_graph(), {"y": (scale, zero)})
    x = np.array([[-1.0, 0.3, 0.8, 200.0]], np.float32)
    z = compute(fq, "z", {"x": x})
    assert np.array_equal(z, -np.array([[0.0, 0.5, 1.0, 127.5]], np.float32))  # round half to even, clip at 255


def test_refit_is_the_identity_without_input_noise_and_reduces_output_error_with_it():
    from convert.int8.sequential import refit

    rng = np.random.default_rng(0)
    w, xf = rng.normal(size=(6, 8)), rng.normal(size=(8, 2000))
    assert np.allclose(refit(w, xf @ xf.T, xf @ xf.T, 0.01), w)
    xq = xf + rng.normal(scale=0.3, size=xf.shape) + 0.2  # noisy, biased inputs: the quantized network's
    w, xf, xq = np.c_[w, np.zeros(6)], np.r_[xf, np.ones((1, 2000))], np.r_[xq, np.ones((1, 2000))]  # a bias
    fit = refit(w, xq @ xq.T, xf @ xq.T, 0.01)
    assert np.linalg.norm(w @ xf - fit @ xq) < 0.8 * np.linalg.norm(w @ xf - w @ xq)


def test_worst_tensors_are_those_their_grid_rounds_worst():
    from convert.int8.mixed import worst_tensors

    coarse, fine, zero = np.array(1.0, np.float32), np.array(0.01, np.float32), np.array(0, np.uint8)
    x = np.random.default_rng(0).uniform(0, 2, (8, 4)).astype(np.float32)
    assert worst_tensors(_relu_graph(), {"y": (coarse, zero), "x": (fine, zero)}, x, 1) == ["y"]


def test_activations_left_in_float_by_group_keep_the_relus_and_only_that_groups_rounding(small_bundle, tiny_data):
    from dataclasses import replace

    from convert import to_onnx
    from convert.calibration import calibration_set
    from convert.int8.methods import method
    from convert.int8.mixed import KINDS, tensor_kind
    from convert.source import open_source
    from runtime.formats import FORMATS
    from runtime.images import load_images

    gptq = method("onnx", "gptq")
    hows = {"weights": method("onnx", "gptq-weights-only"), "int8": gptq,
            "all": replace(gptq, options={**gptq.options, "float_activations": KINDS}),
            "depthwise": method("onnx", "gptq-float-depthwise")}
    source = open_source(small_bundle)
    source.reduce_range = False  # weights-only rounds on the 8-bit grid; a CPU without VNNI would pick 7 bits
    try:
        m = source.manifest
        calibration = calibration_set(tiny_data / "train", m.spec(), m.classes, 16)
        batch = load_images(tiny_data / "test", m.spec(), m.classes, 18).batch
        out, graphs = {}, {}
        for name, how in hows.items():
            to_onnx.int8(source, calibration, dest := source.scratch / f"{name}.onnx", how)
            out[name], graphs[name] = FORMATS["onnx"].load(dest, None, "cpu").infer(batch), onnx.load(str(dest))
    finally:
        source.close()
    scale = np.ptp(out["weights"])
    gap = np.abs(out["all"] - out["weights"]).max() / scale  # every activation in float: the weights' error alone,
    assert gap < 1e-3 < np.abs(out["int8"] - out["weights"]).max() / scale  # Relus the quantizer folded put back

    def rounded(model):
        producer = {o: n for n in model.graph.node for o in n.output}
        return [producer[n.input[0]] for n in model.graph.node if n.op_type == "QuantizeLinear"]

    assert rounded(graphs["all"]) == []
    depthwise = [n for n in rounded(graphs["int8"]) if tensor_kind(n) == "depthwise"]
    assert len(depthwise) == 4  # the small model's depthwise convolutions, each output rounded in the int8 file
    assert len(rounded(graphs["depthwise"])) == len(rounded(graphs["int8"])) - 4
    assert "depthwise" not in {tensor_kind(n) for n in rounded(graphs["depthwise"])}


def test_onnx_weights_carried_into_keras_make_it_compute_the_changed_graph(converted, tiny_data):
    import onnxruntime as ort

    from convert.int8.onnx_graph import equalize_relu, round_weights
    from convert.keras_weights import carry
    from convert.source import open_source
    from runtime.images import load_images

    source = open_source(converted)
    try:
        batch = load_images(tiny_data / "test", source.manifest.spec(), source.manifest.classes, 8).batch
        original = onnx.load(str(converted / "model.fp32.onnx"))
        changed = round_weights(equalize_relu(onnx.load(str(converted / "model.fp32.onnx")), batch))
        session = ort.InferenceSession(changed.SerializeToString(), providers=["CPUExecutionProvider"])
        want = session.run(None, {changed.graph.input[0].name: batch})[0]
        before = source.predict(batch)
        assert carry(source.model, original, changed) == 74
        after = source.predict(batch)
    finally:
        source.close()
    err, err_before = np.abs(after - want).max(), np.abs(before - want).max()
    assert err <= 1e-3 * np.ptp(want) and err < err_before / 5, (err, err_before)


def test_onnx_graph_in_tensorflow_computes_the_rounded_graph_and_rounds_its_grid(converted, tiny_data):
    import onnxruntime as ort

    from convert.int8.mixed import activation_grid
    from convert.int8.onnx_graph import round_weights
    from convert.int8.onnx_tf import OnnxGraph
    from convert.int8.sequential import fake_quant
    from runtime.images import load_images

    m = Manifest.read(converted)
    batch = load_images(tiny_data / "test", m.spec(), m.classes, 8).batch
    model = round_weights(onnx.load(str(converted / "model.fp32.onnx")))
    outputs = {o for n in model.graph.node for o in n.output}
    grid = dict([(t, g) for t, g in activation_grid(onnx.load(str(converted / "model.int8.onnx"))).items()
                 if t in outputs][:4])  # more: one value on a half step, rounded apart, spreads through the rest
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep each Q/DQ where it is
    runs = []
    for g in ({}, grid):
        session = ort.InferenceSession(fake_quant(model, g).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        runs.append((session.run(None, {model.graph.input[0].name: batch})[0], OnnxGraph(model, g)(batch).numpy()))
    (float_want, float_got), (want, got) = runs
    assert np.abs(float_got - float_want).max() < 1e-5 * np.ptp(float_want)
    rounding = np.abs(want - float_want).max()
    assert rounding > 1e-3 * np.ptp(want) and np.abs(got - want).max() < 0.05 * rounding


def test_tflite_onnx_grid_method_keeps_every_range_of_the_onnx_grid(converted, tiny_data, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from convert import to_onnx
    from convert.calibration import calibration_set
    from convert.int8.methods import method
    from convert.int8.mixed import activation_grid
    from convert.source import open_source

    notes = {f: Manifest.read(converted).entry(f).notes["quantization"] for f in ("model.int8.onnx",
                                                                                    "model.int8.tflite")}
    assert notes["model.int8.tflite"]["method"] == "onnx-grid"
    assert notes["model.int8.tflite"]["onnx_grid"] == notes["model.int8.onnx"]["method"] == "gptq"
    source = open_source(clone(converted, tmp_path / "tiny"))
    try:  # the gptq graph's grid on 8-bit weights, as convert made it for TFLite
        m = source.manifest
        grid = to_onnx.rounded_graph(source, calibration_set(tiny_data / "train", m.spec(), m.classes, 200),
                                     method("onnx", "gptq"))[1]
    finally:
        source.close()
    if not notes["model.int8.onnx"]["reduce_range"]:  # with VNNI: the ONNX file's own grid, the same one
        own = activation_grid(onnx.load(str(converted / "model.int8.onnx")))
        assert own.keys() == grid.keys() and all(abs(float(own[t][0]) - float(s)) <= 1e-6 * float(s)
                                                 for t, (s, _) in grid.items())
    tensors = Interpreter(model_path=str(converted / "model.int8.tflite")).get_tensor_details()
    params = [t["quantization_parameters"] for t in tensors if t["dtype"] == np.int8]
    kept = [(float(q["scales"][0]), int(q["zero_points"][0])) for q in params if len(q["scales"]) == 1]
    missing = [(t, float(s), int(z)) for t, (s, z) in grid.items()  # uint8 zero point = int8 one + 128
               if not any(abs(k - s) <= 1e-6 * s and j == int(z) - 128 for k, j in kept)]
    assert len(grid) > 50 and not missing, (missing, sorted(kept))


def test_unsupported_names_each_operator_without_a_tensorflow_form():
    from convert.int8.onnx_tf import unsupported

    assert unsupported(_relu_graph()) == ["Neg"]  # Relu has one, Neg not


def test_tflite_default_int8_of_a_model_outside_the_onnx_grid_falls_back_to_float_head(tiny_data, tmp_path):
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from convert import to_tflite
    from convert.calibration import calibration_set
    from convert.int8.methods import method
    from convert.source import make_bundle, open_source

    inputs = keras.Input((71, 71, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu6")(inputs)  # ReLU6 exports as Clip
    keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))).save(tmp_path / "r6.keras")
    source = open_source(make_bundle(tmp_path / "r6.keras", tmp_path / "r6", ["blue", "green", "red"]))
    try:
        m = source.manifest
        images = calibration_set(tiny_data / "train", m.spec(), m.classes, 100)
        notes = to_tflite.int8(source, images, tmp_path / "r6.tflite", method("tflite"))["quantization"]
    finally:
        source.close()
    assert notes["method"] == "float-head" and notes["fallback"] == "onnx-grid: no TensorFlow form for Clip"
    it = Interpreter(model_path=str(tmp_path / "r6.tflite"))
    assert any(t["dtype"] == np.int8 for t in it.get_tensor_details())  # still an int8 file
