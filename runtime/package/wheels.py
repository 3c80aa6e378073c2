"""A slim folder of the wheels one backend needs at run time, for a target platform, from the registry.

``pip install --no-deps --only-binary=:all: --platform ... --target DIR`` with exactly the packages that
inference imports (numpy, Pillow and the backend; onnxruntime's flatbuffers, packaging, protobuf and
LiteRT's tqdm, protobuf, ml_dtypes are never imported by it), then the parts inference never loads are
removed. A test runs the result from a clean ``sys.path``.

Every wheel is pinned by version and sha256 in ``wheels.lock.json`` beside this module, per backend, CPU
and Python (``python -m runtime.package lock`` writes it from the versions installed here); pip installs
with ``--require-hashes``, so a changed or substituted wheel is refused, and a target the lock does not
hold is refused in one line.
"""

import hashlib
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import BackendUnavailable, ModelError

LOCK = Path(__file__).with_name("wheels.lock.json")
LOCKED = {"3.11": "2.28", "3.12": "2.34"}  # Python -> the glibc its wheels are picked for (Lambda 3.12: AL2023)

PACKAGES = {"onnx": ("onnxruntime", "numpy", "pillow"), "tflite": ("ai-edge-litert", "numpy", "pillow")}
ARCHES = {"x86_64": "x86_64", "arm64": "aarch64"}
# What inference never loads: tests, typing stubs, build tools, numpy's lazily imported random, fft,
# polynomial and masked-array modules and its SIMD test module, the ORT C library the Python module does not
# link (its extension is self-contained), model tools, LiteRT's WebGPU accelerator, Pillow's AVIF and fonts.
PRUNE = ("bin", "**/tests", "**/*.pyi", "numpy/f2py", "numpy/distutils", "numpy/_pyinstaller", "numpy/random",
         "numpy/fft", "numpy/polynomial", "numpy/ma", "numpy/_core/_simd.*", "numpy/_core/_multiarray_tests.*",
         "onnxruntime/capi/libonnxruntime.so*", "onnxruntime/transformers", "onnxruntime/quantization",
         "onnxruntime/tools", "onnxruntime/datasets", "ai_edge_litert/libLiteRtWebGpuAccelerator.so",
         "ai_edge_litert/tools", "ai_edge_litert/vendors", "PIL/_avif.*", "pillow.libs/libavif*",
         "PIL/_imagingft.*", "pillow.libs/libfreetype*", "pillow.libs/libharfbuzz*", "pillow.libs/libbrotli*",
         "PIL/_imagingtk.*")


@dataclass(frozen=True)
class Target:
    """Where the folder will run: CPU architecture, Python version and the highest glibc there."""

    arch: str = "x86_64"
    python: str = "3.11"
    glibc: str = "2.28"

    @classmethod
    def here(cls) -> "Target":
        """This machine: its architecture, this interpreter's version, its glibc."""
        arch = {"aarch64": "arm64"}.get(platform.machine(), platform.machine())
        return cls(arch, f"{sys.version_info.major}.{sys.version_info.minor}", platform.libc_ver()[1] or "2.17")

    def platforms(self) -> list[str]:
        """pip ``--platform`` tags this target runs: manylinux 2.17 up to its glibc."""
        major, minor = (int(x) for x in self.glibc.split(".")[:2])
        if (major, minor) < (2, 17):
            raise BackendUnavailable(f"glibc {self.glibc}: manylinux wheels need at least 2.17")
        arch = ARCHES[self.arch]
        return [f"manylinux_2_{m}_{arch}" for m in range(17, minor + 1)] + [f"manylinux2014_{arch}"]


@dataclass(frozen=True)
class Installed:
    """A slim folder: its packages with versions, and its size in bytes."""

    path: Path
    versions: dict
    bytes: int


def pins(fmt: str) -> list[str]:
    """The packages of ``fmt`` at the versions installed here (those the tests ran), else unpinned."""
    out = []
    for name in PACKAGES[fmt]:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return out


def folder_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and not f.is_symlink())


def prune(root: Path):
    """Remove what inference never loads (PRUNE) from an installed folder."""
    for pattern in PRUNE:
        for path in list(root.glob(pattern)):
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def lock_key(fmt: str, target: Target) -> str:
    """The lock's name for one wheel set."""
    return f"{fmt} {target.arch} python{target.python}"


def locked(fmt: str, target: Target, lock: Path | None = None) -> dict[str, str]:
    """``name==version -> sha256`` of ``fmt``'s wheels for ``target`` (from LOCK unless ``lock``); ModelError
    when the lock lacks them."""
    lock = lock or LOCK
    try:
        sets = json.loads(lock.read_text())["sets"]
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"{lock}: unreadable wheel lock ({e})") from None
    if lock_key(fmt, target) not in sets:
        raise ModelError(f"no locked wheels for {lock_key(fmt, target)} in {lock.name}: locked are "
                         f"{', '.join(sorted(sets))}; `python -m runtime.package lock` adds what is installed here")
    return sets[lock_key(fmt, target)]


def pip_wheels(verb: str, fmt: str, dest: Path, target: Target, requirements: list[str]) -> subprocess.CompletedProcess:
    """``pip download`` or ``pip install --target`` of ``requirements`` for ``target``, no dependencies."""
    where = ["-d", str(dest)] if verb == "download" else ["--target", str(dest), "--no-compile"]
    return subprocess.run([sys.executable, "-m", "pip", verb, "--quiet", "--disable-pip-version-check", "--no-deps",
                           "--only-binary=:all:", "--implementation", "cp", "--python-version", target.python,
                           *where, *(f"--platform={p}" for p in target.platforms()), *requirements],
                          capture_output=True, text=True, check=False)


def write_lock(targets: list[Target], lock: Path | None = None) -> dict:
    """Download each backend's wheels (at the versions installed here) for each target and record their
    sha256; the lock as written."""
    import tempfile

    sets = {}
    for fmt in PACKAGES:
        for target in targets:
            with tempfile.TemporaryDirectory() as tmp:
                res = pip_wheels("download", fmt, Path(tmp), target, pins(fmt))
                if res.returncode != 0:
                    continue  # no wheel set for this target (an old glibc, a Python without wheels)
                wheels = sorted(Path(tmp).glob("*.whl"))
                sets[lock_key(fmt, target)] = {
                    pin: hashlib.sha256(next(w for w in wheels if w.name.lower().startswith(
                        pin.split("==")[0].replace("-", "_").lower() + "-")).read_bytes()).hexdigest()
                    for pin in pins(fmt)}
    (lock or LOCK).write_text(json.dumps({"glibc": LOCKED, "sets": dict(sorted(sets.items()))}, indent=1) + "\n")
    return sets


def install(fmt: str, dest: Path, target: Target) -> Installed:
    """Install ``fmt``'s locked run-time wheels for ``target`` into the empty folder ``dest`` (hashes
    required), pruned."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt") as reqs:
        reqs.write("".join(f"{pin} --hash=sha256:{digest}\n" for pin, digest in locked(fmt, target).items()))
        reqs.flush()
        res = pip_wheels("install", fmt, dest, target, ["--require-hashes", "-r", reqs.name])
    if res.returncode != 0:
        lines = res.stderr.splitlines()
        at = next((i for i, line in enumerate(lines) if "Expected sha256" in line), None)
        if at is not None and 0 < at < len(lines) - 1:
            wheel, got = lines[at - 1].strip().split(" from ")[0], lines[at + 1].split()[-1]
            raise ModelError(f"{wheel} for {target.arch} python{target.python}: its sha256 {got[:16]}... is not the "
                             f"one in {LOCK.name}: refused")
        why = next((line for line in res.stderr.splitlines() if line.startswith("ERROR")), res.stderr.strip())
        raise BackendUnavailable(f"no {fmt} wheel set for Python {target.python} on {target.arch} with glibc <= "
                                 f"{target.glibc}: {why.removeprefix('ERROR: ')[:200]}")
    prune(dest)
    versions = {d.metadata["Name"]: d.version for d in importlib.metadata.distributions(path=[str(dest)])}
    return Installed(dest, versions, folder_bytes(dest))
