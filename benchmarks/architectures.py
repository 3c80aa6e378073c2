"""``python -m benchmarks.architectures --data D``: does any Keras image classifier convert, not only Xception?

Each architecture of the matrix is built with ``weights=None`` (keras.applications) or by hand, fitted for
a few epochs on five distinct classes of DATA/train so that its logits mean something (BatchNorm momentum
0.9, so that the moving statistics of a short training keep up), saved, and converted by ``python -m
convert MODEL --classes ... --preprocessing MODE --calibration DATA/train --parity DATA/validation``. The
table gives, per architecture and file: published, refused by parity (with its agreement) or failed (with
the reason), the agreement with Keras with its 95% interval, the accuracy on the five classes' test images,
and the batch-1 milliseconds the conversion measured. Writes architectures.md and architectures.json.
"""

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runtime.cli import command_parser, import_tensorflow_quietly, positive_int

CLASSES = ("dress", "hat", "pants", "shoes", "t-shirt")  # 202 validation images: enough for fp32's bound (189)


@dataclass(frozen=True)
class Arch:
    """One row of the matrix: how to build it, the preprocessing it was fitted with, what it covers."""

    name: str
    build: str  # keras.applications class, or "plain", "rescaling", "softmax"
    mode: str
    covers: str
    h5: bool = False
    color: str = "RGB"


MATRIX = (
    Arch("MobileNetV2", "MobileNetV2", "tf", "ReLU6, depthwise, residual adds"),
    Arch("MobileNetV3Small", "MobileNetV3Small", "none", "hard-swish, squeeze-excite, Rescaling inside"),
    Arch("EfficientNetB0", "EfficientNetB0", "none", "swish, Rescaling and Normalization inside"),
    Arch("ResNet50", "ResNet50", "caffe", "BatchNorm + Add"),
    Arch("DenseNet121", "DenseNet121", "unit", "Concatenate"),
    Arch("RescalingCNN", "rescaling", "none", "Sequential, Rescaling(1/255) inside"),
    Arch("SoftmaxCNN", "softmax", "xception", "a softmax head: probabilities out"),
    Arch("LegacyH5CNN", "plain", "unit", "a legacy HDF5 file, x/255 outside", h5=True),
    Arch("GrayscaleCNN", "plain", "unit", "one input channel: images read as L", color="L"),
)


@dataclass
class FileRow:
    """One file of one architecture."""

    file: str
    status: str  # published, refused, failed, missing
    agreement: float | None = None
    interval: tuple[float, float] | None = None
    images: int | None = None
    accuracy: float | None = None
    latency_ms: float | None = None
    why: str = ""


@dataclass
class ArchRow:
    """One architecture: how long it took and what each of its files became."""

    name: str
    covers: str
    mode: str
    keras_accuracy: float | None = None
    train_s: float = 0.0
    convert_s: float = 0.0
    convert_rc: int | None = None
    error: str = ""
    output: str = ""
    files: list[FileRow] = field(default_factory=list)


def build(arch: Arch, size: int):
    """The untrained Keras model of ``arch`` at ``size`` px with len(CLASSES) outputs."""
    import keras

    n = len(CLASSES)
    if arch.build in ("plain", "rescaling", "softmax"):
        layers = [keras.Input((size, size, 1 if arch.color == "L" else 3))] + (
            [keras.layers.Rescaling(1 / 255)] if arch.build == "rescaling" else [])
        layers += [keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
                   keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(),
                   keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
                   keras.layers.Dense(n, activation="softmax" if arch.build == "softmax" else None)]
        return keras.Sequential(layers)
    cls = getattr(keras.applications, arch.build)
    extra = {"include_preprocessing": True} if arch.build.startswith("MobileNetV3") else {}
    return cls(input_shape=(size, size, 3), weights=None, classes=n, classifier_activation=None, **extra)


def subset(data: Path, root: Path) -> Path:
    """``root`` with train/validation/test holding links to the images of CLASSES in ``data`` (nothing copied)."""
    for split in ("train", "validation", "test"):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for image in (data / split / c).iterdir():
                os.symlink(image.resolve(), root / split / c / image.name)
    return root


def fit(arch: Arch, data: Path, size: int, epochs: int, out: Path) -> tuple[Path, float]:
    """Build, fit and save one architecture; (its file, its test accuracy in Keras)."""
    import keras
    import numpy as np

    from runtime.images import load_images
    from runtime.preprocessing import ImageSpec

    keras.utils.set_random_seed(0)
    spec = ImageSpec(size, size, arch.mode, color=arch.color)
    train, test = (load_images(data / s, spec, list(CLASSES), 10 ** 6) for s in ("train", "test"))
    model = build(arch, size)
    for layer in model.layers:  # moving statistics that keep up with a short training from scratch
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=arch.build != "softmax")
    model.compile(keras.optimizers.Adam(1e-3), loss)
    model.fit(train.batch, np.asarray(train.labels), epochs=epochs, batch_size=32, verbose=0)
    accuracy = float(np.mean(model.predict(test.batch, verbose=0).argmax(1) == np.asarray(test.labels)))
    path = out / f"{arch.name}{'.h5' if arch.h5 else '.keras'}"
    model.save(path)
    return path, accuracy


def convert(arch: Arch, model: Path, data: Path, bundle: Path) -> subprocess.CompletedProcess:
    """``python -m convert`` of one saved model into ``bundle``."""
    from benchmarks.rows import ROOT, child_env

    return subprocess.run([sys.executable, "-m", "convert", str(model), "--classes", ",".join(CLASSES),
                           "--preprocessing", arch.mode, "--calibration", str(data / "train"), "--parity",
                           str(data / "validation"), "--out", str(bundle)], cwd=ROOT, env=child_env(os.environ),
                          capture_output=True, text=True, timeout=7200, check=False)


def file_rows(bundle: Path, data: Path, stderr: str) -> list[FileRow]:
    """Each of the six files: its manifest record and its accuracy on the test images, or why it is absent."""
    from runtime.bundle import Manifest
    from runtime.classifier import Classifier
    from runtime.formats import FORMATS
    from runtime.images import load_images

    m = Manifest.read(bundle) if (bundle / "manifest.json").is_file() else None
    failed = {line.split(":")[1].strip(): line for line in stderr.splitlines() if line.startswith("error: model.")}
    rows = []
    for fmt in FORMATS:
        for precision in FORMATS[fmt].precisions:
            name = FORMATS[fmt].file(precision)
            entry = m.entry(name) if m else None
            if entry is None:
                rows.append(FileRow(name, "failed" if name in failed else "missing", why=failed.get(name, "")[:300]))
                continue
            p = entry.parity
            row = FileRow(name, "published" if p.passed else "refused", p.top1_agreement, p.interval, p.images,
                          latency_ms=entry.latency_ms, why="; ".join(p.failures))
            if p.passed:
                clf = Classifier.load(bundle, fmt, precision)
                test = load_images(data / "test", clf.info.spec, list(CLASSES), 10 ** 6)
                row.accuracy = float((clf.infer(test.batch).argmax(1) == test.labels).mean())
            rows.append(row)
    return rows


def markdown(rows: list[ArchRow], head: dict) -> str:
    """The matrix as Markdown: one line per architecture and file."""
    lines = [f"# Architectures: {head['size']} px, {head['epochs']} epochs on {', '.join(CLASSES)}", "",
             f"- {head['date']}; CPU {head['cpu']}; data {head['data']}", f"- command: `{head['command']}`", "",
             "| architecture | covers | mode | output | Keras accuracy | file | status | agreement [95%] of n | "
             "accuracy | b1 ms | why |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in rows:
        if a.error:
            lines.append(f"| {a.name} | {a.covers} | {a.mode} | - | - | - | error | - | - | - | {a.error} |")
        for f in a.files:
            agree = (f"{f.agreement:.1%} [{f.interval[0]:.1%}-{f.interval[1]:.1%}] of {f.images}"
                     if f.agreement is not None else "-")
            lines.append(f"| {a.name} | {a.covers} | {a.mode} | {a.output} | "
                         f"{'-' if a.keras_accuracy is None else f'{a.keras_accuracy:.3f}'} | {f.file} | {f.status} | "
                         f"{agree} | {'-' if f.accuracy is None else f'{f.accuracy:.3f}'} | "
                         f"{'-' if f.latency_ms is None else f'{f.latency_ms:.1f}'} | {f.why} |")
    return "\n".join(lines) + "\n"


def parser():
    p = command_parser("python -m benchmarks.architectures", __doc__)
    p.add_argument("--data", type=Path, required=True, help="the clothing dataset (train/validation/test)")
    p.add_argument("--size", type=positive_int, default=32, help="input size in pixels (default 32)")
    p.add_argument("--epochs", type=positive_int, default=10, help="training epochs per architecture (default 10)")
    p.add_argument("--only", help="comma-separated architecture names of the matrix (default: all)")
    p.add_argument("--out", type=Path, default=Path("runs/architectures"), help="default runs/architectures")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from runtime.cli import error

    wanted = [a for a in MATRIX if not args.only or a.name in args.only.split(",")]
    if args.only and not wanted:
        return error(f"--only: none of {args.only!r} is in the matrix ({', '.join(a.name for a in MATRIX)})")
    if not all((args.data / s / c).is_dir() for s in ("train", "validation", "test") for c in CLASSES):
        return error(f"--data {args.data}: needs train/, validation/ and test/ with {', '.join(CLASSES)}")
    import_tensorflow_quietly(args.verbose)
    from benchmarks.measure.provenance import provenance
    from runtime.bundle import Manifest
    from runtime.files import write_json

    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-arch-") as tmp:
        data = subset(args.data, Path(tmp) / "data")
        for arch in wanted:
            print(f"== {arch.name}: fit {args.epochs} epochs at {args.size} px, then convert", file=sys.stderr,
                  flush=True)
            row = ArchRow(arch.name, arch.covers, arch.mode)
            t = time.perf_counter()
            try:
                model, row.keras_accuracy = fit(arch, data, args.size, args.epochs, Path(tmp))
            except Exception as e:  # an architecture Keras cannot build or fit here is a row, not a crash
                row.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                rows.append(row)
                continue
            row.train_s, t = time.perf_counter() - t, time.perf_counter()
            bundle = Path(tmp) / arch.name
            res = convert(arch, model, data, bundle)
            row.convert_s, row.convert_rc = time.perf_counter() - t, res.returncode
            if res.returncode not in (0, 1):
                row.error = (res.stderr.strip().splitlines() or ["?"])[-1][:300]
            row.output = Manifest.read(bundle).output if (bundle / "manifest.json").is_file() else ""
            row.files = file_rows(bundle, data, res.stderr)
            print(f"   {sum(f.status == 'published' for f in row.files)}/6 published "
                  f"({row.train_s:.0f} s fit, {row.convert_s:.0f} s convert)", file=sys.stderr, flush=True)
            rows.append(row)
    prov = provenance()
    head = {"size": args.size, "epochs": args.epochs, "date": prov["date"], "cpu": prov["cpu"], "data": str(args.data),
            "command": "python -m benchmarks.architectures " + " ".join(sys.argv[1:] if argv is None else argv)}
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, head)
    (args.out / "architectures.md").write_text(text)
    write_json(args.out / "architectures.json", {**head, "rows": [asdict(r) for r in rows]})
    print(text)
    internal = [r.name for r in rows if r.error or any(f.status in ("failed", "missing") for f in r.files)]
    print(f"{len(rows) - len(internal)}/{len(rows)} architectures with every file published or refused by parity; "
          f"report in {args.out}/architectures.md", file=sys.stderr)
    return 1 if internal else 0


if __name__ == "__main__":
    sys.exit(main())
