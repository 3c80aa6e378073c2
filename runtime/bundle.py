"""The bundle contract between train, convert, runtime and benchmarks: typed records of manifest.json.

Reading checks every field (a clear ManifestError names the first one that is malformed), writing
is atomic, and an artifact's file is reached only through the manifest: inside the bundle folder,
not through a symlink that leaves it, with its sha256 checked.
"""

import json
import math
import threading
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from runtime import verified
from runtime.errors import ModelError
from runtime.files import sha256, sha256_mapped, write_json
from runtime.formats import FORMATS, PRECISIONS
from runtime.parity import Parity
from runtime.preprocessing import MODES, RESAMPLE, ImageSpec

SCHEMA = 1
FILE = "manifest.json"


class ManifestError(ModelError):
    """A manifest is missing, unreadable, of another schema, or has a malformed field."""


def _check(value, kind, where: str):
    """``value`` if it is of ``kind`` (bool is no number here), else ManifestError naming ``where``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise ManifestError(f"{where}: expected {getattr(kind, '__name__', kind)}, got {value!r:.60}")
    return value


@dataclass(frozen=True)
class Input:
    """The model's input tensor."""

    height: int
    width: int
    channels: int = 3
    layout: str = "NHWC"

    @classmethod
    def parse(cls, d, where: str):
        _check(d, dict, where)
        out = cls(*(_check(d.get(k, dflt), int, f"{where}.{k}") for k, dflt in (
            ("height", None), ("width", None), ("channels", 3))), _check(d.get("layout", "NHWC"), str, where))
        if min(out.height, out.width, out.channels) < 1 or out.layout not in ("NHWC", "NCHW"):
            raise ManifestError(f"{where}: {out} is not a usable input")
        return out


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the input: pixel scaling mode, resize filter, colour."""

    mode: str = "xception"
    resize: str = "nearest"
    color: str = "RGB"

    @classmethod
    def parse(cls, d, where: str):
        _check(d, dict, where)
        out = cls(*(_check(d.get(f.name, f.default), str, f"{where}.{f.name}") for f in fields(cls)))
        if out.mode not in MODES or out.resize not in RESAMPLE or out.color != "RGB":
            raise ManifestError(f"{where}: unknown mode, resize or color in {out}")
        return out


@dataclass(frozen=True)
class Source:
    """The source model: its file in the bundle, its hash, and where it came from (``details``)."""

    file: str
    sha256: str
    details: dict = field(default_factory=dict, hash=False)

    @classmethod
    def parse(cls, d, where: str):
        _check(d, dict, where)
        rest = {k: v for k, v in d.items() if k not in ("file", "sha256")}
        return cls(_check(d.get("file"), str, f"{where}.file"), _check(d.get("sha256"), str, f"{where}.sha256"),
                   rest)

    @classmethod
    def of(cls, bundle: Path, file: str = "model.keras", **details):
        """The record of ``bundle/file`` as it is now, with the TensorFlow and Keras that wrote it."""
        import importlib.metadata  # slow to import: only conversion and training write sources

        versions = {}
        for package in ("tensorflow", "keras"):
            try:
                versions[package] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                continue
        return cls(file, sha256(Path(bundle) / file), {**versions, **details})

    def to_dict(self) -> dict:
        return {"file": self.file, "sha256": self.sha256, **self.details}


@dataclass(frozen=True)
class Artifact:
    """One export: file, format, precision, size, hash, parity, batch-1 latency where measured. An export
    refused by parity is recorded too (``parity.passed`` false, no hash): its file was never published."""

    file: str
    format: str
    precision: str
    bytes: int
    sha256: str | None
    parity: Parity
    latency_ms: float | None = None
    measured_on: str | None = None
    notes: dict = field(default_factory=dict, hash=False)

    @classmethod
    def parse(cls, d, where: str):
        _check(d, dict, where)
        fmt, precision = _check(d.get("format"), str, f"{where}.format"), _check(d.get("precision"), str, where)
        if fmt not in FORMATS or precision not in PRECISIONS:
            raise ManifestError(f"{where}: unknown format/precision {fmt}/{precision}")
        file = _check(d.get("file"), str, f"{where}.file")
        if Path(file).name != file or file in (".", ".."):
            raise ManifestError(f"{where}.file: {file!r} is not a file name inside the bundle")
        parity = _check(d.get("parity"), dict, f"{where}.parity")
        legacy = parity.get("failure")
        parity = {k: v for k, v in parity.items() if k != "failure"}
        try:
            record = Parity(**{"failures": [legacy] if legacy else [], **parity})
        except TypeError as e:
            raise ManifestError(f"{where}.parity: {e}") from None
        _check(record.passed, bool, f"{where}.parity.passed")
        latency, digest = d.get("latency_ms"), d.get("sha256")
        if record.passed or digest is not None:
            _check(digest, str, f"{where}.sha256")
        known = {"file", "format", "precision", "bytes", "sha256", "parity", "latency_ms", "measured_on"}
        return cls(file, fmt, precision, _check(d.get("bytes"), int, f"{where}.bytes"),
                   digest, record,
                   None if latency is None else float(_check(latency, (int, float), f"{where}.latency_ms")),
                   d.get("measured_on") if isinstance(d.get("measured_on"), str) else None,
                   {k: v for k, v in d.items() if k not in known})

    @classmethod
    def of(cls, bundle: Path, file: str, fmt: str, precision: str, parity: Parity, latency_ms=None,
           measured_on=None, notes=None):
        """The record of a file just published in ``bundle``."""
        path = Path(bundle) / file
        return cls(file, fmt, precision, path.stat().st_size, sha256(path), parity, latency_ms, measured_on,
                   notes or {})

    @classmethod
    def refused(cls, file: str, fmt: str, precision: str, size: int, parity: Parity, latency_ms=None,
                measured_on=None, notes=None):
        """The record of an export that failed parity and was not published: its numbers, no hash."""
        return cls(file, fmt, precision, size, None, parity, latency_ms, measured_on, notes or {})

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("parity", "notes")}
        return {**d, "parity": asdict(self.parity), **self.notes}


@dataclass(frozen=True)
class Manifest:
    """One bundle's description, as fixed in DESIGN.md."""

    name: str
    classes: tuple[str, ...]
    input: Input
    source: Source
    preprocessing: Preprocessing = Preprocessing()
    output: str = "logits"
    artifacts: tuple[Artifact, ...] = ()

    @classmethod
    def for_model(cls, name: str, classes, size: int, source: Source):
        """A manifest for a square NHWC RGB model with no artifacts yet."""
        return cls(name, tuple(classes), Input(size, size), source)

    @classmethod
    def read(cls, bundle):
        """Load ``bundle/manifest.json``; ManifestError names what is absent, foreign or malformed."""
        path = Path(bundle) / FILE
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError) as e:
            raise ManifestError(f"cannot read {path}: {e}") from None
        _check(d, dict, str(path))
        if d.get("schema") != SCHEMA:
            raise ManifestError(f"{path}: schema {d.get('schema')!r}, expected {SCHEMA}")
        classes = _check(d.get("classes"), list, f"{path}: classes")
        if not classes or not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
            raise ManifestError(f"{path}: classes must be distinct non-empty names")
        artifacts = _check(d.get("artifacts", []), list, f"{path}: artifacts")
        parsed = tuple(Artifact.parse(a, f"{path}: artifacts[{i}]") for i, a in enumerate(artifacts))
        if len({a.file for a in parsed}) != len(parsed):
            raise ManifestError(f"{path}: an artifact file is listed twice")
        return cls(_check(d.get("name", Path(bundle).name), str, f"{path}: name"), tuple(classes),
                   Input.parse(d.get("input"), f"{path}: input"), Source.parse(d.get("source"), f"{path}: source"),
                   Preprocessing.parse(d.get("preprocessing", {}), f"{path}: preprocessing"),
                   _check(d.get("output", "logits"), str, f"{path}: output"), parsed)

    def to_dict(self) -> dict:
        """The manifest as JSON data, schema first."""
        return {"schema": SCHEMA, "name": self.name, "classes": list(self.classes), "input": asdict(self.input),
                "preprocessing": asdict(self.preprocessing), "output": self.output, "source": self.source.to_dict(),
                "artifacts": [a.to_dict() for a in self.artifacts]}

    def write(self, bundle):
        """Atomically write ``bundle/manifest.json``."""
        write_json(Path(bundle) / FILE, self.to_dict())

    def with_artifact(self, artifact: Artifact) -> "Manifest":
        """This manifest with ``artifact`` added, replacing an entry of the same file."""
        return replace(self, artifacts=(*(a for a in self.artifacts if a.file != artifact.file), artifact))

    def with_source(self, source: Source) -> "Manifest":
        """This manifest for a changed source model: its artifacts no longer hold and are dropped."""
        return replace(self, source=source, artifacts=() if source.sha256 != self.source.sha256 else self.artifacts)

    def spec(self) -> ImageSpec:
        """How this bundle's images become inputs."""
        return ImageSpec(self.input.height, self.input.width, self.preprocessing.mode, self.preprocessing.resize)

    def verified(self) -> list[Artifact]:
        """The artifacts whose parity passed."""
        return [a for a in self.artifacts if a.parity.passed]

    def refused(self) -> list[Artifact]:
        """The exports that failed parity, kept for their numbers; no file of theirs is published."""
        return [a for a in self.artifacts if not a.parity.passed]

    def entry(self, file: str) -> Artifact | None:
        """The artifact record of ``file``, if the manifest lists it."""
        return next((a for a in self.artifacts if a.file == file), None)


def artifact_path(bundle, artifact: Artifact, check_hash=True) -> Path:
    """The checked path of an artifact: inside ``bundle`` (no symlink out of it), its hash as recorded
    (``check_hash=False``: the caller checks it, as ``load_verified`` does)."""
    bundle = Path(bundle)
    path = bundle / artifact.file
    if not artifact.parity.passed:
        raise ManifestError(f"{path}: failed parity at conversion and was not published")
    if path.is_symlink() and not path.resolve().is_relative_to(bundle.resolve()):
        raise ManifestError(f"{path}: a symlink that leaves the bundle")
    if not path.is_file() or (check_hash and sha256(path) != artifact.sha256):
        raise ManifestError(f"{path}: missing or its hash differs from {FILE}")
    return path


def load_verified(bundle, artifact: Artifact, load):
    """``load(path)`` of an artifact while a thread checks its hash (hashing a mapped file releases the GIL);
    the loaded model is returned only when the hash is the recorded one. A file unchanged since its hash
    last matched (runtime/verified.py) is not hashed again."""
    path = artifact_path(bundle, artifact, check_hash=False)
    if verified.known(path, artifact.sha256):
        return path, load(path)
    seen = verified.identity(path)
    digest = {}
    thread = threading.Thread(target=lambda: digest.setdefault("sha256", sha256_mapped(path)), daemon=True)
    thread.start()
    try:
        loaded = load(path)
    finally:  # a changed file is reported as changed, even when it also failed to load
        thread.join()
        if digest.get("sha256") != artifact.sha256:
            raise ManifestError(f"{path}: its hash differs from {FILE}") from None
    verified.remember(path, artifact.sha256, seen)
    return path, loaded
