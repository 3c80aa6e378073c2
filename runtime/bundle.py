"""The bundle contract between train, convert, runtime and benchmarks: typed records of manifest.json.

Reading checks every field (a clear ManifestError names the first one that is malformed), writing
is atomic, and an artifact's file is reached only through the manifest: inside the bundle folder,
not through a symlink that leaves it, with its sha256 checked.
"""

import json
import math
import threading
import unicodedata
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from runtime.checks import verified
from runtime.errors import ModelError
from runtime.files import sha256, sha256_mapped, write_json
from runtime.formats import FORMATS, PRECISIONS
from runtime.parity import Parity
from runtime.preprocessing import COLORS, MODES, RESAMPLE, ImageSpec, color_problem

SCHEMA = 1
FILE = "manifest.json"
OUTPUTS = ("logits", "probabilities")  # what a model's one output holds; the runtime softmaxes only logits


class ManifestError(ModelError):
    """A manifest is missing, unreadable, of another schema, or has a malformed field."""


MAX_CLASSES, MAX_CLASS_NAME = 100_000, 200
MAX_SIDE = 4096  # pixels per side of an input the runtime will resize an image to


def check_classes(classes, where: str) -> list[str]:
    """Distinct, non-empty class names without control characters or lone surrogates (they would reach a
    terminal raw, or fail to encode in every answer); ManifestError naming the first bad one."""
    if not isinstance(classes, list) or not 0 < len(classes) <= MAX_CLASSES:
        raise ManifestError(f"{where}: expected a list of 1 to {MAX_CLASSES} class names")
    for c in classes:
        if (not isinstance(c, str) or not c or len(c) > MAX_CLASS_NAME
                or any(unicodedata.category(ch) in ("Cc", "Cs") for ch in c)):
            raise ManifestError(f"{where}: {ascii(c)[:60]} is not a class name (1-{MAX_CLASS_NAME} printable "
                                "characters)")
    if len(set(classes)) != len(classes):
        raise ManifestError(f"{where}: classes must be distinct non-empty names")
    return classes


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
        if out.mode not in MODES or out.resize not in RESAMPLE:
            raise ManifestError(f"{where}: unknown mode or resize in {out}")
        if problem := color_problem(out.mode, out.color):
            raise ManifestError(f"{where}: {problem}")
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
        file = _file_name(d.get("file"), f"{where}.file")
        record = _parity(d.get("parity"), f"{where}.parity")
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


MAX_MARGIN = 1000.0  # a gate wider than any logit gap re-checks every image; beyond it is a typo


def _share(value, where: str) -> float:
    """A number in [0, 1]."""
    value = float(_check(value, (int, float), where))
    if not 0 <= value <= 1:
        raise ManifestError(f"{where}: {value!r} is not in [0, 1]")
    return value


def _file_name(value, where: str) -> str:
    """A plain file name inside the bundle."""
    name = _check(value, str, where)
    if Path(name).name != name or name in (".", ".."):
        raise ManifestError(f"{where}: {name!r} is not a file name inside the bundle")
    return name


def output_kind(value, where: str) -> str:
    """``logits`` or ``probabilities``."""
    if _check(value, str, where) not in OUTPUTS:
        raise ManifestError(f"{where}: {value!r:.40} is neither {' nor '.join(OUTPUTS)}")
    return value


MAX_METADATA = 1 << 20  # bytes of a model file's own metadata: classes, input, preprocessing


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_metadata(raw: bytes | str | None, where: str) -> dict:
    """A model file's embedded metadata (what ``convert`` writes: name, classes, input, preprocessing,
    output, format, precision), parsed with the manifest's typed records: every field present is checked,
    and ModelError names the first bad one. Nothing embedded: {}."""
    if not raw:
        return {}
    if len(raw) > MAX_METADATA:
        raise ModelError(f"{where}: its metadata is {len(raw)} bytes; at most {MAX_METADATA}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray | memoryview) else raw
        d = json.loads(text, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ModelError(f"{where}: its metadata is not UTF-8") from None
    except RecursionError:
        raise ModelError(f"{where}: its metadata is nested too deeply") from None
    except ValueError as e:
        raise ModelError(f"{where}: its metadata is not JSON ({str(e)[:80]})") from None
    if not isinstance(d, dict):
        raise ModelError(f"{where}: its metadata is a JSON {type(d).__name__}, not an object")
    try:
        for key in ("name", "format", "precision", "source_sha256"):
            if key in d:
                _check(d[key], str, f"{where}: metadata {key}")
        if "classes" in d:
            check_classes(d["classes"], f"{where}: metadata classes")
        inp = Input.parse(d["input"], f"{where}: metadata input") if "input" in d else None
        if inp is not None and max(inp.height, inp.width) > MAX_SIDE:
            raise ManifestError(f"{where}: metadata input {inp.height}x{inp.width}; at most {MAX_SIDE} per side")
        pre = Preprocessing.parse(d["preprocessing"], f"{where}: metadata preprocessing") \
            if "preprocessing" in d else None
        if inp is not None and pre is not None and inp.channels != COLORS[pre.color]:
            raise ManifestError(f"{where}: metadata input has {inp.channels} channels; colour {pre.color} gives "
                                f"{COLORS[pre.color]}")
        if "output" in d:
            output_kind(d["output"], f"{where}: metadata output")
    except RecursionError:
        raise ModelError(f"{where}: its metadata is nested too deeply") from None
    return d


@dataclass(frozen=True)
class Overrides:
    """What the user's flags say of a model (``--classes``, ``--size`` as (height, width), ``--preprocessing``):
    they fill what a bare file does not say and win over what its metadata or a manifest says."""

    classes: tuple[str, ...] | None = None
    size: tuple[int, int] | None = None
    mode: str | None = None


NO_OVERRIDES = Overrides()


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime must know about a model besides its weights: one record, whether a manifest, a model
    file's metadata or the user's flags said it."""

    name: str
    classes: tuple[str, ...]
    input: Input
    preprocessing: Preprocessing = Preprocessing()
    output: str = "logits"

    @property
    def spec(self) -> ImageSpec:
        """How this model's images become inputs."""
        p = self.preprocessing
        return ImageSpec(self.input.height, self.input.width, p.mode, p.resize, p.color)

    @classmethod
    def parse(cls, d, where: str, what: str = "", name: str = "", shape=None, channels=None,
              overrides: Overrides = NO_OVERRIDES):
        """From a manifest's or a model file's JSON object (``what``: a word naming its fields, "metadata "),
        every field checked; ``overrides``, then a bare file's fixed input ``shape`` (H, W) and ``channels``,
        give what it does not say, and the overrides then win (``with_overrides``). ModelError names the first
        field missing or malformed."""
        at = f"{where}: {what}"
        _check(d, dict, where)
        size = dict(_check(d.get("input", {}), dict, f"{at}input"))
        if "height" not in size and (given := overrides.size or (shape if shape and all(shape) else None)):
            size.update(height=given[0], width=given[1])
        classes = d.get("classes", None if overrides.classes is None else list(overrides.classes))
        missing = [flag for flag, known in (("--classes", classes is not None), ("--size", "height" in size))
                   if not known]
        if missing:
            raise ModelError(f"{where} carries no {'/'.join(f.lstrip('-') for f in missing)} in its metadata: "
                             f"give {' and '.join(missing)} (and --preprocessing if not xception)")
        pre = _check(d.get("preprocessing", {}), dict, f"{at}preprocessing")
        if channels == 1 and "color" not in pre:
            pre = {**pre, "color": "L"}
        preprocessing = Preprocessing.parse(pre, f"{at}preprocessing")
        inp = Input.parse({"channels": COLORS[preprocessing.color], **size}, f"{at}input")
        if inp.channels != COLORS[preprocessing.color]:
            raise ManifestError(f"{at}input has {inp.channels} channels; preprocessing colour {preprocessing.color} "
                                f"gives {COLORS[preprocessing.color]}")
        info = cls(_check(d.get("name", name), str, f"{at}name"),
                   tuple(check_classes(_check(classes, list, f"{at}classes"), f"{at}classes")),
                   inp, preprocessing, output_kind(d.get("output", "logits"), f"{at}output"))
        return info.with_overrides(overrides, where)

    def with_overrides(self, overrides: Overrides, where: str) -> "ModelInfo":
        """This record with what the user's flags say (each checked as a manifest's field would be)."""
        info = self
        if overrides.classes is not None:
            info = replace(info, classes=tuple(check_classes(list(overrides.classes), f"{where}: --classes")))
        if overrides.size is not None:
            height, width = overrides.size
            info = replace(info, input=Input.parse({**asdict(info.input), "height": height, "width": width},
                                                   f"{where}: --size"))
        if overrides.mode is not None:
            pre = {**asdict(info.preprocessing), "mode": overrides.mode}
            info = replace(info, preprocessing=Preprocessing.parse(pre, f"{where}: --preprocessing"))
        return info


def margin_of(value, where: str) -> float:
    """A cascade gate: a finite top-2 logit margin in [0, MAX_MARGIN]."""
    value = float(_check(value, (int, float), where))
    if not 0 <= value <= MAX_MARGIN:
        raise ManifestError(f"{where}: gate {value!r} is not a margin in [0, {MAX_MARGIN:g}]")
    return value


def _count(value, where: str) -> int:
    """A number of images, >= 0."""
    if _check(value, int, where) < 0:
        raise ManifestError(f"{where}: {value} is negative")
    return value


def _record(cls, d, where: str, **parsers):
    """``cls`` from the JSON object ``d``, each field through its parser."""
    _check(d, dict, where)
    return cls(**{name: parse(d.get(name), f"{where}.{name}") for name, parse in parsers.items()})


@dataclass(frozen=True)
class GatePoint:
    """One row of a cascade's trade-off table: at this gate, the share re-checked and the agreement."""

    margin: float
    recheck_rate: float
    agreement: float

    @classmethod
    def parse(cls, d, where: str):
        return _record(cls, d, where, margin=margin_of, recheck_rate=_share, agreement=_share)


@dataclass(frozen=True)
class Half:
    """A gate fitted on one half of the parity images and checked on the other."""

    fitted_images: int
    margin: float
    checked_images: int
    agreement: float
    recheck_rate: float

    @classmethod
    def parse(cls, d, where: str):
        return _record(cls, d, where, fitted_images=_count, margin=margin_of, checked_images=_count,
                       agreement=_share, recheck_rate=_share)


@dataclass(frozen=True)
class Cascade:
    """A fast file that answers every image and an exact file that answers again where the fast file's own
    top-2 logit margin is under ``margin``. ``parity`` is the agreement with the source model measured on
    images the gate was not fitted on (each half of the parity images with the other half's gate)."""

    fast: str
    exact: str
    margin: float
    fitted_on: str
    recheck_rate: float
    parity: Parity
    set_by: str = "fitted"
    widened_by: float = 0.0
    halves: tuple[Half, ...] = ()
    tradeoff: tuple[GatePoint, ...] = ()
    latency_ms: float | None = None
    measured_on: str | None = None

    @property
    def name(self) -> str:
        """``model.int8.tflite > model.fp32.onnx``: the pair, fast file first."""
        return f"{self.fast} > {self.exact}"

    @classmethod
    def parse(cls, d, where: str):
        _check(d, dict, where)
        fast, exact = _file_name(d.get("fast"), f"{where}.fast"), _file_name(d.get("exact"), f"{where}.exact")
        if fast == exact:
            raise ManifestError(f"{where}: the fast and the exact file are both {fast}")
        set_by = _check(d.get("set_by", "fitted"), str, f"{where}.set_by")
        if set_by not in ("fitted", "hand"):
            raise ManifestError(f"{where}.set_by: {set_by!r} is neither 'fitted' nor 'hand'")
        halves, points = _check(d.get("halves", []), list, f"{where}.halves"), _check(d.get("tradeoff", []), list,
                                                                                      f"{where}.tradeoff")
        if len(halves) > 2 or len(points) > 100:
            raise ManifestError(f"{where}: more halves or trade-off rows than a conversion writes")
        latency = d.get("latency_ms")
        return cls(fast, exact, margin_of(d.get("margin"), f"{where}.margin"),
                   _check(d.get("fitted_on", ""), str, f"{where}.fitted_on")[:300],
                   _share(d.get("recheck_rate"), f"{where}.recheck_rate"), _parity(d.get("parity"), f"{where}.parity"),
                   set_by, margin_of(d.get("widened_by", 0.0), f"{where}.widened_by"),
                   tuple(Half.parse(h, f"{where}.halves[{i}]") for i, h in enumerate(halves)),
                   tuple(GatePoint.parse(r, f"{where}.tradeoff[{i}]") for i, r in enumerate(points)),
                   None if latency is None else float(_check(latency, (int, float), f"{where}.latency_ms")),
                   d.get("measured_on") if isinstance(d.get("measured_on"), str) else None)

    def to_dict(self) -> dict:
        return asdict(self)


def _parity(d, where: str) -> Parity:
    """A parity record; ``passed`` must be a boolean and the counts numbers."""
    parity = _check(d, dict, where)
    legacy = parity.get("failure")
    parity = {k: v for k, v in parity.items() if k != "failure"}
    try:
        record = Parity(**{"failures": [legacy] if legacy else [], **parity})
    except TypeError as e:
        raise ManifestError(f"{where}: {e}") from None
    _check(record.passed, bool, f"{where}.passed")
    _check(record.images, int, f"{where}.images")
    for name in ("only_ref_right", "only_export_right"):
        if getattr(record, name) is not None:
            _count(getattr(record, name), f"{where}.{name}")
    _share(record.top1_agreement, f"{where}.top1_agreement")
    return record


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
    cascades: tuple[Cascade, ...] = ()

    @classmethod
    def for_model(cls, name: str, classes, size: int, source: Source, mode: str = "xception",
                  output: str = "logits", color: str = "RGB"):
        """A manifest for a square NHWC model (RGB or L) with no artifacts yet."""
        return cls(name, tuple(classes), Input(size, size, COLORS[color]), source, Preprocessing(mode, color=color),
                   output)

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
        artifacts = _check(d.get("artifacts", []), list, f"{path}: artifacts")
        parsed = tuple(Artifact.parse(a, f"{path}: artifacts[{i}]") for i, a in enumerate(artifacts))
        if len({a.file for a in parsed}) != len(parsed):
            raise ManifestError(f"{path}: an artifact file is listed twice")
        cascades = _check(d.get("cascades", []), list, f"{path}: cascades")
        if len(cascades) > 16:
            raise ManifestError(f"{path}: {len(cascades)} cascades; a conversion writes at most a few")
        pairs = tuple(Cascade.parse(c, f"{path}: cascades[{i}]") for i, c in enumerate(cascades))
        published = {a.file for a in parsed if a.parity.passed}
        for i, c in enumerate(pairs):
            for role, file in (("fast", c.fast), ("exact", c.exact)):
                if file not in published:
                    why = "failed parity" if file in {a.file for a in parsed} else "is not in the bundle"
                    raise ManifestError(f"{path}: cascades[{i}].{role}: {file} {why}")
        _check(d.get("classes"), list, f"{path}: classes")
        _check(d.get("input"), dict, f"{path}: input")
        info = ModelInfo.parse(d, str(path), name=Path(bundle).name)
        return cls(info.name, info.classes, info.input, Source.parse(d.get("source"), f"{path}: source"),
                   info.preprocessing, info.output, parsed, pairs)

    def to_dict(self) -> dict:
        """The manifest as JSON data, schema first."""
        return {"schema": SCHEMA, "name": self.name, "classes": list(self.classes), "input": asdict(self.input),
                "preprocessing": asdict(self.preprocessing), "output": self.output, "source": self.source.to_dict(),
                "artifacts": [a.to_dict() for a in self.artifacts],
                **({"cascades": [c.to_dict() for c in self.cascades]} if self.cascades else {})}

    def write(self, bundle):
        """Atomically write ``bundle/manifest.json``."""
        write_json(Path(bundle) / FILE, self.to_dict())

    def with_artifact(self, artifact: Artifact) -> "Manifest":
        """This manifest with ``artifact`` added, replacing an entry of the same file; cascades that use a
        file so replaced no longer hold and are dropped."""
        return replace(self, artifacts=(*(a for a in self.artifacts if a.file != artifact.file), artifact),
                       cascades=tuple(c for c in self.cascades if artifact.file not in (c.fast, c.exact)))

    def with_cascades(self, cascades) -> "Manifest":
        """This manifest with its cascades replaced by ``cascades``."""
        return replace(self, cascades=tuple(cascades))

    def published_cascades(self) -> list[Cascade]:
        """The cascades whose own parity passed."""
        return [c for c in self.cascades if c.parity.passed]

    def with_source(self, source: Source) -> "Manifest":
        """This manifest for a changed source model: its artifacts no longer hold and are dropped."""
        if source.sha256 == self.source.sha256:
            return replace(self, source=source)
        return replace(self, source=source, artifacts=(), cascades=())

    @property
    def info(self) -> ModelInfo:
        """The model this bundle holds, as the runtime needs it."""
        return ModelInfo(self.name, self.classes, self.input, self.preprocessing, self.output)

    def spec(self) -> ImageSpec:
        """How this bundle's images become inputs."""
        return self.info.spec

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
    last matched (runtime/checks/verified.py) is not hashed again."""
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
