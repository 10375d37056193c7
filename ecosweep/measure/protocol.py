"""The measurement protocol of one cell, independent of Ray and of the meter behind it.

warm-up (>= ``warmup`` calls and >= ``warmup_min_s``) -> settle -> idle baseline with
the cell's context alive (or a short check that lets an earlier cell's baseline of the same GPUs
stand: ``ecosweep.measure.idle``) -> repetitions. Each repetition has a prefill window (first-token
calls repeated until ``prefill_min_window_s``) and a full window (whole ``generate()``
calls repeated until ``min_window_s``, every token counted). After ``repetitions`` the
cell is extended, up to ``max_repetitions``, until the 95 % CI half-width of energy per
1k tokens is within ``target_ci_pct`` of its mean.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Protocol

from ecosweep.config.schema import MeasurementConfig, ReuseConfig
from ecosweep.errors import EcosweepError
from ecosweep.measure.host import cpu_window_stats, read_cpu_times
from ecosweep.measure.idle import IdleBaseline, IdleDecision, check_agrees, why_not_reusable
from ecosweep.measure.meters.base import Meter, WindowReading
from ecosweep.measure.phases import PhaseClock
from ecosweep.measure.rows import Counts, device_columns, energy_columns, speed_columns
from ecosweep.stats import ci_half_width_pct

NAN = math.nan


class Workload(Protocol):
    batch_size: int
    input_tokens: int
    output_tokens: int

    def generate(self) -> int: ...

    def prefill(self) -> int: ...


@dataclass
class ProtocolResult:
    rows: List[Dict[str, Any]]
    phases_s: Dict[str, float] = field(default_factory=dict)  # wall time per phase, seconds
    idle: Optional[IdleDecision] = None  # the idle baseline the rows are net of, and where it came from


@dataclass(frozen=True)
class IdleContext:
    """What the protocol knows of earlier idle baselines: this cell's id, its GPUs' key
    (``idle.baseline_key``), the latest baseline measured on them, and the reuse settings."""

    cell_id: str = ""
    key: Optional[str] = None
    prior: Optional[IdleBaseline] = None
    policy: ReuseConfig = field(default_factory=lambda: ReuseConfig(idle_baseline=False))
    run_id: str = ""  # the command's run, stamped on a baseline this cell measures


def _repeat_until(call: Callable[[], int], min_s: float, clock: Callable[[], float]) -> tuple[int, int]:
    """Call at least once and until ``min_s`` has passed; returns (calls, units produced)."""
    start = clock()
    calls = units = 0
    while True:
        units += call()
        calls += 1
        if clock() - start >= min_s:
            return calls, units


def ci95_half_width_pct(values: List[float]) -> float:
    """95 % t-based CI half-width as % of the mean; inf with fewer than 2 finite values."""
    return ci_half_width_pct(values)


class CompileInWindowError(EcosweepError):
    """Something compiled (or recorded a CUDA graph) inside an energy window: its energy is not the workload's."""


class CellProtocol:
    """Runs the protocol for one workload with one (already started) meter. A workload that compiles
    (``compile_events()``, the compiled engine) must not compile inside a window: the window is refused."""

    converges_on = "energy_j_per_1k_tok"  # the row column whose CI the adaptive extension narrows

    def __init__(self, workload: Workload, meter: Meter, protocol: MeasurementConfig, repetitions: int,
                 warmup: int, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep, observes_device: bool = False,
                 idle: IdleContext = IdleContext(), wall_clock: Callable[[], float] = time.time):
        self.w = workload
        self.meter = meter
        self.p = protocol
        self.repetitions = repetitions
        self.warmup = warmup
        self.clock = clock
        self.sleep = sleep
        self.observes_device = observes_device
        self.idle = idle
        self.wall_clock = wall_clock
        self.phases = PhaseClock(clock)

    def run(self, base_row: Dict[str, Any], peak_memory_mib: Callable[[], float] = lambda: NAN) -> ProtocolResult:
        phase = self.phases.phase
        with phase("warmup_s"):
            warmup_calls = self._warm_up()
        warmup_s = self.phases.seconds["warmup_s"]
        idle = self._settle_and_baseline()
        for name in ("cooldown_s", "windows_s", "between_windows_s"):
            self.phases.add(name, 0.0)
        rows: List[Dict[str, Any]] = []
        rep = 0
        while True:
            with phase("cooldown_s"):
                self._cool_down()
            started, windows_before = self.clock(), self.phases.seconds["windows_s"]
            row = self._repetition(rep, idle.baseline.reading)
            row.update(base_row, warmup_calls=warmup_calls, warmup_s=warmup_s, min_window_s=self.p.min_window_s,
                       **idle.columns(row["timestamp_utc"].timestamp()))
            rows.append(row)
            windows = self.phases.seconds["windows_s"] - windows_before
            self.phases.add("between_windows_s", self.clock() - started - windows)
            rep += 1
            if not self._needs_more(rows, rep):
                break
        peak = peak_memory_mib()
        for row in rows:
            row["gpu_memory_peak_mib"] = peak
        return ProtocolResult(rows, dict(self.phases.seconds), idle)

    def _warm_up(self) -> int:
        if self.warmup <= 0 and self.p.warmup_min_s <= 0:
            return 0
        start = self.clock()
        calls = 0
        while calls < self.warmup or self.clock() - start < self.p.warmup_min_s:
            self.w.generate()
            calls += 1
        return calls

    def _idle_window(self, seconds: float) -> WindowReading:
        with self.meter.window() as handle:
            self.sleep(seconds)
        assert handle.reading is not None
        return handle.reading

    def _settle_and_baseline(self) -> IdleDecision:
        """Settle, then the idle baseline: an earlier baseline of these GPUs when a short check agrees with it,
        else a full one of this cell. With ``reuse.idle_settle_early`` the checks start at the warm-up's end and
        the first that agrees ends the settle; the settle's time (``settle_s``) is what came before the agreeing
        (or the last) check, the check or the full window ``idle_window_s``."""
        ctx = self.idle
        why = why_not_reusable(ctx.prior, ctx.key, self.wall_clock(), ctx.policy)
        started = self.clock()
        if why is not None or ctx.prior is None:
            self.sleep(self.p.idle_settle_s)
            return self._measured_baseline(started, why if ctx.prior is not None else None, NAN, 0)
        prior, check_s, settle_s = ctx.prior, ctx.policy.idle_check_s, self.p.idle_settle_s
        if not ctx.policy.idle_settle_early:
            self.sleep(settle_s)
        checks = 0
        while True:  # checks that end within the settle, then one after the whole settle
            left = settle_s - (self.clock() - started)
            if 0 < left < check_s:
                self.sleep(left)
            check_started = self.clock()
            check, checks = self._idle_window(check_s), checks + 1
            if check_agrees(check, prior.reading, ctx.policy):
                return self._reused_baseline(prior, started, check_started, check.power_w_mean, checks)
            if check_started - started >= settle_s:
                break
        why = (f"the {check_s:g} s check read {check.power_w_mean:.1f} W against the earlier baseline's "
               f"{prior.reading.power_w_mean:.1f} W (cell {prior.cell_id})")
        return self._measured_baseline(started, why, check.power_w_mean, checks, settled=check_started)

    def _reused_baseline(self, prior: IdleBaseline, started: float, check_started: float, check_w: float,
                         checks: int) -> IdleDecision:
        self.phases.add("settle_s", check_started - started)
        self.phases.add("idle_window_s", self.clock() - check_started)
        return IdleDecision(prior, "reused", check_w, settle_s=check_started - started, checks=checks)

    def _measured_baseline(self, started: float, why: Optional[str], check_w: float, checks: int,
                           settled: Optional[float] = None) -> IdleDecision:
        """This cell's own full baseline window; ``settled``: when the settle ended (default: now)."""
        settled = self.clock() if settled is None else settled
        self.phases.add("settle_s", settled - started)
        reading = self._idle_window(self.p.idle_window_s)
        self.phases.add("idle_window_s", self.clock() - settled)
        baseline = IdleBaseline(self.idle.key or "", reading, self.idle.cell_id, reading.start_unix_s, self.idle.run_id)
        return IdleDecision(baseline, "measured", check_w, why, settle_s=settled - started, checks=checks)

    def _cool_down(self) -> None:
        target = self.p.cooldown_temp_c
        if target is None:
            return
        deadline = self.clock() + self.p.cooldown_timeout_s
        while self.meter.device_temperature_c() > target and self.clock() < deadline:
            self.sleep(0.5)

    def _needs_more(self, rows: List[Dict[str, Any]], done: int) -> bool:
        if done < self.repetitions:
            return True
        if self.p.target_ci_pct <= 0 or done >= self.p.max_repetitions:
            return False
        values = [r[self.converges_on] for r in rows]
        if not any(math.isfinite(v) for v in values):
            return False  # nothing to converge on without an energy source
        return ci95_half_width_pct(values) > self.p.target_ci_pct

    def _compile_events(self) -> int:
        events = getattr(self.w, "compile_events", None)
        return events() if events is not None else 0

    def _check_no_compile(self, before: int, rep: int, window: str) -> None:
        compiled = self._compile_events() - before
        if compiled:
            raise CompileInWindowError(
                f"{compiled} compilation(s) or CUDA-graph recording(s) happened inside the {window} window of "
                f"repetition {rep}: the engine recompiled after its warm-up (a guard on something that changed "
                "between calls), so that window's time and energy include compiling. Nothing was recorded for "
                "this cell; run it with engine=graph, or report the recompile (TORCH_LOGS=recompiles names it).")

    def _repetition(self, rep: int, idle: WindowReading) -> Dict[str, Any]:
        """One repetition: a prefill window, then the window of whole calls; its row."""
        w = self.w
        events = self._compile_events()
        with self.phases.phase("windows_s"), self.meter.window() as pre:
            prefill_calls, _ = _repeat_until(w.prefill, self.p.prefill_min_window_s, self.clock)
        self._check_no_compile(events, rep, "prefill")
        cpu_before = read_cpu_times()
        with self.phases.phase("windows_s"), self.meter.window() as full:
            calls, tokens = _repeat_until(w.generate, self.p.min_window_s, self.clock)
        self._check_no_compile(events, rep, "energy")
        cpu = cpu_window_stats(cpu_before, read_cpu_times())
        r, pr = full.reading, pre.reading
        assert r is not None and pr is not None
        counts = Counts(calls, tokens, prefill_calls)
        return {"repetition": rep, "status": "ok",
                "timestamp_utc": datetime.fromtimestamp(r.start_unix_s, tz=timezone.utc),
                **speed_columns(w, r, pr, counts), **energy_columns(w, r, pr, idle, counts),
                **device_columns(r, pr, idle, self.observes_device), **cpu}
