"""Where and with what a report was measured: CPU, cores, library versions, date."""

import datetime
import importlib.metadata
import os
import platform

from runtime.cpuinfo import cpu_info
from runtime.threads import available_cpus

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


def provenance() -> dict:
    """A dict for the head of every report."""
    cpu = cpu_info()
    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "cpu": cpu.model, "flags": cpu.flags, "cores": os.cpu_count(), "usable_cpus": available_cpus(),
            "python": platform.python_version(), "platform": platform.platform(), "versions": versions()}
