"""A meter whose device draws a known power at every instant: stands in for a GPU's NVML counter and sampler, so that
a window's energy and a stretch of it have closed-form values a test can compute by hand."""

from __future__ import annotations

import time
from typing import Callable, Tuple

from ecosweep.measure.meters.base import Meter, WindowReading


class FakePowerMeter(Meter):
    """``power_w(t)`` watts at Unix time ``t``; energies integrated numerically (1 ms steps)."""

    energy_source = "fake_counter"

    def __init__(self, power_w: Callable[[float], float], clock: Callable[[], float] = time.perf_counter):
        super().__init__(clock=clock)
        self.power_w = power_w
        self._start_unix = 0.0

    def integral_j(self, t0: float, t1: float, step: float = 1e-3) -> float:
        n = max(1, int((t1 - t0) / step))
        dt = (t1 - t0) / n
        return sum(self.power_w(t0 + (i + 0.5) * dt) for i in range(n)) * dt

    def _begin(self) -> None:
        self._start_unix = time.time()

    def _end(self, seconds: float, start_unix_s: float) -> WindowReading:
        energy = self.integral_j(self._start_unix, self._start_unix + seconds)
        return WindowReading(seconds=seconds, start_unix_s=start_unix_s, energy_j=energy,
                             energy_source=self.energy_source, sampled_energy_j=energy)

    def energy_between_j(self, t0_unix_s: float, t1_unix_s: float) -> Tuple[float, str]:
        return self.integral_j(t0_unix_s, t1_unix_s), "fake_sampled"
