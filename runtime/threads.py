"""How many CPUs this process may really use: affinity mask and cgroup quota."""

import math
import os
from pathlib import Path


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
