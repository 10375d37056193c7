"""The measurement protocol of a served cell (``scenario=serving``): the fixed-batch protocol's warm-up, settle and
idle baseline (``CellProtocol``), then repetitions that each serve the whole request stream inside one energy
window. A repetition's row has the run's counter energy, the steady-state window's energy (``serving_stats``), J
per request and per token, latency percentiles against the client's clock, goodput per SLO and the accounting of
every request; its requests go to ``request_rows`` (the cell's per-request Parquet file).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from ecosweep.config.schema import MeasurementConfig, ServingConfig
from ecosweep.measure.host import cpu_window_stats, read_cpu_times
from ecosweep.measure.meters.base import Meter, WindowReading
from ecosweep.measure.protocol import CellProtocol, IdleContext
from ecosweep.measure.rows import device_columns, ratio
from ecosweep.measure.serving_stats import (
    RequestRecord,
    SteadyWindow,
    accounting,
    goodput_columns,
    latency_columns,
    steady_window,
    tokens_between,
)
from ecosweep.workload.request_stream import RequestSpec
from ecosweep.workload.serving import ServingRun

NAN = math.nan


def load_cap(v: ServingConfig, requests: int) -> int:
    """Requests in flight when the batch is full under this load."""
    if v.arrival == "closed_loop":
        return max(1, min(v.max_batch, v.concurrency, requests))
    return max(1, min(v.max_batch, requests))


def mean_in_flight(records: Sequence[RequestRecord], window: SteadyWindow) -> float:
    """The mean number of requests running over the window (their overlap with it, over its length)."""
    overlap = sum(max(0.0, min(r.finished_s, window.t1_s) - max(r.admitted_s, window.t0_s)) for r in records
                  if math.isfinite(r.admitted_s) and math.isfinite(r.finished_s))
    return overlap / window.seconds if window.seconds > 0 else NAN


def steady_columns(run: ServingRun, v: ServingConfig, meter: Meter, idle_w: float) -> Dict[str, Any]:
    """The steady-state window's length, energy (from the meter, over that stretch of the run's window) and
    what it held: output tokens, J per output token gross and net of idle, mean batch."""
    window = steady_window(run.records, v.arrival, load_cap(v, len(run.records)))
    if window is None:
        return {"steady_window_s": NAN, "steady_window_rule": None, "steady_energy_j": NAN,
                "steady_energy_source": "none", "steady_output_tokens": 0}
    energy, source = meter.energy_between_j(window.t0_s + run.unix_minus_perf_s, window.t1_s + run.unix_minus_perf_s)
    tokens, _ = tokens_between(run.records, window.t0_s, window.t1_s)
    net = energy - idle_w * window.seconds
    return {"steady_window_s": window.seconds, "steady_window_rule": window.rule, "steady_energy_j": energy,
            "steady_energy_source": source, "steady_output_tokens": tokens,
            "steady_output_tok_s": ratio(tokens, window.seconds), "steady_power_w_mean": ratio(energy, window.seconds),
            "steady_energy_j_per_output_token": ratio(energy, tokens),
            "steady_net_energy_j_per_output_token": ratio(net, tokens),
            "steady_batch_mean_requests": mean_in_flight(run.records, window)}


def serving_columns(run: ServingRun, r: WindowReading, idle: WindowReading, slos: Mapping[str, Any]) -> Dict[str, Any]:
    """The whole run's speed and energy per request and token, latency percentiles and goodput."""
    records = run.records
    counts = accounting(records, len(records))
    done = [x for x in records if x.status == "completed"]
    output_tokens = sum(x.tokens_generated for x in records)
    input_tokens = sum(x.input_tokens for x in done)
    idle_w = idle.power_w_mean
    net = r.energy_j - idle_w * r.seconds
    return {
        **counts, "seconds": r.seconds, "tokens_generated": output_tokens, "input_tokens_served": input_tokens,
        "tok_s": ratio(output_tokens, r.seconds), "requests_per_s": ratio(len(done), r.seconds),
        "energy_source": r.energy_source, "energy_j": r.energy_j, "power_w_mean": r.power_w_mean,
        "power_w_peak": r.power_w_peak, "idle_power_w": idle_w,
        "idle_temperature_c": idle.device_stats.temperature_c_mean,
        "net_energy_j": net, "energy_j_per_1k_tok": 1000.0 * ratio(r.energy_j, output_tokens),
        "net_energy_j_per_1k_tok": 1000.0 * ratio(net, output_tokens),
        "energy_j_per_request": ratio(r.energy_j, len(done)), "net_energy_j_per_request": ratio(net, len(done)),
        "energy_j_per_output_token": ratio(r.energy_j, output_tokens),
        "energy_j_per_input_token": ratio(r.energy_j, input_tokens),
        "sampled_energy_j": r.sampled_energy_j, "static_energy_share": ratio(idle_w * r.seconds, r.energy_j),
        **latency_columns(records), **goodput_columns(records, slos, r.seconds),
    }


class ServingProtocol(CellProtocol):
    """``CellProtocol`` with a served stream in place of generate() calls: warm-up serves ``warmup_specs``
    (at least ``warmup`` times and ``warmup_min_s``), each repetition serves ``specs`` in one window. Repetitions
    extend, up to ``max_repetitions``, until the 95 % CI of J per request is within ``target_ci_pct``."""

    converges_on = "energy_j_per_request"

    def __init__(self, workload: Any, specs: List[RequestSpec], warmup_specs: List[RequestSpec], serving: ServingConfig,
                 meter: Meter, protocol: MeasurementConfig, repetitions: int, warmup: int,
                 observes_device: bool = False, idle: Optional[IdleContext] = None, **kw: Callable[..., Any]):
        super().__init__(workload, meter, protocol, repetitions, warmup, observes_device=observes_device,
                         idle=idle or IdleContext(), **kw)
        self.specs = specs
        self.warmup_specs = warmup_specs
        self.v = serving
        self.request_rows: List[Dict[str, Any]] = []

    def _warm_up(self) -> int:
        start, runs = self.clock(), 0
        while runs < max(1, self.warmup) or self.clock() - start < self.p.warmup_min_s:
            self.w.run(self.warmup_specs)
            runs += 1
        return runs

    def _repetition(self, rep: int, idle: WindowReading) -> Dict[str, Any]:
        cpu_before = read_cpu_times()
        with self.phases.phase("windows_s"), self.meter.window() as window:
            run: ServingRun = self.w.run(self.specs)
        cpu = cpu_window_stats(cpu_before, read_cpu_times())
        r = window.reading
        assert r is not None
        started = datetime.fromtimestamp(r.start_unix_s, tz=timezone.utc)
        row = {"repetition": rep, "status": "ok", "timestamp_utc": started,
               **serving_columns(run, r, idle, self.v.slos),
               **steady_columns(run, self.v, self.meter, idle.power_w_mean),
               **device_columns(r, r, idle, self.observes_device), **cpu,
               "serving_notes": "; ".join(run.notes) or None}
        self.request_rows += [{"repetition": rep, **record.columns()} for record in run.records]
        return row
