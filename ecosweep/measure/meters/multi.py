"""One window over several GPUs: a cell that holds N GPUs is metered on every one of them.

:class:`MultiGpuMeter` opens and closes one :class:`~ecosweep.measure.meters.nvml.NvmlMeter` window per GPU
inside its own window (the devices are synchronised once, together, at both edges) and returns one
:class:`~ecosweep.measure.meters.base.WindowReading` for the cell: energies summed over the GPUs, each GPU's
own energy kept in ``device_energy_j`` (in ``device_uuids`` order). The idle baseline is a window like
any other, so it covers all N GPUs too.

How the per-GPU device statistics combine (``device_stats``): utilisation, clocks and mean temperature
are averaged over the GPUs; the maximum temperature and the start temperature take the hottest GPU;
memory used is summed; ``power_w_peak`` is the sum of each GPU's own peak, an upper bound of the total's
peak (the GPUs' samples are not taken at the same instants).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Sequence, Tuple

from ecosweep.measure.meters.base import DeviceStats, Meter, WindowReading

NAN = math.nan

_AVERAGED = ("gpu_util_pct_mean", "mem_util_pct_mean", "sm_clock_mhz_mean", "mem_clock_mhz_mean",
             "temperature_c_mean", "sampler_cpu_pct")
_HOTTEST = ("temperature_c_start", "temperature_c_max")
_SUMMED = ("memory_used_mib_max",)


def _finite(values: Sequence[float]) -> List[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _combine_stats(readings: Sequence[WindowReading]) -> DeviceStats:
    stats: Dict[str, float] = {}
    for key in _AVERAGED:
        v = _finite([getattr(r.device_stats, key) for r in readings])
        stats[key] = sum(v) / len(v) if v else NAN
    for key in _HOTTEST:
        stats[key] = max(_finite([getattr(r.device_stats, key) for r in readings]), default=NAN)
    for key in _SUMMED:
        v = [getattr(r.device_stats, key) for r in readings]
        stats[key] = sum(v) if v and all(x is not None and math.isfinite(x) for x in v) else NAN
    return DeviceStats(**stats)


class MultiGpuMeter(Meter):
    """The sum of several GPUs' meters, one window for all of them."""

    def __init__(self, meters: Sequence[Meter], synchronize: Callable[[], None] = lambda: None, **kw: Any):
        super().__init__(synchronize, **kw)
        if len(meters) < 2:
            raise ValueError("MultiGpuMeter meters several GPUs; use the GPU's own meter for one")
        self.meters = list(meters)
        sources = {m.energy_source for m in self.meters}
        self.energy_source = sources.pop() if len(sources) == 1 else "mixed:" + ",".join(sorted(sources))
        self.device_uuids = tuple(getattr(m, "uuid", "") for m in self.meters)

    def start(self) -> None:
        started: List[Meter] = []
        try:
            for m in self.meters:
                m.start()
                started.append(m)
        except BaseException:
            for m in started:
                m.close()
            raise

    def close(self) -> None:
        errors = []
        for m in self.meters:
            try:
                m.close()
            except Exception as exc:  # close the others first, then report the first failure
                errors.append(exc)
        if errors:
            raise errors[0]

    def _begin(self) -> None:
        for m in self.meters:
            m._begin()

    def _end(self, seconds: float, start_unix_s: float) -> WindowReading:
        readings = [m._end(seconds, start_unix_s) for m in self.meters]
        energies = tuple(r.energy_j for r in readings)
        total = sum(energies) if all(math.isfinite(e) for e in energies) else NAN
        sampled = [r.sampled_energy_j for r in readings]
        return WindowReading(
            seconds=seconds, start_unix_s=start_unix_s, energy_j=total, energy_source=self.energy_source,
            power_w_peak=sum(r.power_w_peak for r in readings),
            sampled_energy_j=sum(sampled) if all(math.isfinite(e) for e in sampled) else NAN,
            samples=min(r.samples for r in readings), device_stats=_combine_stats(readings),
            throttle_reasons=tuple(sorted({n for r in readings for n in r.throttle_reasons})),
            foreign_pids=tuple(sorted({p for r in readings for p in r.foreign_pids})),
            device_energy_j=energies, device_uuids=self.device_uuids)

    def device_temperature_c(self) -> float:
        return max(_finite([m.device_temperature_c() for m in self.meters]), default=NAN)

    def energy_between_j(self, t0_unix_s: float, t1_unix_s: float) -> Tuple[float, str]:
        """The sum over the cell's GPUs (NaN unless every one has it)."""
        parts = [m.energy_between_j(t0_unix_s, t1_unix_s) for m in self.meters]
        energies = [e for e, _ in parts]
        return (sum(energies) if all(math.isfinite(e) for e in energies) else NAN), parts[0][1]

    def trace(self):
        """Every GPU's samples, one table, with a ``gpu_uuid`` column saying whose each sample is."""
        import pyarrow as pa

        tables = []
        for m in self.meters:
            t = m.trace()
            if t is not None:
                tables.append(t.append_column("gpu_uuid", pa.array([getattr(m, "uuid", "")] * t.num_rows, pa.string())))
        return pa.concat_tables(tables) if tables else None
