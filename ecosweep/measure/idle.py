"""The idle baseline of a cell's GPU(s): measured, or reused from an earlier cell on the same GPU(s) while a short
check with this cell's context alive agrees with it.

A full baseline is a ``measurement.idle_window_s`` window; the check is a ``reuse.idle_check_s`` window taken
at the same point of the protocol (after warm-up and settle; with ``reuse.idle_settle_early`` checks run back to
back through the settle and the first that agrees ends it: the GPU has settled to the earlier baseline's power).
When the check's mean power is within ``reuse.idle_tolerance_w`` watts or ``reuse.idle_tolerance_pct`` % of the
earlier baseline's (whichever is wider), and that baseline is on the same host and GPUs and at most
``reuse.idle_max_age_s`` old, the earlier (longer, less noisy) baseline is the cell's; otherwise the cell measures
its own full baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional

from ecosweep.config.schema import ReuseConfig
from ecosweep.measure.meters.base import WindowReading

NAN = math.nan


@dataclass(frozen=True)
class IdleBaseline:
    """An idle baseline a cell measured, offered to the next cells on the same GPU(s) (picklable)."""

    key: str  # host and GPU UUIDs (``baseline_key``)
    reading: WindowReading
    cell_id: str  # the cell that measured it
    measured_unix_s: float  # when its window opened
    run_id: str = ""  # the command (run) whose cell measured it


def baseline_key(host: Optional[str], gpu_uuid: Optional[str]) -> Optional[str]:
    """What a baseline belongs to: the host and its GPU(s) (``gpu_uuid``: '+'-joined for several); None for a
    cell without GPUs (nothing to reuse)."""
    return f"{host}/{gpu_uuid}" if gpu_uuid else None


def why_not_reusable(prior: Optional[IdleBaseline], key: Optional[str], now_unix_s: float,
                     policy: ReuseConfig) -> Optional[str]:
    """Why ``prior`` cannot stand for this cell's baseline even before a check (None: it can be checked)."""
    if not policy.idle_baseline:
        return "reuse.idle_baseline=false"
    if prior is None or key is None:
        return "no earlier baseline on these GPUs"
    if prior.key != key:
        return f"the earlier baseline is of {prior.key}, not {key}"
    if not math.isfinite(prior.reading.power_w_mean):
        return "the earlier baseline has no energy reading"
    age = now_unix_s - prior.measured_unix_s
    if age > policy.idle_max_age_s:
        return f"the earlier baseline is {age:.0f} s old (reuse.idle_max_age_s={policy.idle_max_age_s:g})"
    return None


def check_agrees(check: WindowReading, prior: WindowReading, policy: ReuseConfig) -> bool:
    """Whether a check window's mean power is within the tolerance of an earlier baseline's."""
    tolerance = max(policy.idle_tolerance_w, policy.idle_tolerance_pct / 100 * prior.power_w_mean)
    return math.isfinite(check.power_w_mean) and abs(check.power_w_mean - prior.power_w_mean) <= tolerance


@dataclass(frozen=True)
class IdleDecision:
    """The baseline a cell uses and where it came from: its row columns."""

    baseline: IdleBaseline
    source: str  # measured | reused
    check_power_w: float = NAN  # the check window's mean power (NaN: no check ran)
    why_measured: Optional[str] = None  # why an earlier baseline was not reused
    settle_s: float = NAN  # seconds from the warm-up's end to the baseline's (or the agreeing check's) window
    checks: int = 0  # checks taken before the baseline was settled (the agreeing one included)

    def columns(self, now_unix_s: float) -> Dict[str, Any]:
        return {"idle_baseline_source": self.source, "idle_baseline_cell_id": self.baseline.cell_id,
                "idle_baseline_run_id": self.baseline.run_id or None,
                "idle_baseline_age_s": max(0.0, now_unix_s - self.baseline.measured_unix_s),
                "idle_check_power_w": self.check_power_w, "idle_baseline_note": self.why_measured,
                "idle_settle_s": self.settle_s, "idle_checks_count": self.checks}
