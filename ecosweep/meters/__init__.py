"""Energy meters behind one window API (see :mod:`ecosweep.meters.base`)."""

from __future__ import annotations

import logging
from typing import Optional, Tuple

from ecosweep.config.schema import MeasurementConfig
from ecosweep.errors import MeterError
from ecosweep.meters.base import Meter, NullMeter, WindowReading

__all__ = ["Meter", "NullMeter", "WindowReading", "make_meter"]

log = logging.getLogger("ecosweep")


def make_meter(m: MeasurementConfig, device: str, gpu_uuid: Optional[str]) -> Tuple[Meter, bool]:
    """The meter for a cell and whether it observes the device (throttling, foreign processes).

    ``meter=auto`` takes NVML on CUDA and RAPL on CPU where they work, else the null meter
    (energy NaN, energy_source 'none'); naming a meter makes it mandatory.
    """
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    choice = m.meter
    if choice == "none":
        return NullMeter(sync), False
    if device.startswith("cuda") and choice in ("auto", "nvml"):
        from ecosweep.meters.nvml import NvmlMeter

        try:
            return NvmlMeter(gpu_uuid, sample_hz=m.sampler_hz, synchronize=sync,
                             align_to_counter_ticks=m.align_counter_ticks), True
        except MeterError as exc:
            if choice == "nvml":
                raise
            log.warning("%s Measuring without energy (energy_source=none).", exc)
            return NullMeter(sync), False
    if choice == "nvml":
        raise MeterError(f"measurement.meter=nvml needs a CUDA device; this cell runs on {device}")
    from ecosweep.meters.rapl import RaplMeter, rapl_available

    if rapl_available():
        return RaplMeter(synchronize=sync), False
    if choice == "cpu":
        raise MeterError(
            "measurement.meter=cpu needs readable RAPL counters under /sys/class/powercap "
            "(intel-rapl); none are readable here. Use measurement.meter=auto to run without energy."
        )
    return NullMeter(sync), False
