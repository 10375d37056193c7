"""Energy meters behind one window API (see :mod:`ecosweep.measure.meters.base`)."""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence, Tuple

from ecosweep.config.schema import MeasurementConfig
from ecosweep.errors import MeterError
from ecosweep.measure.meters.base import Meter, NullMeter, WindowReading
from ecosweep.measure.meters.multi import MultiGpuMeter
from ecosweep.measure.meters.nvml import NvmlMeter
from ecosweep.measure.meters.power_timeline import discard_launched_ahead, launch_ahead
from ecosweep.measure.meters.rapl import RaplMeter, rapl_available

__all__ = ["Meter", "NullMeter", "WindowReading", "discard_launched_ahead", "launch_samplers_ahead", "make_meter"]

log = logging.getLogger("ecosweep")


def synchronize_devices(device: str, gpu_count: int) -> Callable[[], None]:
    """Waits for the queued work of every GPU the cell holds (cuda:0 .. cuda:N-1); a no-op on CPU."""
    if not device.startswith("cuda"):
        return lambda: None
    import torch

    def sync() -> None:
        for index in range(gpu_count):
            torch.cuda.synchronize(index)
    return sync


def make_meter(m: MeasurementConfig, device: str, gpu_uuids: Sequence[Optional[str]],
               synchronize: Optional[Callable[[], None]] = None, nvml_module: str = "pynvml") -> Tuple[Meter, bool]:
    """The meter for a cell and whether it observes the device (throttling, foreign processes).

    ``gpu_uuids``: every GPU the cell holds (a cell of N GPUs is metered on all N, summed). ``meter=auto``
    takes NVML on CUDA and RAPL on CPU where they work, else the null meter (energy NaN, energy_source
    'none'); naming a meter makes it mandatory.
    """
    sync = synchronize or synchronize_devices(device, max(1, len(gpu_uuids)))
    choice = m.meter
    if choice == "none":
        return NullMeter(sync), False
    if device.startswith("cuda") and choice in ("auto", "nvml"):
        try:
            return _nvml_meter(m, list(gpu_uuids), sync, nvml_module), True
        except MeterError as exc:
            if choice == "nvml":
                raise
            log.warning("%s Measuring without energy (energy_source=none).", exc)
            return NullMeter(sync), False
    if choice == "nvml":
        raise MeterError(f"measurement.meter=nvml needs a CUDA device; this cell runs on {device}")

    if rapl_available():
        return RaplMeter(synchronize=sync), False
    if choice == "cpu":
        raise MeterError(
            "measurement.meter=cpu needs readable RAPL counters under /sys/class/powercap "
            "(intel-rapl); none are readable here. Use measurement.meter=auto to run without energy."
        )
    return NullMeter(sync), False


def launch_samplers_ahead(m: MeasurementConfig, device: str, gpu_uuids: Sequence[Optional[str]],
                          nvml_module: str = "pynvml") -> None:
    """Launch the NVML sampler processes the cell's meter will take (:func:`make_meter` with the same
    arguments), so that they start while the cell prepares; nothing for a meter without them."""
    if device.startswith("cuda") and m.meter in ("auto", "nvml"):
        for uuid in gpu_uuids:
            if uuid:
                launch_ahead(uuid, m.sampler_hz, nvml_module)


def _nvml_meter(m: MeasurementConfig, gpu_uuids: list, sync: Callable[[], None], nvml_module: str) -> Meter:
    """NVML on the cell's GPU, or on each of its GPUs under one window (the devices synchronised together)."""

    def one(uuid: Optional[str], synchronize: Callable[[], None]) -> NvmlMeter:
        return NvmlMeter(uuid, sample_hz=m.sampler_hz, synchronize=synchronize,
                         align_to_counter_ticks=m.align_counter_ticks, nvml_module=nvml_module)

    if len(gpu_uuids) <= 1:
        return one(gpu_uuids[0] if gpu_uuids else None, sync)

    return MultiGpuMeter([one(uuid, lambda: None) for uuid in gpu_uuids], synchronize=sync)
