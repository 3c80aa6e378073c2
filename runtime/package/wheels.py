"""A slim folder of the wheels one backend needs at run time, for a target platform, from the registry.

``pip install --no-deps --only-binary=:all: --platform ... --target DIR`` with exactly the packages that
inference imports (numpy, Pillow and the backend; onnxruntime's flatbuffers, packaging, protobuf and
LiteRT's tqdm, protobuf, ml_dtypes are never imported by it), at the versions installed here, then the
parts inference never loads are removed. A test runs the result from a clean ``sys.path``.
"""

import importlib.metadata
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import BackendUnavailable

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


def install(fmt: str, dest: Path, target: Target) -> Installed:
    """Install ``fmt``'s run-time wheels for ``target`` into the empty folder ``dest``, pruned."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--no-compile", "--only-binary=:all:", "--implementation", "cp", "--python-version", target.python,
           "--target", str(dest), *(f"--platform={p}" for p in target.platforms()), *pins(fmt)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        why = next((line for line in res.stderr.splitlines() if line.startswith("ERROR")), res.stderr.strip())
        raise BackendUnavailable(f"no {fmt} wheel set for Python {target.python} on {target.arch} with glibc <= "
                                 f"{target.glibc}: {why.removeprefix('ERROR: ')[:200]}")
    prune(dest)
    versions = {d.metadata["Name"]: d.version for d in importlib.metadata.distributions(path=[str(dest)])}
    return Installed(dest, versions, folder_bytes(dest))
