"""Where and with what a report was measured: CPU, cores, GPUs, library versions, date."""

import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess

from runtime.machine.cpuinfo import cpu_info
from runtime.machine.threads import available_cpus

PACKAGES = ("numpy", "pillow", "onnxruntime", "ai-edge-litert", "tensorflow", "keras", "onnx", "tf2onnx", "jax")


def versions() -> dict[str, str]:
    """Installed versions of the libraries that matter (absent ones are left out)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def gpus() -> list[str]:
    """Each NVIDIA GPU as nvidia-smi names it (name, driver, memory); none without nvidia-smi."""
    if not shutil.which("nvidia-smi"):
        return []
    res = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30)
    return [line.strip() for line in res.stdout.splitlines() if line.strip()] if res.returncode == 0 else []


def provenance() -> dict:
    """A dict for the head of every report."""
    cpu = cpu_info()
    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "cpu": cpu.model, "flags": cpu.flags, "cores": os.cpu_count(), "usable_cpus": available_cpus(),
            "gpus": gpus(), "python": platform.python_version(), "platform": platform.platform(),
            "versions": versions()}
