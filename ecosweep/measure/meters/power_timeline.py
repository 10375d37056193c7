"""A GPU's power timeline: the sampler process (:mod:`ecosweep.measure.meters.sampler`) that records instantaneous
power and slower device state at ``sample_hz``, the samples it sent, and what a window's samples say —
the trapezoid integral that cross-checks (or, without a counter, replaces) the energy counter, peak power,
utilisation, clocks, temperatures, clock-event reasons and foreign compute processes.

Sample times are Unix seconds (``t``); power in watts, memory in MB, clocks in MHz, temperatures in °C.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ecosweep.errors import MeterError
from ecosweep.measure.meters.base import DeviceStats

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


@dataclass(frozen=True)
class WindowSamples:
    """The samples of one window [t0, t1]: ``around`` from the sample just before t0 to the one just after t1
    (for the integral and for state seen at any time), ``inside`` those within [t0, t1]."""

    around: List[Dict[str, Any]]
    inside: List[Dict[str, Any]]
    t0: float
    t1: float

    def energy_j(self, t0: Optional[float] = None, t1: Optional[float] = None) -> float:
        """The sampled power's integral over [t0, t1] (default: the window), joules."""
        return trapezoid_energy_j([s["t"] for s in self.around], [s["power_w"] for s in self.around],
                                  self.t0 if t0 is None else t0, self.t1 if t1 is None else t1)

    def power_w_peak(self) -> float:
        return max((s["power_w"] for s in self.inside if s.get("power_w") is not None), default=NAN)

    def throttle_reasons(self) -> Tuple[str, ...]:
        """Clock-event reasons active at any sample, less those that are not throttling (idle)."""
        mask = 0
        for s in self.around:
            mask |= int(s.get("clock_event_reasons") or 0)
        return tuple(n for n in reason_names(mask) if n not in NOT_THROTTLING)

    def foreign_pids(self, own_pids: Set[int]) -> Set[int]:
        """Compute processes other than ``own_pids`` seen on the device at any sample."""
        return {pid for s in self.around for pid in (s.get("pids") or [])} - own_pids

    def device_stats(self) -> DeviceStats:
        """Utilisation, memory, clocks and temperatures (not the sampler's own CPU: the meter adds it)."""
        around, inside = self.around, self.inside
        temps = [s.get("temperature_c") for s in around if s.get("temperature_c") is not None]
        return DeviceStats(
            gpu_util_pct_mean=_mean([s.get("gpu_util_pct") for s in inside]),
            mem_util_pct_mean=_mean([s.get("mem_util_pct") for s in inside]),
            memory_used_mib_max=max([s["memory_used_mib"] for s in around if "memory_used_mib" in s], default=NAN),
            sm_clock_mhz_mean=_mean([s.get("sm_clock_mhz") for s in inside]),
            mem_clock_mhz_mean=_mean([s.get("mem_clock_mhz") for s in inside]),
            temperature_c_start=temps[0] if temps else NAN,
            temperature_c_max=max(temps, default=NAN),
            temperature_c_mean=_mean(temps),
        )


# Sampler processes launched ahead of their meters (launch_ahead), by (GPU UUID, rate, NVML module): each has
# started Python and opened NVML, and waits for ``go``. A meter's start takes its own; discard_launched_ahead
# stops what no meter took.
_HELD: Dict[Tuple[str, float, str], subprocess.Popen] = {}


def _launch(uuid: str, sample_hz: float, nvml_module: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.Popen(
        [sys.executable, "-m", "ecosweep.measure.meters.sampler", uuid, str(sample_hz), nvml_module],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1)


def launch_ahead(uuid: str, sample_hz: float, nvml_module: str = "pynvml") -> None:
    """Launch the sampler process of a meter that will start later (a cell's, while its model loads), so that the
    meter's start does not wait for a Python process to start and open NVML (0.6-0.8 s on an H100 host). The
    process samples nothing until the meter starts."""
    key = (uuid, sample_hz, nvml_module)
    held = _HELD.get(key)
    if held is None or held.poll() is not None:
        _HELD[key] = _launch(uuid, sample_hz, nvml_module)


def discard_launched_ahead() -> None:
    """Stop every sampler process launched ahead that no meter took (a cell that failed before its meter)."""
    while _HELD:
        _, proc = _HELD.popitem()
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    try:
        if proc.poll() is None:
            proc.stdin.write("stop\n")
            proc.stdin.flush()
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


class PowerTimeline:
    """The sampler process of one GPU (by UUID) and the samples it sent. ``start``/``close`` own the process
    (close always reaps it); ``mark`` and ``window`` cut the samples at window edges."""

    def __init__(self, gpu_uuid: str, sample_hz: float, nvml_module: str = "pynvml"):
        self.uuid = gpu_uuid
        self.sample_hz = sample_hz
        self.nvml_module = nvml_module
        self.samples: List[Dict[str, Any]] = []
        self._proc: Optional[subprocess.Popen] = None

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start sampling: in the process :func:`launch_ahead` launched for this GPU and rate where there is one
        (its Python start and NVML open already done), else in one launched now."""
        if self._proc is not None:
            return
        self._proc = _HELD.pop((self.uuid, self.sample_hz, self.nvml_module), None)
        if self._proc is None or self._proc.poll() is not None:
            self._proc = _launch(self.uuid, self.sample_hz, self.nvml_module)
        ready = self._proc.stdout.readline().strip()
        if ready != "READY":
            self.close()
            raise MeterError(f"the NVML sampler process did not start (said {ready!r})")
        self._proc.stdin.write("go\n")
        self._proc.stdin.flush()
        started = self._proc.stdout.readline().strip()  # before any other command (see the sampler)
        if started != "GO":
            self.close()
            raise MeterError(f"the NVML sampler process did not start sampling (said {started!r})")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.stdin.write("stop\n")
                proc.stdin.flush()
                self.samples += self._read_batch(proc)
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

    def flush(self) -> None:
        """Collect what the sampler recorded so far (it takes one more sample on the way)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.stdin.write("flush\n")
        self._proc.stdin.flush()
        self.samples += self._read_batch(self._proc)

    def mark(self) -> int:
        """Flush, and return the index of the last sample so far (the one just before a window opens)."""
        self.flush()
        return max(0, len(self.samples) - 1)

    def window(self, start_index: int, t0: float, t1: float) -> WindowSamples:
        """Flush (one more sample, after t1) and return the samples of [t0, t1] from ``start_index`` on."""
        self.flush()
        around = self.samples[start_index:]
        return WindowSamples(around, [s for s in around if t0 <= s["t"] <= t1], t0, t1)

    def sampler_cpu_s(self) -> float:
        """CPU seconds the sampler process has used (user + system), NaN when unknown."""
        if self._proc is None:
            return NAN
        import psutil

        try:
            times = psutil.Process(self._proc.pid).cpu_times()
            return float(times.user + times.system)
        except psutil.Error:
            return NAN

    def table(self):
        """All samples as a table (one row per sample; times in Unix seconds)."""
        import pyarrow as pa

        self.flush()
        cols = ["t", "power_w", "energy_mj", "gpu_util_pct", "mem_util_pct", "memory_used_mib", "sm_clock_mhz",
                "mem_clock_mhz", "temperature_c", "clock_event_reasons"]
        names = {"t": "t_unix_s", "energy_mj": "energy_counter_mj"}
        data = {names.get(c, c): [s.get(c) for s in self.samples] for c in cols}
        data["compute_pids"] = [",".join(map(str, s["pids"])) if s.get("pids") is not None else None
                                for s in self.samples]
        types = {"t_unix_s": pa.float64(), "energy_counter_mj": pa.int64(), "clock_event_reasons": pa.int64(),
                 "compute_pids": pa.string()}
        return pa.table({k: pa.array(v, type=types.get(k, pa.float64())) for k, v in data.items()})
