"""How many CPUs this process may use: its affinity, capped by its cgroup's CPU quota.

In a Kubernetes pod ``os.sched_getaffinity`` counts the node's CPUs (64 on a large node) while the
pod's ``limits.cpu`` is enforced as a CFS quota (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us`` in
v1): a pool sized by the former runs far more threads than the pod gets time for.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def _quota(root: Path) -> float | None:
    """The cgroup's CPU quota in CPUs, or None when it has none (or none can be read)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # cgroup v2: "max 100000" = none
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())  # cgroup v1: -1 = none
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def usable_cpus(root: Path = CGROUP) -> int:
    """At least 1: the CPUs this process may run on, at most its quota rounded up."""
    cpus = len(os.sched_getaffinity(0))
    quota = _quota(root)
    return max(1, min(cpus, math.ceil(quota)) if quota is not None else cpus)
