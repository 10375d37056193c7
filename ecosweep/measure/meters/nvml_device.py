"""One NVIDIA GPU through NVML, found by UUID: the one place ecosweep initialises NVML, reads a device
and translates NVML's errors (used by the meter, its sampler process and the cell's device facts).

NVML ignores ``CUDA_VISIBLE_DEVICES`` and indexes all GPUs of the host, hence the UUID. Reads that a
device may not support (instantaneous power, the energy counter on pre-Volta GPUs, clock-event reasons on
old drivers) fall back or return None; every other NVML error becomes a typed :class:`NvmlError` (a
:class:`MeterError`) that says what to do: :func:`nvml_errors` wraps each read that must not fail (as Zeus's
``zeus.device.gpu`` does), and :func:`translate` maps the binding's error classes, in one place.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar

from ecosweep.errors import MeterError

FIELD_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT

class NvmlError(MeterError):
    """An NVML call failed; the message names the call and what to do."""

    remedy: str = ""  # what to do; the subclasses say, a plain NvmlError repeats NVML's own message

    def __init__(self, what: str, cause: BaseException):
        super().__init__(f"NVML {what} failed ({type(cause).__name__}): {self.remedy or cause}. "
                         "Use measurement.meter=none to run without energy.")


class NvmlLibraryNotFound(NvmlError):
    remedy = "the NVIDIA driver's libnvidia-ml.so is not installed or not on the library path"


class NvmlDriverNotLoaded(NvmlError):
    remedy = "the NVIDIA driver is not loaded on this host"


class NvmlNoPermission(NvmlError):
    remedy = "this user may not read NVML; run with access to /dev/nvidia* or as root"


class NvmlNotSupported(NvmlError):
    remedy = "this GPU does not support it (energy counters need Volta or newer)"


class NvmlNotFound(NvmlError):
    remedy = "no GPU with that UUID is visible to NVML on this host"


class NvmlGpuLost(NvmlError):
    remedy = "the GPU fell off the bus"


# the binding's error class (an attribute of pynvml, or of the tests' fake) -> ecosweep's typed error
_TYPED: Tuple[Tuple[str, Type[NvmlError]], ...] = (
    ("NVMLError_LibraryNotFound", NvmlLibraryNotFound), ("NVMLError_DriverNotLoaded", NvmlDriverNotLoaded),
    ("NVMLError_NoPermission", NvmlNoPermission), ("NVMLError_NotSupported", NvmlNotSupported),
    ("NVMLError_NotFound", NvmlNotFound), ("NVMLError_GpuIsLost", NvmlGpuLost),
)


def translate(nvml: Any, exc: BaseException, what: str) -> NvmlError:
    """One error of the ``nvml`` binding -> the typed NvmlError that says what to do."""
    for attribute, typed in _TYPED:
        binding_class = getattr(nvml, attribute, None)
        if isinstance(binding_class, type) and isinstance(exc, binding_class):
            return typed(what, exc)
    return NvmlError(what, exc)


Read = TypeVar("Read", bound=Callable[..., Any])


def nvml_errors(what: str) -> Callable[[Read], Read]:
    """Decorate a method of an object with an ``nvml`` binding: its NVML errors become typed NvmlErrors."""
    def decorate(method: Read) -> Read:
        @functools.wraps(method)
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except self.nvml.NVMLError as exc:
                raise translate(self.nvml, exc, what) from exc
        return wrapped  # type: ignore[return-value]
    return decorate


def load_nvml(module: str = "pynvml") -> Any:
    """The NVML binding (``pynvml`` from nvidia-ml-py, or a fake in tests), initialised."""
    try:
        nvml = importlib.import_module(module)
    except ImportError as exc:
        raise MeterError(f"cannot import {module} (pip install nvidia-ml-py): {exc}") from exc
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise translate(nvml, exc, "init") from exc
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
        self.handle = self._handle(uuid)
        self._instant_power = True

    @nvml_errors("device lookup by UUID")
    def _handle(self, uuid: str) -> Any:
        return self.nvml.nvmlDeviceGetHandleByUUID(uuid)

    def has_energy_counter(self) -> bool:
        try:
            self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            return True
        except self.nvml.NVMLError:
            return False

    @nvml_errors("energy counter read")
    def energy_mj(self) -> int:
        """The total energy counter, millijoules."""
        return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

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
                state["memory_used_mib"] = value.used / 2**20
            else:
                state[key] = value
        return state

    def _clock_event_reasons(self) -> int:
        nv = self.nvml
        getter = (getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
                  or nv.nvmlDeviceGetCurrentClocksThrottleReasons)
        return int(getter(self.handle))
