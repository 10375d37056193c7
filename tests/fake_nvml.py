"""A fake NVML module (drop-in for ``pynvml``) driven by a state file, for tests.

Both the test process and the sampler subprocess import this module; they share the
device through the JSON file named by ``$FAKE_NVML_STATE``; a host of several GPUs
(:class:`FakeGpuHost`) keeps one such device state per UUID under ``devices``. Power is piecewise constant
(segments appended by :meth:`FakeGpu.set_power`); the energy counter integrates it and,
like the real one, advances only every 100 ms.
"""

from __future__ import annotations

import json
import math
import os
import time
from types import SimpleNamespace
from typing import Any, Dict, List

NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0
COUNTER_STEP_S = 0.1


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_NotFound(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class NVMLError_NoPermission(NVMLError):
    pass


def _state() -> Dict[str, Any]:
    with open(os.environ["FAKE_NVML_STATE"]) as f:
        return json.load(f)


def _power_at(segments: List[List[float]], t: float) -> float:
    watts = segments[0][1]
    for start, w in segments:
        if start <= t:
            watts = w
    return watts


def _energy_j(segments: List[List[float]], t: float) -> float:
    """Exact integral of the power from the first segment up to t."""
    total = 0.0
    for (start, w), nxt in zip(segments, segments[1:] + [[math.inf, 0.0]]):
        if t <= start:
            break
        total += w * (min(t, nxt[0]) - start)
    return total


def nvmlInit() -> None:
    state = _state()
    if state.get("init_error"):
        raise globals()[state["init_error"]]()


def nvmlShutdown() -> None:
    pass


def nvmlSystemGetDriverVersion() -> str:
    return "fake-580"


def _device(handle: str) -> Dict[str, Any]:
    """One device's state: the file's own (one GPU) or its entry under ``devices`` (several)."""
    state = _state()
    return state["devices"][handle] if "devices" in state else state


def nvmlDeviceGetHandleByUUID(uuid: str) -> str:
    state = _state()
    if uuid not in state.get("devices", {state.get("uuid"): None}):
        raise NVMLError_NotFound()
    return uuid


def nvmlDeviceGetTotalEnergyConsumption(handle: str) -> int:
    state = _device(handle)
    if not state.get("energy_supported", True):
        raise NVMLError_NotSupported()
    segs = state["segments"]
    t0 = segs[0][0]
    stepped = t0 + math.floor((time.time() - t0) / COUNTER_STEP_S) * COUNTER_STEP_S
    return int(state.get("counter_offset_mj", 0) + 1000 * _energy_j(segs, stepped))


def nvmlDeviceGetFieldValues(handle: str, fields: List[int]):
    watts = _power_at(_device(handle)["segments"], time.time())
    return [SimpleNamespace(nvmlReturn=0, value=SimpleNamespace(uiVal=int(watts * 1000))) for _ in fields]


def nvmlDeviceGetPowerUsage(handle: str) -> int:
    return int(_power_at(_device(handle)["segments"], time.time()) * 1000)


def nvmlDeviceGetUtilizationRates(handle: str):
    busy = _power_at(_device(handle)["segments"], time.time()) > 150
    return SimpleNamespace(gpu=95 if busy else 0, memory=60 if busy else 0)


def nvmlDeviceGetMemoryInfo(handle: str):
    return SimpleNamespace(used=2 * 2**30, total=80 * 2**30, free=78 * 2**30)


def nvmlDeviceGetClockInfo(handle: str, kind: int) -> int:
    return 1980 if kind == NVML_CLOCK_SM else 2619


def nvmlDeviceGetTemperature(handle: str, sensor: int) -> int:
    return int(_device(handle).get("temperature_c", 40))


def nvmlDeviceGetCurrentClocksEventReasons(handle: str) -> int:
    return int(_device(handle).get("clock_event_reasons", 0))


def nvmlDeviceGetComputeRunningProcesses(handle: str):
    state = _device(handle)
    pids = state.get("own_pids", []) + state.get("foreign_pids", [])
    return [SimpleNamespace(pid=p, usedGpuMemory=0) for p in pids]


class FakeGpu:
    """The test's handle on the fake device."""

    def __init__(self, path: str, uuid: str = "GPU-fake-0", watts: float = 100.0, **state: Any):
        self.path = path
        os.environ["FAKE_NVML_STATE"] = path
        self.state = {"uuid": uuid, "segments": [[time.time() - 1.0, watts]], "own_pids": [os.getpid()], **state}
        self._save()

    def _save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f)
        os.replace(tmp, self.path)

    def set(self, **changes: Any) -> None:
        self.state.update(changes)
        self._save()

    def set_power(self, watts: float) -> None:
        self.state["segments"].append([time.time(), watts])
        self._save()

    def energy_between(self, t0: float, t1: float) -> float:
        segs = self.state["segments"]
        return _energy_j(segs, t1) - _energy_j(segs, t0)


class FakeGpuHost:
    """Several fake GPUs of one host, each with its own power segments (a multi-GPU cell's devices)."""

    def __init__(self, path: str, watts: Dict[str, float], **state: Any):
        self.path = path
        os.environ["FAKE_NVML_STATE"] = path
        now = time.time() - 1.0
        self.state = {"devices": {uuid: {"uuid": uuid, "segments": [[now, w]], "own_pids": [os.getpid()], **state}
                                  for uuid, w in watts.items()}}
        self._save()

    _save = FakeGpu._save

    def set_power(self, uuid: str, watts: float) -> None:
        self.state["devices"][uuid]["segments"].append([time.time(), watts])
        self._save()

    def energy_between(self, uuid: str, t0: float, t1: float) -> float:
        segs = self.state["devices"][uuid]["segments"]
        return _energy_j(segs, t1) - _energy_j(segs, t0)
