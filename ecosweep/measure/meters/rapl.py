"""CPU package energy from Linux RAPL counters (``/sys/class/powercap/intel-rapl:*``).

Each package domain has a monotonically increasing ``energy_uj`` counter (microjoules)
that wraps at ``max_energy_range_uj``. The window energy is the sum over packages of
the wrap-corrected deltas. Where no counter is readable (VMs, containers, non-root on
recent kernels) the meter factory falls back to no energy, labelled ``none``.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from ecosweep.errors import MeterError
from ecosweep.measure.meters.base import Meter, WindowReading

POWERCAP_ROOT = "/sys/class/powercap"


@dataclass(frozen=True)
class RaplDomain:
    name: str
    energy_path: str
    max_range_uj: int


def find_domains(root: Optional[str] = None) -> List[RaplDomain]:
    """Top-level package domains whose counters this process can read."""
    root = root or POWERCAP_ROOT
    domains = []
    for zone in sorted(glob.glob(os.path.join(root, "intel-rapl:*"))):
        if os.path.basename(zone).count(":") != 1:  # skip sub-zones (core, uncore, dram)
            continue
        energy = os.path.join(zone, "energy_uj")
        try:
            with open(energy) as f:
                int(f.read())
            with open(os.path.join(zone, "max_energy_range_uj")) as f:
                max_range = int(f.read())
            with open(os.path.join(zone, "name")) as f:
                name = f.read().strip()
        except (OSError, ValueError):
            continue
        domains.append(RaplDomain(name, energy, max_range))
    return domains


def rapl_available(root: Optional[str] = None) -> bool:
    return bool(find_domains(root))


class RaplMeter(Meter):
    energy_source = "rapl"

    def __init__(self, synchronize: Callable[[], None] = lambda: None, root: Optional[str] = None, **kw):
        super().__init__(synchronize, **kw)
        self.domains = find_domains(root)
        if not self.domains:
            raise MeterError(f"no readable RAPL package counters under {root or POWERCAP_ROOT}")
        self._start: Dict[str, int] = {}

    def _read(self) -> Dict[str, int]:
        values = {}
        for d in self.domains:
            with open(d.energy_path) as f:
                values[d.energy_path] = int(f.read())
        return values

    def _begin(self) -> None:
        self._start = self._read()

    def _end(self, seconds: float, start_unix_s: float) -> WindowReading:
        end = self._read()
        total_uj = 0
        for d in self.domains:
            delta = end[d.energy_path] - self._start[d.energy_path]
            if delta < 0:  # the counter wrapped
                delta += d.max_range_uj
            total_uj += delta
        return WindowReading(seconds=seconds, start_unix_s=start_unix_s, energy_j=total_uj / 1e6,
                             energy_source=self.energy_source)
