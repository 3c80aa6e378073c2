"""Quantization-aware fine-tuning on the CPU, in TensorFlow (oneDNN): the gptq method's graph run as TensorFlow ops
(``convert.int8.onnx_tf``) with its weights and activation scales trainable, rounded on the grids the exported files
use (per-channel int8 weights, the calibration's uint8 activation grid), fitted to the float model's logits (no
labels) for a time budget. The weights with the lowest validation logit error go to BUNDLE/qat/, where the qat int8
methods of both formats read them."""

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from convert.errors import ConvertError
from convert.int8.onnx_graph import _attrs
from convert.int8.onnx_tf import OnnxGraph
from convert.int8.qat_graph import shared_scales, write_weights

MAX_MINUTES = 24 * 60
CHECKS = 2  # validations spread over the budget, besides the one before training and the one at its end
MAX_TRAIN_IMAGES = 6000  # images held in memory as float32 at most (6.4 GB at 299 px)


def check_minutes(minutes: float):
    """ConvertError unless ``minutes`` is a time budget: more than 0 and at most MAX_MINUTES."""
    if not (math.isfinite(minutes) and 0 < minutes <= MAX_MINUTES):
        raise ConvertError(f"--qat-minutes {minutes:g}: give minutes of fine-tuning, more than 0 and at most "
                           f"{MAX_MINUTES}")


@dataclass
class Check:
    """The quantized graph against the float model on the validation images after ``step`` steps."""

    step: int
    seconds: float
    agreement: float
    rms: float


@dataclass
class FineTuning:
    """What a fine-tuning did: its budget and settings, what it spent, its validation checks, the one kept."""

    minutes: float
    lr: float
    lr_scales: float
    batch: int
    train_images: int
    validation_images: int
    steps: int = 0
    seconds: float = 0.0
    prepare_seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    kept: Check | None = None
    engine: str = "tensorflow-cpu"

    @property
    def before(self) -> Check:
        """The check of the graph as calibrated, before any step."""
        return self.checks[0]

    def worse(self) -> bool:
        """True when the kept weights agree with the float model on fewer validation images than before."""
        return self.kept.agreement < self.before.agreement

    def record(self) -> dict:
        """The manifest's and each file's note of the training (``training``)."""
        d = asdict(self)
        d["checks"] = [asdict(c) for c in self.checks]
        return d

    def summary(self) -> str:
        """One line: budget, spent, validation agreement and logit error before and after."""
        b, k = self.before, self.kept
        return (f"fine-tuned {self.steps} steps of {self.batch} in {self.seconds / 60:.1f} of {self.minutes:g} min "
                f"(and {self.prepare_seconds / 60:.1f} min of preparation; {self.train_images} training images): "
                f"validation agreement {b.agreement:.1%} -> {k.agreement:.1%}"
                f", logit rms {b.rms:.3f} -> {k.rms:.3f} of {self.validation_images} images (step {k.step} kept)")


class Student(OnnxGraph):
    """The graph with trainable weights (convolutions, Gemm/MatMul) and trainable activation scales (log scale
    per tensor; MaxPool and Squeeze outputs keep their input's, as onnxruntime does)."""

    def __init__(self, model, grid: dict):
        import tensorflow as tf
        from onnx import numpy_helper

        from convert.int8.qat_pack import graph_json

        super().__init__(model, grid)
        self.initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        trainable = {t for n in self.nodes if n.op_type in ("Conv", "Gemm", "MatMul") for t in n.input[1:]}
        self.weights = {t: tf.Variable(v, name=f"w{i}") for i, (t, v) in enumerate(self.consts.items())
                        if t in trainable}
        self.consts.update(self.weights)
        self.same = shared_scales(graph_json(model), grid)
        self.log_scales = {t: tf.Variable(math.log(s), dtype=tf.float32, name=f"s{i}")
                           for i, (t, (s, _)) in enumerate(self.grid.items()) if t not in self.same}

    def range(self, t: str) -> tuple:
        import tensorflow as tf

        s = tf.exp(self.log_scales[self.same.get(t, t)])
        z = self.grid[t][1]
        return -z * s, (255 - z) * s

    def scales(self) -> dict:
        """tensor -> (scale, zero point) as trained now."""
        return {t: [float(np.exp(self.log_scales[self.same.get(t, t)].numpy())), int(z)]
                for t, (_, z) in self.grid.items()}

    def onnx_weights(self) -> dict:
        """Every initializer of the graph, the trainable ones as trained now (convolution weights back in ONNX's
        OIHW layout)."""
        depthwise = {n.input[1] for n in self.nodes if n.op_type == "Conv" and _attrs(n).get("group", 1) > 1}
        convs = {n.input[1] for n in self.nodes if n.op_type == "Conv"}
        out = dict(self.initializers)
        for t, v in self.weights.items():
            w = v.numpy()
            out[t] = w.transpose(2, 3, 0, 1) if t in depthwise else w.transpose(3, 2, 0, 1) if t in convs else w
        return out


class Adam:
    """Adam on a list of variables, its rate set per step (the cosine over the time budget)."""

    def __init__(self, variables, b1=0.9, b2=0.999, eps=1e-8):
        import tensorflow as tf

        self.vars, self.b1, self.b2, self.eps = variables, b1, b2, eps
        self.m = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.t = tf.Variable(0.0)

    def apply(self, grads, rate):
        """One step of size ``rate`` (a scalar tensor)."""
        import tensorflow as tf

        self.t.assign_add(1.0)
        step = rate * tf.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        for var, g, m, v in zip(self.vars, grads, self.m, self.v, strict=True):
            m.assign(self.b1 * m + (1 - self.b1) * g)
            v.assign(self.b2 * v + (1 - self.b2) * g * g)
            var.assign_sub(step * m / (tf.sqrt(v) + self.eps))


def shuffled_batches(rng, n: int, batch: int):
    """Index batches of ``batch`` over ``n`` images, each pass in a new order, without end."""
    while True:
        yield from np.array_split(rng.permutation(n), n // batch)


def logits_in_batches(fn, x: np.ndarray, batch=32) -> np.ndarray:
    """``fn`` over ``x`` in batches, as one array."""
    return np.concatenate([fn(x[i:i + batch]).numpy() for i in range(0, len(x), batch)])


def fine_tune(model, grid: dict, teacher_model, train: np.ndarray, validation: np.ndarray, minutes: float,
              lr=1e-5, lr_scales=1e-3, batch=16, seed=0, report: Callable[[str], None] = print
              ) -> tuple[Student, FineTuning]:
    """Fine-tune ``model`` (the gptq ONNX graph, ``grid`` its activation grid) to the logits of ``teacher_model``
    (the float ONNX graph) on ``train`` images and their mirror images for ``minutes`` of wall time, validations
    included; the student holds the weights and scales of the check with the lowest validation logit rms."""
    import tensorflow as tf

    check_minutes(minutes)
    if len(train) < batch or len(validation) == 0:
        raise ConvertError(f"fine-tuning needs at least {batch} training images and 1 validation image; "
                           f"got {len(train)} and {len(validation)}")
    student, float_graph = Student(model, grid), OnnxGraph(teacher_model, {}, round_weights=False)
    spec = [tf.TensorSpec([None, *train.shape[1:]], tf.float32)]
    quantized = tf.function(student.__call__, input_signature=spec)
    reference = tf.function(float_graph.__call__, input_signature=spec)
    weights, scales = list(student.weights.values()), list(student.log_scales.values())
    opt_w, opt_s = Adam(weights), Adam(scales)

    @tf.function(input_signature=[tf.TensorSpec([None, *train.shape[1:]], tf.float32), tf.TensorSpec([], tf.float32)])
    def step(x, progress):
        target = reference(x)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((student(x) - target) ** 2)
        grads = tape.gradient(loss, weights + scales)
        decay = 0.5 * (1 + tf.cos(math.pi * tf.minimum(progress, 1.0)))
        opt_w.apply(grads[:len(weights)], lr * decay)
        if lr_scales > 0:
            opt_s.apply(grads[len(weights):], lr_scales * decay)
        return loss

    truth = logits_in_batches(reference, validation)
    run = FineTuning(minutes, lr, lr_scales, batch, len(train), len(validation))
    t0 = time.perf_counter()  # the budget counts from here: steps and validations
    budget = 60 * minutes

    def check(steps: int) -> float:
        """Validate, keep the weights if their logit rms is the lowest yet; return the seconds it took."""
        started = time.perf_counter()
        out = logits_in_batches(quantized, validation)
        c = Check(steps, time.perf_counter() - t0, float(np.mean(out.argmax(1) == truth.argmax(1))),
                  float(np.sqrt(np.mean((out - truth) ** 2))))
        run.checks.append(c)
        if run.kept is None or c.rms < run.kept.rms:
            run.kept, kept_values[:] = c, [v.numpy() for v in weights + scales]
        report(f"step {steps}, {c.seconds / 60:.1f} min: validation agreement {c.agreement:.1%}, logit rms {c.rms:.4f}")
        return time.perf_counter() - started

    kept_values: list = []
    check_cost = check(0)
    rng, steps, step_cost, next_check = np.random.default_rng(seed), 0, 0.0, budget / (CHECKS + 1)
    for idx in shuffled_batches(rng, len(train), batch):
        elapsed = time.perf_counter() - t0
        if elapsed + step_cost + check_cost > budget:
            break
        flip = rng.random(len(idx)) < 0.5
        x = np.where(flip[:, None, None, None], train[idx][:, :, ::-1], train[idx])
        started = time.perf_counter()
        step(tf.constant(x), tf.constant(elapsed / budget, tf.float32))
        cost = time.perf_counter() - started
        step_cost = cost if steps <= 1 else 0.9 * step_cost + 0.1 * cost  # step 0 traces the graph
        steps += 1
        if time.perf_counter() - t0 >= next_check:
            check_cost = check(steps)
            next_check += budget / (CHECKS + 1)
    if not run.checks or run.checks[-1].step != steps:
        check(steps)
    run.steps, run.seconds = steps, time.perf_counter() - t0
    for var, value in zip(weights + scales, kept_values, strict=True):
        var.assign(value)
    return student, run


def save(out: Path, student: Student, run: FineTuning, source_sha256: str):
    """The kept weights, grid and training record in ``out`` (BUNDLE/qat/ or a folder beside it)."""
    convs = {n.input[1] for n in student.nodes if n.op_type == "Conv"}
    write_weights(out, student.onnx_weights(), convs, student.scales(),
                  {"source_sha256": source_sha256, "training": run.record()})


def fine_tune_bundle(source, calibration, train_dir: Path, validation, minutes: float,
                     report: Callable[[str], None] = print) -> FineTuning:
    """Fine-tune ``source``'s gptq graph on ``train_dir``'s images (validation: the ImageSet ``validation``, the
    conversion's parity images) for ``minutes``
    and publish the kept weights whole to BUNDLE/qat/; where they agree with the float model on fewer validation
    images than the graph as calibrated, nothing is written (the caller says so)."""
    import onnx

    from convert import to_onnx
    from convert.int8.methods import method
    from runtime.files import replacing_folder
    from runtime.images import load_images

    t0 = time.perf_counter()
    m = source.manifest
    model, grid = to_onnx.rounded_graph(source, calibration, method("onnx", "gptq"))
    teacher = onnx.load(str(to_onnx.prepared_file(source)))
    train = load_images(train_dir, m.spec(), m.classes, MAX_TRAIN_IMAGES).batch
    report(f"fine-tuning for {minutes:g} min on {len(train)} images of {train_dir} and their mirror images; "
           f"validation on {len(validation.files)} parity images")
    student, run = fine_tune(model, grid, teacher, train, validation.batch, minutes, report=report)
    run.prepare_seconds = time.perf_counter() - t0 - run.seconds  # GPTQ, calibration, images, tracing
    if not run.worse():
        try:
            with replacing_folder(source.bundle / "qat", "qat.json") as tmp:
                save(tmp, student, run, m.source.sha256)
        except FileExistsError as e:
            raise ConvertError(str(e)) from None
    return run
