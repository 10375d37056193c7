"""GPU energy from NVML for one of the actor's own physical devices (several: :mod:`ecosweep.meters.multi`).

* Device: found by UUID (``"GPU-" + torch.cuda.get_device_properties(0).uuid``), because
  NVML ignores ``CUDA_VISIBLE_DEVICES`` and indexes all GPUs of the host.
* Energy: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ) read at both window edges; it
  advances every 100 ms, so windows of >= 5 s keep its quantisation error <= 2 %.
  Where the counter is unsupported (pre-Volta), the trapezoidal integral of the
  sampled power is used instead and labelled ``energy_source=nvml_sampled``.
* Samples: a separate process (:mod:`ecosweep.meters.sampler`) records instantaneous
  power at ``sample_hz`` and slower device state; each window's samples give its peak
  power, the cross-check integral, utilisation, clocks, temperature, clock-event
  reasons and foreign compute processes.
* Device reads and errors: through :class:`~ecosweep.meters.nvml_device.NvmlDevice`, where every
  NVML error is translated into a :class:`MeterError` with a remedy, and nowhere else.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ecosweep.errors import MeterError
from ecosweep.meters.base import Meter, WindowReading
from ecosweep.meters.nvml_device import NvmlDevice

NAN = math.nan

# Clock-event (throttle) reason bits, from nvml.h.
CLOCK_EVENT_REASONS = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
    0x10: "sync_boost", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting",
}
NOT_THROTTLING = {"gpu_idle"}


def reason_names(mask: int) -> List[str]:
    return [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]


def trapezoid_energy_j(times: Sequence[float], watts: Sequence[float], t0: float, t1: float) -> float:
    """Integral of linearly interpolated power over [t0, t1], joules; NaN without coverage (no sample
    within 0.5 s of either edge). Samples must be in time order, as the sampler takes them."""
    import numpy as np

    pts = [(t, w) for t, w in zip(times, watts) if w is not None]
    if len(pts) < 2 or pts[0][0] > t0 + 0.5 or pts[-1][0] < t1 - 0.5:
        return NAN
    t, w = np.array(pts, dtype=float).T
    inner = (t > t0) & (t < t1)
    grid = np.concatenate(([t0], t[inner], [t1]))
    power = np.interp(grid, t, w)  # flat beyond the first and last sample
    return float(np.sum(np.diff(grid) * (power[1:] + power[:-1]) / 2))


def _mean(values: List[Any]) -> float:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else NAN


class NvmlMeter(Meter):
    """NVML energy for one GPU, with a sampler process while started."""

    def __init__(self, gpu_uuid: Optional[str], sample_hz: float = 20.0,
                 synchronize: Callable[[], None] = lambda: None, nvml_module: str = "pynvml",
                 align_to_counter_ticks: bool = False, **kw: Any):
        super().__init__(synchronize, **kw)
        self.align = align_to_counter_ticks
        if not gpu_uuid:
            raise MeterError("the NVML meter needs the GPU's UUID; none was detected for this cell")
        self.device = NvmlDevice(gpu_uuid, nvml_module)
        self.nvml_module = nvml_module
        self.uuid = gpu_uuid
        self.sample_hz = sample_hz
        self.energy_source = "nvml_counter" if self.device.has_energy_counter() else "nvml_sampled"
        self.align = self.align and self.energy_source == "nvml_counter"  # steps exist only on a counter
        self.own_pids = {os.getpid()}
        self._proc: Optional[subprocess.Popen] = None
        self._samples: List[Dict[str, Any]] = []
        self._window_start_index = 0
        self._e0: Optional[int] = None
        self._t0_unix = 0.0
        self._cpu0: Tuple[float, float] = (0.0, 0.0)

    # --- sampler process -------------------------------------------------------------
    def start(self) -> None:
        if self._proc is not None:
            return
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ecosweep.meters.sampler", self.uuid, str(self.sample_hz), self.nvml_module],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1)
        ready = self._proc.stdout.readline().strip()
        if ready != "READY":
            self.close()
            raise MeterError(f"the NVML sampler process did not start (said {ready!r})")
        self._identify_own_processes()

    def _identify_own_processes(self) -> None:
        """Our compute process ids as NVML reports them (host PIDs inside a container)."""
        pids = self._compute_pids()
        if pids and os.getpid() not in pids and len(pids) == 1:
            self.own_pids = set(pids)  # a PID namespace: the only process present is this one

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.stdin.write("stop\n")
                proc.stdin.flush()
                self._samples += self._read_batch(proc)
                proc.wait(timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass

    @property
    def sampler_pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    @staticmethod
    def _read_batch(proc: subprocess.Popen) -> List[Dict[str, Any]]:
        batch = []
        for line in proc.stdout:
            line = line.strip()
            if line == "END":
                break
            if line:
                batch.append(json.loads(line))
        return batch

    def _flush(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.stdin.write("flush\n")
        self._proc.stdin.flush()
        self._samples += self._read_batch(self._proc)

    def _sampler_cpu_s(self) -> float:
        if self._proc is None:
            return NAN
        try:
            with open(f"/proc/{self._proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return NAN

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
        self._flush()
        self._window_start_index = max(0, len(self._samples) - 1)  # the sample just before t0
        self._foreign_at_start = set(self._compute_pids()) - self.own_pids
        self._cpu0 = (self._sampler_cpu_s(), time.monotonic())
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
        self._flush()  # takes one more sample, after t1
        cpu1 = (self._sampler_cpu_s(), time.monotonic())
        window = self._samples[self._window_start_index:]
        inside = [s for s in window if self._t0_unix <= s["t"] <= t1_unix]
        times, watts = [s["t"] for s in window], [s["power_w"] for s in window]
        sampled = trapezoid_energy_j(times, watts, self._t0_unix, t1_unix)
        if self._e0 is not None and e1 is not None:
            energy = (e1 - self._e0) / 1000.0
            if tail_until is not None and tail_until > t1_unix:
                tail = trapezoid_energy_j(times, watts, t1_unix, tail_until)
                energy -= tail if math.isfinite(tail) else 0.0
        else:
            energy = sampled
        reasons = 0
        foreign = set(self._foreign_at_start)
        for s in window:
            reasons |= int(s.get("clock_event_reasons") or 0)
            foreign |= set(s.get("pids") or []) - self.own_pids
        names = tuple(n for n in reason_names(reasons) if n not in NOT_THROTTLING)
        temps = [s.get("temperature_c") for s in window if s.get("temperature_c") is not None]
        powers = [s["power_w"] for s in inside if s.get("power_w") is not None]
        stats = {
            "gpu_util_pct_mean": _mean([s.get("gpu_util_pct") for s in inside]),
            "mem_util_pct_mean": _mean([s.get("mem_util_pct") for s in inside]),
            "memory_used_mb_max": max([s["memory_used_mb"] for s in window if "memory_used_mb" in s], default=NAN),
            "sm_clock_mhz_mean": _mean([s.get("sm_clock_mhz") for s in inside]),
            "mem_clock_mhz_mean": _mean([s.get("mem_clock_mhz") for s in inside]),
            "temperature_c_start": temps[0] if temps else NAN,
            "temperature_c_max": max(temps, default=NAN),
            "temperature_c_mean": _mean(temps),
            "sampler_cpu_pct": 100.0 * (cpu1[0] - self._cpu0[0]) / max(1e-9, cpu1[1] - self._cpu0[1]),
        }
        return WindowReading(
            seconds=seconds, start_unix_s=start_unix_s, energy_j=energy, energy_source=self.energy_source,
            power_w_peak=max(powers, default=NAN), sampled_energy_j=sampled, samples=len(inside),
            device_stats=stats, throttle_reasons=names, foreign_pids=tuple(sorted(foreign)),
            device_energy_j=(energy,), device_uuids=(self.uuid,))

    def trace(self):
        """All samples since start() as a table (one row per sample; times in Unix seconds)."""
        import pyarrow as pa

        self._flush()
        cols = ["t", "power_w", "energy_mj", "gpu_util_pct", "mem_util_pct", "memory_used_mb", "sm_clock_mhz",
                "mem_clock_mhz", "temperature_c", "clock_event_reasons"]
        names = {"t": "t_unix_s", "energy_mj": "energy_counter_mj"}
        data = {names.get(c, c): [s.get(c) for s in self._samples] for c in cols}
        data["compute_pids"] = [",".join(map(str, s["pids"])) if s.get("pids") is not None else None
                                for s in self._samples]
        types = {"t_unix_s": pa.float64(), "energy_counter_mj": pa.int64(), "clock_event_reasons": pa.int64(),
                 "compute_pids": pa.string()}
        return pa.table({k: pa.array(v, type=types.get(k, pa.float64())) for k, v in data.items()})
