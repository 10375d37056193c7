"""The NVML sampler process: ``python -m ecosweep.meters.sampler UUID HZ [NVML_MODULE]``.

Runs beside the process that calls ``generate()`` (a thread there would contend for the
GIL and perturb the workload). Every 1/HZ seconds it reads instantaneous power (field
NVML_FI_DEV_POWER_INSTANT, falling back to the 1 s average power); every 1 s the energy
counter and the slower state (utilisation, memory, clocks, temperature, clock-event
reasons); every 2 s the compute processes on the device.

Protocol on stdin/stdout, one line each: the parent writes ``flush`` and gets the samples
taken since the last flush (one more taken on the spot) as JSON lines, then ``END``;
``stop`` (or EOF, when the parent dies) flushes the same way and exits.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import sys
import time
from typing import Any, Dict, List, Optional

# Each NVML call costs ~2-3 ms of CPU on an H100 host (more while the GPU is busy), so
# only instantaneous power is read at the full rate; the rest once a second.
SLOW_PERIOD_S = 1.0
PROCESS_PERIOD_S = 2.0
FIELD_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT


class DeviceReader:
    """Reads one device; each method returns None for what the device does not support."""

    def __init__(self, nvml: Any, uuid: str):
        self.nvml = nvml
        nvml.nvmlInit()
        self.handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
        self._instant_ok = True
        self._energy_ok = True

    def power_w(self) -> Optional[float]:
        nv = self.nvml
        if self._instant_ok:
            try:
                value = nv.nvmlDeviceGetFieldValues(self.handle, [FIELD_POWER_INSTANT])[0]
                if value.nvmlReturn == 0:
                    return value.value.uiVal / 1000.0  # milliwatts
            except nv.NVMLError:
                pass
            self._instant_ok = False
        try:
            return nv.nvmlDeviceGetPowerUsage(self.handle) / 1000.0
        except nv.NVMLError:
            return None

    def energy_mj(self) -> Optional[int]:
        if not self._energy_ok:
            return None
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except self.nvml.NVMLError:
            self._energy_ok = False
            return None

    def slow_state(self) -> Dict[str, Any]:
        nv, h = self.nvml, self.handle
        state: Dict[str, Any] = {}
        readers = {
            "util": lambda: nv.nvmlDeviceGetUtilizationRates(h),
            "mem": lambda: nv.nvmlDeviceGetMemoryInfo(h),
            "sm_clock_mhz": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
            "mem_clock_mhz": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
            "temperature_c": lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
            "clock_event_reasons": lambda: _clock_event_reasons(nv, h),
        }
        for key, read in readers.items():
            try:
                value = read()
            except nv.NVMLError:
                continue
            if key == "util":
                state["gpu_util_pct"], state["mem_util_pct"] = value.gpu, value.memory
            elif key == "mem":
                state["memory_used_mb"] = value.used / 2**20
            else:
                state[key] = value
        return state

    def compute_pids(self) -> Optional[List[int]]:
        try:
            return sorted(p.pid for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle))
        except self.nvml.NVMLError:
            return None


def _clock_event_reasons(nv: Any, handle: Any) -> int:
    getter = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
    return int(getter(handle))


def sample(reader: DeviceReader, now: float, with_slow: bool, with_pids: bool) -> Dict[str, Any]:
    s: Dict[str, Any] = {"t": time.time(), "power_w": reader.power_w()}
    if with_slow:
        s["energy_mj"] = reader.energy_mj()
        s.update(reader.slow_state())
    if with_pids:
        s["pids"] = reader.compute_pids()
    return s


def run(uuid: str, hz: float, nvml_module: str = "pynvml") -> None:
    nvml = importlib.import_module(nvml_module)
    reader = DeviceReader(nvml, uuid)
    out = sys.stdout
    buffer: List[Dict[str, Any]] = []
    period = 1.0 / hz
    next_t = last_slow = last_pids = time.monotonic()
    out.write("READY\n")
    out.flush()

    def take() -> None:
        nonlocal last_slow, last_pids
        now = time.monotonic()
        slow, pids = now - last_slow >= SLOW_PERIOD_S or not buffer, now - last_pids >= PROCESS_PERIOD_S
        if slow:
            last_slow = now
        if pids:
            last_pids = now
        buffer.append(sample(reader, now, slow, pids))

    def flush() -> None:
        take()
        out.write("".join(json.dumps(s, separators=(",", ":")) + "\n" for s in buffer) + "END\n")
        out.flush()
        buffer.clear()

    take()
    while True:
        timeout = max(0.0, next_t - time.monotonic())
        ready, _, _ = select.select([sys.stdin], [], [], timeout)
        if ready:
            line = sys.stdin.readline()
            command = line.strip()
            if command == "flush":
                flush()
                continue
            flush()  # "stop" or EOF (the parent went away)
            return
        take()
        next_t += period
        if next_t < time.monotonic():  # fell behind (a slow NVML call): don't burst to catch up
            next_t = time.monotonic() + period


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run(sys.argv[1], float(sys.argv[2]), *(sys.argv[3:4]))
