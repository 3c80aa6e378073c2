"""The bundle's ``manifest.json`` (schema 1): classes, input, preprocessing, source, artifacts."""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runtime.errors import RuntimeToolkitError
from runtime.files import write_json

SCHEMA = 1
FILE = "manifest.json"


class ManifestError(RuntimeToolkitError):
    """A manifest is missing, unreadable or of another schema."""


@dataclass
class Manifest:
    """One bundle's description, as fixed in DESIGN.md."""

    name: str
    classes: list[str]
    input: dict
    source: dict
    preprocessing: dict = field(default_factory=lambda: {"mode": "xception", "resize": "nearest",
                                                         "color": "RGB"})
    output: str = "logits"
    artifacts: list[dict] = field(default_factory=list)
    schema: int = SCHEMA

    @classmethod
    def for_model(cls, name: str, classes, size: int, source: dict):
        """A manifest for a square NHWC RGB model with no artifacts yet."""
        return cls(name, list(classes), {"height": size, "width": size, "channels": 3, "layout": "NHWC"},
                   source)

    @classmethod
    def read(cls, bundle):
        """Load ``bundle/manifest.json``; raise ManifestError when it is absent or foreign."""
        path = Path(bundle) / FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ManifestError(f"cannot read {path}: {e}") from None
        if data.get("schema") != SCHEMA:
            raise ManifestError(f"{path}: schema {data.get('schema')!r}, expected {SCHEMA}")
        try:
            return cls(**data)
        except TypeError as e:
            raise ManifestError(f"{path}: {e}") from None

    def write(self, bundle):
        """Atomically write ``bundle/manifest.json``."""
        data = asdict(self)
        write_json(Path(bundle) / FILE, {"schema": data.pop("schema"), **data})
