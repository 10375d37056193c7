"""GPU energy from NVML for one of the actor's own physical devices (several: :mod:`ecosweep.measure.meters.multi`).

* Device: found by UUID (``"GPU-" + torch.cuda.get_device_properties(0).uuid``), because
  NVML ignores ``CUDA_VISIBLE_DEVICES`` and indexes all GPUs of the host.
* Energy: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ) read at both window edges; it
  advances every 100 ms, so windows of >= 5 s keep its quantisation error <= 2 %.
  Where the counter is unsupported (pre-Volta), the trapezoidal integral of the
  sampled power is used instead and labelled ``energy_source=nvml_sampled``.
* Samples: the power timeline (:mod:`ecosweep.measure.meters.power_timeline`, a sampler process)
  records instantaneous power at ``sample_hz`` and slower device state; each window's
  samples give its peak power, the cross-check integral, utilisation, clocks,
  temperature, clock-event reasons and foreign compute processes.
* Device reads and errors: through :class:`~ecosweep.measure.meters.nvml_device.NvmlDevice`, where every
  NVML error is translated into a :class:`MeterError` with a remedy, and nowhere else.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable, List, Optional, Tuple

from ecosweep.errors import MeterError
from ecosweep.measure.meters.base import Meter, WindowReading
from ecosweep.measure.meters.nvml_device import NvmlDevice
from ecosweep.measure.meters.power_timeline import PowerTimeline
from ecosweep.measure.rows import ratio

NAN = math.nan


class NvmlMeter(Meter):
    """NVML energy windows for one GPU (counter reads, aligned to its steps where asked), with its power
    timeline sampled while started."""

    def __init__(self, gpu_uuid: Optional[str], sample_hz: float = 20.0,
                 synchronize: Callable[[], None] = lambda: None, nvml_module: str = "pynvml",
                 align_to_counter_ticks: bool = False, **kw: Any):
        super().__init__(synchronize, **kw)
        if not gpu_uuid:
            raise MeterError("the NVML meter needs the GPU's UUID; none was detected for this cell")
        self.device = NvmlDevice(gpu_uuid, nvml_module)
        self.uuid = gpu_uuid
        self.timeline = PowerTimeline(gpu_uuid, sample_hz, nvml_module)
        self.energy_source = "nvml_counter" if self.device.has_energy_counter() else "nvml_sampled"
        self.align = align_to_counter_ticks and self.energy_source == "nvml_counter"  # steps exist only on a counter
        self.own_pids = {os.getpid()}
        self._window_start_index = 0
        self._foreign_at_start: set = set()
        self._e0: Optional[int] = None
        self._t0_unix = 0.0
        self._cpu0: Tuple[float, float] = (0.0, 0.0)
        self._last_window: Optional[Tuple[Any, float]] = None  # (its samples, counter / sampled energy)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.timeline.start()
        self._identify_own_processes()

    def _identify_own_processes(self) -> None:
        """Our compute process ids as NVML reports them (host PIDs inside a container)."""
        pids = self._compute_pids()
        if pids and os.getpid() not in pids and len(pids) == 1:
            self.own_pids = set(pids)  # a PID namespace: the only process present is this one

    def close(self) -> None:
        self.timeline.close()

    @property
    def sampler_pid(self) -> Optional[int]:
        return self.timeline.pid

    # --- direct reads --------------------------------------------------------------------
    def _compute_pids(self) -> List[int]:
        return self.device.compute_pids() or []

    def _energy_mj(self) -> Optional[int]:
        return self.device.energy_mj() if self.energy_source == "nvml_counter" else None

    def _await_tick(self, timeout_s: float = 0.3) -> Tuple[Optional[int], float]:
        """Poll the counter until it advances; returns (value, Unix time seen). The counter
        moves in steps (every 100 ms on Ampere/Hopper), so a value read just after a step is
        current, while one read at a random moment is up to a step stale."""
        first = self._energy_mj()
        deadline = time.monotonic() + timeout_s
        while first is not None and time.monotonic() < deadline:
            value = self._energy_mj()
            if value != first:
                return value, time.time()
            time.sleep(0.001)
        return first, time.time()

    def device_temperature_c(self) -> float:
        temperature = self.device.temperature_c()
        return NAN if temperature is None else temperature

    # --- windows -------------------------------------------------------------------------
    def _begin(self) -> None:
        self._window_start_index = self.timeline.mark()  # the sample just before t0
        self._foreign_at_start = set(self._compute_pids()) - self.own_pids
        self._cpu0 = (self.timeline.sampler_cpu_s(), time.monotonic())
        if self.align:
            self._e0, self._t0_unix = self._await_tick()  # the window opens on a fresh count
        else:
            self._t0_unix = time.time()
            self._e0 = self._energy_mj()

    def _end(self, seconds: float, start_unix_s: float) -> WindowReading:
        t1_unix = self._t0_unix + seconds
        tail_until: Optional[float] = None
        if self.align:
            # wait for the count that includes the window's last step, then take off the short
            # tail between the window's end and that step, from the sampled power
            e1, tail_until = self._await_tick()
        else:
            e1 = self._energy_mj()
        samples = self.timeline.window(self._window_start_index, self._t0_unix, t1_unix)
        cpu1 = (self.timeline.sampler_cpu_s(), time.monotonic())
        sampled = samples.energy_j()
        if self._e0 is not None and e1 is not None:
            energy = (e1 - self._e0) / 1000.0
            if tail_until is not None and tail_until > t1_unix:
                tail = samples.energy_j(t1_unix, tail_until)
                energy -= tail if math.isfinite(tail) else 0.0
        else:
            energy = sampled
        stats = dataclasses.replace(
            samples.device_stats(),
            sampler_cpu_pct=100.0 * (cpu1[0] - self._cpu0[0]) / max(1e-9, cpu1[1] - self._cpu0[1]))
        foreign = self._foreign_at_start | samples.foreign_pids(self.own_pids)
        self._last_window = (samples, ratio(energy, sampled))
        return WindowReading(
            seconds=seconds, start_unix_s=start_unix_s, energy_j=energy, energy_source=self.energy_source,
            power_w_peak=samples.power_w_peak(), sampled_energy_j=sampled, samples=len(samples.inside),
            device_stats=stats, throttle_reasons=samples.throttle_reasons(), foreign_pids=tuple(sorted(foreign)),
            device_energy_j=(energy,), device_uuids=(self.uuid,))

    def trace(self):
        """All samples since start() as a table (one row per sample; times in Unix seconds)."""
        return self.timeline.table()

    def energy_between_j(self, t0_unix_s: float, t1_unix_s: float) -> Tuple[float, str]:
        """The sampled power's integral over [t0, t1], scaled by the last window's counter-to-sampled ratio (the
        counter has no reading inside a window; the two agree within ~2 % over a whole window: DESIGN)."""
        if self._last_window is None:
            return NAN, "none"
        samples, scale = self._last_window
        sampled = samples.energy_j(t0_unix_s, t1_unix_s)
        if math.isfinite(scale):
            return sampled * scale, "nvml_sampled_scaled_to_counter"
        return sampled, "nvml_sampled"
