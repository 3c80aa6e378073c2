"""How many CPUs this process may really use (affinity mask, cgroup quota), and how inference shares them:
the deployment profiles, chosen by ``benchmarks.shared_cores`` (README, "Threads on shared cores")."""

import math
import os
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import ConfigError


def cgroup_cpus(root=Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup v2 ``cpu.max`` (or v1 quota/period), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu/cpu.cfs_quota_us").read_text())
        period = int((root / "cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs usable by this process: affinity, capped by the cgroup quota, at least 1."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpus()
    return max(1, min(n, math.ceil(quota)) if quota else n)


@dataclass(frozen=True)
class Profile:
    """Threads per format (None: every usable CPU) and whether ONNX Runtime's idle threads spin for work."""

    threads: dict
    spinning: bool
    why: str

    def threads_for(self, fmt: str) -> int | None:
        """The thread count this profile gives ``fmt`` (None: every usable CPU)."""
        return self.threads.get(fmt)


# Measured by benchmarks.shared_cores (README, "Threads on shared cores"): beside one busy process, ONNX
# Runtime with every core and no spinning beats one thread, while LiteRT is best with one thread.
PROFILES = {
    "server": Profile({}, True, "cores to itself: spinning saves the wake-up of every parallel section"),
    "lambda": Profile({}, False, "a fraction of a vCPU below 1769 MB: spinning would burn the quota"),
    "shared": Profile({"tflite": 1}, False, "other processes on the cores: spinning threads steal them and "
                                            "wait on a preempted peer"),
}


def profile(name: str | None) -> Profile:
    """The named profile, else ``$RUNTIME_PROFILE``, else server; ConfigError for an unknown name."""
    name = name or os.environ.get("RUNTIME_PROFILE") or "server"
    if name not in PROFILES:
        raise ConfigError(f"profile {name!r}: known profiles are {', '.join(PROFILES)}")
    return PROFILES[name]
