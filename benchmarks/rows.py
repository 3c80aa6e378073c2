"""One benchmark row per target (Keras predict, Keras compiled, each artifact), measured the same way."""

import io
import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.bundle import Artifact, Cascade, Manifest, load_verified
from runtime.choice import cascade_choice
from runtime.errors import BackendUnavailable, ModelError, RuntimeToolkitError, first_line
from runtime.files import sha256
from runtime.formats import FORMATS
from runtime.parity import compare

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Target:
    """Something to measure: the Keras model (predict or compiled) or one artifact file."""

    name: str
    format: str
    precision: str
    file: Path
    in_bundle: bool = False
    sha256: str | None = None  # of a bundle's artifact, from its manifest entry (None: not listed)
    refused: Artifact | None = None  # the manifest's record of an export that failed parity
    cascade: Cascade | None = None  # a cascade row: its record (``file`` is the fast file)
    default: bool = False  # the cascade the runtime chooses by default here


@dataclass
class Row:
    """Every column of the report; None where a measurement does not apply or did not run."""

    name: str
    format: str
    precision: str
    device: str
    status: str = "ok"
    reason: str = ""
    provider: str = ""
    threads: int | None = None
    size_mb: float | None = None
    max_abs_diff: float | None = None
    top1_agreement: float | None = None
    agreement_interval: tuple[float, float] | None = None  # 95% Wilson interval
    accuracy: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    recheck_rate: float | None = None
    e2e_p50_ms: float | None = None
    throughput_b32: float | None = None
    gflops: float | None = None
    peak_share: float | None = None
    cold_start_s: float | None = None
    peak_rss_mb: float | None = None
    about: str = ""  # a cascade row: its pair and gate
    default: bool = False  # what the runtime chooses for this bundle on this device


def targets(bundle: Path) -> list[Target]:
    """Keras predict, Keras compiled, then every (format, precision) of the formats table, each with
    the hash its manifest entry records (a file the manifest does not list is not measured)."""
    m = Manifest.read(bundle)
    keras = bundle / m.source.file
    rows = [Target("keras predict", "keras", "fp32", keras), Target("keras compiled", "keras", "fp32", keras)]
    listed = {a.file: a.sha256 for a in m.verified()}
    refused = {a.file: a for a in m.refused()}
    chosen = cascade_choice(m)
    return rows + [Target(f"{f} {p}", f, p, bundle / FORMATS[f].file(p), True, listed.get(FORMATS[f].file(p)),
                          refused.get(FORMATS[f].file(p))) for f in FORMATS for p in FORMATS[f].precisions] + [
        Target(f"cascade {m.entry(c.fast).format}", "cascade", "cascade", bundle / c.fast, True, listed.get(c.fast),
               cascade=c, default=chosen is not None and chosen.cascade == c) for c in m.published_cascades()]


def file_target(path: Path) -> list[Target]:
    """The rows of one bare model file: both Keras rows for a .keras, else the file itself."""
    from runtime.formats import format_of

    fmt = format_of(path)
    if fmt.name == "keras":
        return [Target("keras predict", "keras", "fp32", path), Target("keras compiled", "keras", "fp32", path)]
    precision = next((p for p in fmt.precisions if f".{p}." in path.name), "?")
    return [Target(path.name, fmt.name, precision, path)]


def load(target: Target, device: str):
    """A runner for the target (BackendUnavailable / RuntimeToolkitError when it cannot be had)."""
    if target.format == "keras":
        from runtime.engines.keras_runner import load_keras

        return load_keras(target.file, None, device, compiled=target.name == "keras compiled")
    if target.cascade is not None:
        return load_cascade(target.file.parent, target.cascade, device)
    if target.in_bundle and target.sha256 is None:
        why = "a file left from an earlier conversion" if target.file.exists() else "not converted"
        raise BackendUnavailable(f"{target.file.name} is not in the manifest ({why}, or it failed parity)")
    if target.in_bundle and not target.file.is_file():
        raise BackendUnavailable(f"{target.file.name} is not in the bundle (its manifest lists it)")
    if target.in_bundle and sha256(target.file) != target.sha256:
        raise ModelError(f"{target.file.name}: its hash differs from the manifest's (changed since conversion)")
    return FORMATS[target.format].load(target.file, None, device)


def load_cascade(bundle: Path, cascade: Cascade, device: str, spinning=True):
    """A runner over a cascade's two files, each hash-checked (as the runtime loads it)."""
    from runtime.classifier import cascade_runner

    if device != "cpu":
        raise BackendUnavailable("a cascade runs on the CPU (on a GPU every float file is fast)")
    m = Manifest.read(bundle)
    fast, exact = ((load_verified(bundle, e, lambda f, e=e: FORMATS[e.format].load(f, None, device, spinning))[1])
                   for e in (m.entry(cascade.fast), m.entry(cascade.exact)))
    return cascade_runner(fast, exact, cascade.margin)


def refused_row(row: Row, entry: Artifact) -> Row:
    """A row for an export refused by parity: the numbers its conversion measured, said to be such."""
    p = entry.parity
    row.status = "refused"
    row.reason = (f"failed parity at conversion ({'; '.join(p.failures)}); numbers from the conversion: "
                  f"{p.images} images, batch-1 latency on {entry.measured_on or 'an unrecorded CPU'}")
    row.size_mb, row.max_abs_diff, row.top1_agreement = entry.bytes / 1e6, p.max_abs_logit_diff, p.top1_agreement
    row.accuracy, row.p50_ms = p.accuracy, entry.latency_ms
    return row


def child_env(base, **extra) -> dict:
    """``base`` (an environment) for a benchmark's child process: this checkout first on PYTHONPATH, the
    caller's entries kept after it (packages installed with ``pip --target``, as on the GPU machine)."""
    path = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH")) if p)
    return {**base, **extra, "PYTHONPATH": path}


def cold_start(target: Target, image: str, device: str, overrides=None, spec=None) -> tuple[float, float]:
    """Seconds from spawning a fresh process to its first prediction, and its peak RSS in MB (a cascade row:
    the bundle's default cascade, both of its files)."""
    kind = "keras" if target.format == "keras" else "runtime"
    path = target.file.parent if target.cascade is not None else target.file  # the bundle loads its default cascade
    env = child_env(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.time()
    res = subprocess.run([sys.executable, "-m", "benchmarks.coldstart", kind, str(path), image, device,
                          json.dumps(asdict(overrides) if overrides else {}), json.dumps(asdict(spec) if spec else {})],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    if res.returncode != 0:
        raise ModelError(f"cold start failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return out["done"] - start, out["peak_rss_mb"]


def measure(target: Target, device: str, images, spec, ref, macs: int, peak: dict, timing,
            overrides=None) -> tuple[Row, np.ndarray]:
    """Measure one target; a missing backend or file gives an 'unavailable' row, an error a 'failed' one."""
    from benchmarks.measure.timing import latency, throughput

    row = Row(target.name, target.format, target.precision, device, default=target.default)
    if target.cascade is not None:
        row.about = f"{target.cascade.name}, gate {target.cascade.margin:.2f}" + (" (default)" if target.default
                                                                                   else "")
    if target.refused is not None:
        return refused_row(row, target.refused), None
    try:
        runner = load(target, device)
    except BackendUnavailable as e:
        row.status, row.reason = "unavailable", str(e)
        return row, None
    except (RuntimeToolkitError, OSError, ValueError) as e:
        row.status, row.reason = "failed", first_line(e)
        return row, None
    row.provider, row.threads = runner.provider, runner.threads
    row.size_mb = target.file.stat().st_size / 1e6
    out = runner.infer_batches(images.batch)
    p = compare(out if ref is None else ref, out, images.labels)
    row.accuracy = p.accuracy
    if ref is not None:
        row.max_abs_diff, row.top1_agreement, row.agreement_interval = p.max_abs_logit_diff, p.top1_agreement, \
            p.interval
    one = images.batch[:1]
    if target.cascade is not None:  # its cost depends on the image: cycle through all of them
        row.recheck_rate = float(np.mean(np.concatenate([runner.answer(images.batch[i:i + 32]).rechecked
                                                         for i in range(0, len(images.batch), 32)])))
        each = itertools.cycle(range(len(images.batch)))
        lat = latency(lambda: runner.infer(images.batch[(i := next(each)):i + 1]),
                      runs=max(timing.runs, len(images.batch)))
    else:
        lat = latency(lambda: runner.infer(one), runs=timing.runs)
    row.p50_ms, row.p90_ms, row.p99_ms, row.mean_ms = lat.p50, lat.p90, lat.p99, lat.mean
    jpeg = Path(images.files[0]).read_bytes()
    row.e2e_p50_ms = latency(lambda: runner.infer(spec.load(io.BytesIO(jpeg))[None]).argmax(),
                             runs=timing.runs).p50
    b32 = np.resize(images.batch, (32, *images.batch.shape[1:]))
    row.throughput_b32 = throughput(lambda: runner.infer(b32), 32, timing.throughput_s)
    if macs:
        row.gflops = 2 * macs * row.throughput_b32 / 1e9
        if target.cascade is None:  # a cascade's work is part int8, part float: no one peak to share
            row.peak_share = row.gflops / peak[target.precision if target.precision == "int8" else "fp32"]
    if timing.cold_start and (target.cascade is None or target.default):
        try:
            row.cold_start_s, row.peak_rss_mb = cold_start(target, images.files[0], device, overrides, spec)
        except ModelError as e:
            row.reason = str(e)
    return row, out
