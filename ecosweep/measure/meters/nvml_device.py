"""One NVIDIA GPU through NVML, found by UUID: the one place ecosweep initialises NVML, reads a device
and translates NVML's errors (used by the meter, its sampler process and the cell's device facts).

NVML ignores ``CUDA_VISIBLE_DEVICES`` and indexes all GPUs of the host, hence the UUID. Reads that a
device may not support (instantaneous power, the energy counter on pre-Volta GPUs, clock-event reasons on
old drivers) fall back or return None; every other NVML error becomes a :class:`MeterError` that says
what to do, in :func:`translate` and nowhere else.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, List, Optional

from ecosweep.errors import MeterError

FIELD_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT

_REMEDIES = {
    "NVMLError_LibraryNotFound": "the NVIDIA driver's libnvidia-ml.so is not installed or not on the library path",
    "NVMLError_DriverNotLoaded": "the NVIDIA driver is not loaded on this host",
    "NVMLError_NoPermission": "this user may not read NVML; run with access to /dev/nvidia* or as root",
    "NVMLError_NotSupported": "this GPU does not support it (energy counters need Volta or newer)",
    "NVMLError_NotFound": "no GPU with that UUID is visible to NVML on this host",
    "NVMLError_GpuIsLost": "the GPU fell off the bus",
}


def translate(exc: BaseException, what: str) -> MeterError:
    """One NVML error -> one MeterError that says what to do."""
    name = type(exc).__name__
    return MeterError(f"NVML {what} failed ({name}): {_REMEDIES.get(name, str(exc))}. "
                      "Use measurement.meter=none to run without energy.")


def load_nvml(module: str = "pynvml") -> Any:
    """The NVML binding (``pynvml`` from nvidia-ml-py, or a fake in tests), initialised."""
    try:
        nvml = importlib.import_module(module)
    except ImportError as exc:
        raise MeterError(f"cannot import {module} (pip install nvidia-ml-py): {exc}") from exc
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise translate(exc, "init") from exc
    return nvml


def driver_version(module: str = "pynvml") -> Optional[str]:
    """The NVIDIA driver version, or None where NVML cannot say (the meter reports NVML problems)."""
    try:
        return str(load_nvml(module).nvmlSystemGetDriverVersion())
    except Exception:  # optional fact: a missing driver is the meter's error to report, not this one's
        return None


class NvmlDevice:
    """One GPU by UUID. ``energy_mj`` raises MeterError; the other reads return None where unsupported."""

    def __init__(self, uuid: str, module: str = "pynvml"):
        self.nvml = load_nvml(module)
        self.uuid = uuid
        try:
            self.handle = self.nvml.nvmlDeviceGetHandleByUUID(uuid)
        except self.nvml.NVMLError as exc:
            raise translate(exc, f"device {uuid}") from exc
        self._instant_power = True

    def has_energy_counter(self) -> bool:
        try:
            self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            return True
        except self.nvml.NVMLError:
            return False

    def energy_mj(self) -> int:
        """The total energy counter, millijoules."""
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except self.nvml.NVMLError as exc:
            raise translate(exc, "energy counter read") from exc

    def power_w(self) -> Optional[float]:
        """Instantaneous power (falling back to the 1 s average where the field is unsupported), watts."""
        nv = self.nvml
        if self._instant_power:
            try:
                value = nv.nvmlDeviceGetFieldValues(self.handle, [FIELD_POWER_INSTANT])[0]
                if value.nvmlReturn == 0:
                    return value.value.uiVal / 1000.0  # milliwatts
            except nv.NVMLError:
                pass
            self._instant_power = False
        try:
            return nv.nvmlDeviceGetPowerUsage(self.handle) / 1000.0
        except nv.NVMLError:
            return None

    def temperature_c(self) -> Optional[float]:
        try:
            return float(self.nvml.nvmlDeviceGetTemperature(self.handle, self.nvml.NVML_TEMPERATURE_GPU))
        except self.nvml.NVMLError:
            return None

    def compute_pids(self) -> Optional[List[int]]:
        try:
            return sorted(p.pid for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle))
        except self.nvml.NVMLError:
            return None

    def slow_state(self) -> Dict[str, Any]:
        """Utilisation (%), memory used (MiB), clocks (MHz), temperature (C), clock-event reasons (bitmask):
        whatever the device reports."""
        nv, h = self.nvml, self.handle
        state: Dict[str, Any] = {}
        readers = {
            "util": lambda: nv.nvmlDeviceGetUtilizationRates(h),
            "mem": lambda: nv.nvmlDeviceGetMemoryInfo(h),
            "sm_clock_mhz": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
            "mem_clock_mhz": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
            "temperature_c": lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
            "clock_event_reasons": lambda: self._clock_event_reasons(),
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

    def _clock_event_reasons(self) -> int:
        nv = self.nvml
        getter = (getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
                  or nv.nvmlDeviceGetCurrentClocksThrottleReasons)
        return int(getter(self.handle))
