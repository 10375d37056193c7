"""A cell's protocol run under its meter: the idle context of its GPUs, the meter opened and always closed, the
protocol's phase times added to the cell's clock. Shared by fixed-batch and served cells."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

from ecosweep.cells import Cell
from ecosweep.config.schema import StudyConfig
from ecosweep.measure.idle import baseline_key
from ecosweep.measure.idle_store import HostIdleStore, latest
from ecosweep.measure.meters import make_meter
from ecosweep.measure.phases import PhaseClock
from ecosweep.measure.protocol import IdleContext, ProtocolResult
from ecosweep.workload.references import reference_folder

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
    store = host_idle_store(s) if key else None
    prior = idle_baselines.get(key) if key else None
    if store is not None:
        prior = latest(prior, store.load(key))  # type: ignore[arg-type]
    idle = IdleContext(cell.id, key, prior, s.reuse, str(base_row.get("run_id") or ""))
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
    if store is not None and result.idle is not None and result.idle.source == "measured":
        store.save(result.idle.baseline)  # after the last window: the next command's first cell may check it
    return result, trace


def host_idle_store(s: StudyConfig) -> Optional[HostIdleStore]:
    """This host's store of idle baselines between commands, or None where reuse.idle_across_commands (or
    reuse.idle_baseline) is off."""
    if not (s.reuse.idle_baseline and s.reuse.idle_across_commands):
        return None
    return HostIdleStore(reference_folder(s))
