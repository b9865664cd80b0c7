"""What machine a benchmark ran on, printed with every result."""

from __future__ import annotations

import os
import platform
import resource
import statistics
from collections.abc import Sequence


def describe() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    return f"{platform.node()} | {cpu} | {os.cpu_count()} cores | {mem_gib:.0f} GiB"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
