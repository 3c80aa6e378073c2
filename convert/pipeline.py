"""The conversion loop: for each (format, precision) of the table, export, verify, then publish."""

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from convert import to_onnx, to_tflite
from convert.calibration import calibration_set, synthetic_set
from convert.cascade import cascades
from convert.errors import ConvertError, ExportError
from convert.int8.qat_tf import check_minutes
from convert.parity import check
from convert.source import SourceModel
from runtime.bundle import Artifact, artifact_path
from runtime.choice import this_machine
from runtime.cli import progress_options
from runtime.errors import RuntimeToolkitError, first_line
from runtime.files import replacing
from runtime.formats import FORMATS
from runtime.images import ImageSet, load_images
from runtime.parity import THRESHOLDS, Parity, compare, images_needed, wilson

EXPORTERS = {"tflite": to_tflite.export, "onnx": to_onnx.export}
LATENCY_RUNS = 10
NOISE_IMAGES = 200  # enough for fp32's agreement bound (189); noise shows the same function, not accuracy


@dataclass
class Export:
    """The outcome of one export: published with its parity, or failed with a reason."""

    format: str
    precision: str
    file: str
    seconds: float
    bytes: int = 0
    parity: Parity | None = None
    latency_ms: float | None = None
    notes: dict | None = None
    error: str | None = None
    logits: np.ndarray | None = None  # on the parity images, for fitting cascades

    def record(self, bundle: Path) -> Artifact | None:
        """The manifest's record of this export: published in ``bundle``, or refused by parity with its
        numbers kept; None when it failed before parity was measured."""
        if self.error is None:
            return Artifact.of(bundle, self.file, self.format, self.precision, self.parity, self.latency_ms,
                               this_machine(), self.notes)
        if self.parity is None:
            return None
        return Artifact.refused(self.file, self.format, self.precision, self.bytes, self.parity, self.latency_ms,
                                this_machine(), self.notes)


def batch1_latency_ms(runner, batch: np.ndarray) -> float:
    """Median milliseconds of one-image inference after one warm-up run."""
    runner.infer(batch[:1])
    times = []
    for x in batch[:LATENCY_RUNS]:
        t = time.perf_counter()
        runner.infer(x[None])
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def alternated_latency_ms(runners: dict, batch: np.ndarray, rounds=3 * LATENCY_RUNS) -> dict[str, float]:
    """Median batch-1 milliseconds of each runner, all of them called in turn on each image (so that a machine
    that slows down slows them alike)."""
    for r in runners.values():
        r.infer(batch[:1])
    times = {name: [] for name in runners}
    for i in range(rounds):
        x = batch[i % len(batch)][None]
        for name, r in runners.items():
            t = time.perf_counter()
            r.infer(x)
            times[name].append(time.perf_counter() - t)
    return {name: 1000 * float(np.median(t)) for name, t in times.items()}


def build(source: SourceModel, bundle: Path, fmt: str, precision: str, ref: np.ndarray, images: ImageSet,
          calibration: ImageSet | None, exporter) -> Export:
    """Export one artifact under a temporary name, check parity, then rename it into place."""
    art = Export(fmt, precision, FORMATS[fmt].file(precision), 0.0)
    t = time.perf_counter()
    try:
        with replacing(bundle / art.file) as tmp:
            try:
                art.notes = exporter(source, precision, calibration, tmp)
            except ConvertError:
                raise
            except Exception as e:  # exporters surface TensorFlow/tf2onnx/onnx errors of every type
                raise ExportError(f"{art.file}: export failed: {first_line(e)}") from e
            art.seconds, art.bytes = time.perf_counter() - t, tmp.stat().st_size
            try:
                runner = FORMATS[fmt].load(tmp, None, "cpu")
                art.logits = runner.infer_batches(images.batch)
            except RuntimeToolkitError as e:  # the exported file does not load or run: an export failure
                why = str(e).replace(tmp.name + ": ", "")
                raise ExportError(f"{art.file}: export failed: {why}") from None
            art.parity = compare(ref, art.logits, images.labels)
            art.latency_ms = batch1_latency_ms(runner, images.batch)
            check(art.parity, precision, art.file)
    except (ConvertError, RuntimeToolkitError) as e:
        art.error, art.seconds = str(e), art.seconds or time.perf_counter() - t
    return art


def enough_images(n: int, precisions, where: str):
    """ConvertError unless ``n`` parity images can show every precision's agreement threshold."""
    for precision in precisions:
        need = images_needed(THRESHOLDS[precision].min_top1_agreement)
        if n < need:
            low = wilson(n, n)[0]
            raise ConvertError(f"{n} parity images ({where}) cannot show {precision}'s "
                               f"{THRESHOLDS[precision].min_top1_agreement:.0%} top-1 agreement (even all {n} "
                               f"agreeing gives a 95% lower bound of {low:.1%}): give at least {need} "
                               "(--parity DIR, --parity-images N)")


def check_qat(minutes: float, precisions, parity_dir):
    """ConvertError, before any work, for a fine-tuning that cannot run: a budget that is not a positive number
    of minutes, no int8 file to make, no real validation images to choose the weights on."""
    check_minutes(minutes)
    if "int8" not in precisions:
        raise ConvertError("--qat fine-tunes the int8 files: add int8 to --precisions")
    if parity_dir is None:
        raise ConvertError("--qat chooses its weights on real validation images: give --parity DIR")


def fine_tune(source: SourceModel, calibration: ImageSet, train_dir, validation: ImageSet, minutes: float):
    """Fine-tune the int8 graph (``convert.int8.qat_tf``) and have both int8 exports use it, unless it made the
    validation agreement worse."""
    from convert.int8.qat_tf import fine_tune_bundle

    run = fine_tune_bundle(source, calibration, Path(train_dir), validation, minutes,
                           report=lambda line: print(f"qat: {line}", file=sys.stderr, flush=True))
    source.fine_tuning = run
    if not run.worse():
        source.int8_methods.update(qat_methods(source))


def qat_methods(source: SourceModel) -> dict:
    """format -> "qat" for the int8 files that can carry fine-tuned weights: TFLite always; ONNX where it keeps
    8-bit weights (on a CPU without VNNI it stores 7-bit weights, which the training's 8-bit grid does not match,
    so it keeps its default method there)."""
    from convert.to_onnx import int8_options

    return {"tflite": "qat", **({} if int8_options(source.reduce_range)["reduce_range"] else {"onnx": "qat"})}


def convert(source: SourceModel, bundle: Path, formats, precisions, parity_dir, parity_count: int | None,
            calibration_dir=None, calibration_count=200, exporters=EXPORTERS,
            cascade_margin: float | None = None, qat_minutes: float | None = None) -> list[Export]:
    """Build every requested artifact (parity on ``parity_count`` images, default all of ``parity_dir`` or
    NOISE_IMAGES of noise); the manifest is rewritten after each one, recording a refused export's numbers
    (its file is not published); then fit the cascades of its int8 and float files. With ``qat_minutes``, the
    int8 files that can carry it (``qat_methods``) come from the gptq graph fine-tuned for that long on
    ``calibration_dir``'s images (``source.fine_tuning`` tells how it went; refused when it made the validation
    agreement worse)."""
    m = source.manifest
    spec = m.spec()
    if "int8" in precisions and calibration_dir is None:
        raise ConvertError("int8 needs --calibration DIR (at least 100 real images), "
                           "or leave it out: --precisions fp32,fp16")
    if qat_minutes is not None:
        check_qat(qat_minutes, precisions, parity_dir)
    images = (load_images(parity_dir, spec, m.classes, parity_count or 10 ** 9) if parity_dir
              else synthetic_set(spec, parity_count or NOISE_IMAGES))
    enough_images(len(images.files), [*precisions, "cascade"] if "int8" in precisions or not precisions
                  else precisions, str(parity_dir or "noise"))
    calibration = None
    if "int8" in precisions:
        calibration = calibration_set(calibration_dir, spec, m.classes, calibration_count)
    if qat_minutes is not None:
        fine_tune(source, calibration, calibration_dir, images, qat_minutes)
    ref = source.predict(images.batch)
    jobs = [(f, p) for f in FORMATS if f in formats for p in FORMATS[f].precisions if p in precisions]
    results = []
    for fmt, precision in (bar := tqdm(jobs, desc="converting", unit="artifact", **progress_options())):
        bar.set_postfix_str(FORMATS[fmt].file(precision))
        art = build(source, bundle, fmt, precision, ref, images, calibration, exporters[fmt])
        results.append(art)
        if art.parity is not None and art.error is not None:
            (bundle / art.file).unlink(missing_ok=True)  # an earlier export of this name no longer holds
        if (entry := art.record(bundle)) is not None:
            m = m.with_artifact(entry)
            m.write(bundle)
    logits = {a.file: a.logits for a in results if a.error is None and a.logits is not None}
    if not jobs:  # --cascades-only: the published files timed again, alternately, on this machine as it is now
        runners = {a.file: FORMATS[a.format].load(artifact_path(bundle, a), None, "cpu", False) for a in m.verified()}
        for file, ms in alternated_latency_ms(runners, images.batch).items():
            m = m.with_artifact(replace(m.entry(file), latency_ms=ms, measured_on=this_machine()))
        logits = {file: r.infer_batches(images.batch) for file, r in runners.items()}

    def logits_of(file: str) -> np.ndarray:
        """This run's logits of a file, or those of a file published by an earlier run."""
        if file not in logits:
            entry = m.entry(file)
            logits[file] = FORMATS[entry.format].load(artifact_path(bundle, entry), None, "cpu").infer_batches(
                images.batch)
        return logits[file]
    where = f"{parity_dir or 'noise'} ({len(images.files)} images)"
    m = m.with_cascades(cascades(m, logits_of, ref, images.labels, where, cascade_margin))
    m.write(bundle)
    return results
