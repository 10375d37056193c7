"""A cell's protocol run under its meter: the idle context of its GPUs, the meter opened and always closed, the
protocol's phase times added to the cell's clock. Shared by fixed-batch and served cells."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Tuple

from ecosweep.cells import Cell
from ecosweep.measure.idle import baseline_key
from ecosweep.measure.meters import make_meter
from ecosweep.measure.phases import PhaseClock
from ecosweep.measure.protocol import IdleContext, ProtocolResult

# (meter, whether it observes the device, the idle context) -> a protocol with .run(base_row, peak_memory_mib)
ProtocolFactory = Callable[[Any, bool, IdleContext], Any]


def peak_memory_counter(device: str, gpus: int) -> Callable[[], float]:
    """Reset torch's peak-allocation statistics of the cell's ``gpus`` GPUs and return a function giving the peak
    since then, in MiB (2**20 bytes) summed over those GPUs; NaN off CUDA."""
    if not device.startswith("cuda"):
        return lambda: math.nan
    import torch  # in the cell's process only

    for index in range(gpus):
        torch.cuda.reset_peak_memory_stats(index)
    return lambda: sum(torch.cuda.max_memory_allocated(i) for i in range(gpus)) / 2**20


def run_metered(cell: Cell, device: str, gpus: int, base_row: Dict[str, Any], clock: PhaseClock,
                idle_baselines: Dict[str, Any], make_protocol: ProtocolFactory) -> Tuple[ProtocolResult, Any]:
    """Run the protocol ``make_protocol`` builds on the cell's meter (peak memory counted over its ``gpus`` GPUs
    from here): (its result, the meter's power trace). An idle baseline of the same GPUs in ``idle_baselines`` may
    stand for the cell's own (``ecosweep.measure.idle``)."""
    s = cell.settings
    peak_memory_mib = peak_memory_counter(device, gpus)
    uuids = base_row["gpu_uuid"].split("+") if base_row.get("gpu_uuid") else []
    key = baseline_key(base_row.get("host"), base_row.get("gpu_uuid"))
    idle = IdleContext(cell.id, key, idle_baselines.get(key) if key else None, s.reuse)
    with clock.phase("meter_start_s"):
        meter, observes_device = make_meter(s.measurement, device, uuids)
        meter.start()
    try:
        result = make_protocol(meter, observes_device, idle).run(base_row, peak_memory_mib)
        for name, seconds in result.phases_s.items():
            clock.add(name, seconds)
    finally:
        with clock.phase("meter_stop_s"):
            trace = meter.trace()
            meter.close()
    return result, trace
