"""Facts about where a cell runs: host, libraries, device, and host CPU load.

Host CPU steal and utilisation come from deltas of psutil's CPU times over a window; they
explain much of the noise of launch-bound (CPU-bound) decoding on shared hosts.
"""

from __future__ import annotations

import math
import os
import platform
import socket
from dataclasses import dataclass
from importlib import metadata
from typing import Dict, Optional

from ecosweep import __version__


def _version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> Dict[str, Optional[str]]:

    return {
        "python_version": platform.python_version(),
        "torch_version": _version("torch"),
        "transformers_version": _version("transformers"),
        "bitsandbytes_version": _version("bitsandbytes"),
        "ecosweep_version": __version__,
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_facts() -> Dict[str, object]:
    return {"host": socket.gethostname(), "cpu_count": os.cpu_count(), **library_versions()}


@dataclass(frozen=True)
class CpuTimes:
    """Host CPU time since boot, summed over all CPUs, in seconds (psutil)."""

    busy: float
    steal: float
    total: float


def read_cpu_times() -> Optional[CpuTimes]:
    """The host's CPU times (psutil.cpu_times), or None where they cannot be read. Guest time is already
    inside user and nice, so it is left out of the total; fields a platform lacks count as zero."""
    import psutil

    try:
        t = psutil.cpu_times()
    except (OSError, RuntimeError):
        return None

    def field(name: str) -> float:
        return float(getattr(t, name, 0.0))

    busy = field("user") + field("nice") + field("system") + field("irq") + field("softirq")
    steal = field("steal")
    return CpuTimes(busy=busy, steal=steal, total=busy + steal + field("idle") + field("iowait"))


def cpu_window_stats(before: Optional[CpuTimes], after: Optional[CpuTimes]) -> Dict[str, float]:
    """Busy and steal percentages between two readings, plus the 1-minute load average."""
    stats = {"cpu_util_pct": math.nan, "cpu_steal_pct": math.nan, "cpu_load_1m": math.nan}
    if before and after and after.total > before.total:
        span = after.total - before.total
        stats["cpu_util_pct"] = 100.0 * (after.busy - before.busy) / span
        stats["cpu_steal_pct"] = 100.0 * (after.steal - before.steal) / span
    try:
        stats["cpu_load_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    return stats
