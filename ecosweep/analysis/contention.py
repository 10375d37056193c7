"""Repetitions that a busy host slowed down.

Every repetition row carries the host's CPU use over its window (``cpu_util_pct``, ``cpu_steal_pct``: % of all
CPUs, from psutil's CPU times). A repetition is *contended* when it decoded clearly slower than its cell's other
repetitions while the host was clearly busier than during them: another process (a neighbouring study loading a
model or starting its Ray, a noisy tenant stealing the VM's CPUs) took host time that every eager token needs, and
that even a replayed CUDA graph needs once per token. Seen on an H100 host on 2026-11-28: fp16 graph decode at
92.9 tok/s against 114-122 in the cell's other windows, host CPUs 35 % busy (9 % stolen) against 9.5 % (0.9 %).

Nothing is dropped: the report's statistics keep every repetition, and a warning names the repetition, its speed
against the cell's median, the host's load against the other repetitions' and the cell's energy CV with and
without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import pandas as pd

from ecosweep.stats import summarize

SPEED_DROP = 0.10       # slower than the cell's median tok/s by more than this fraction
UTIL_RISE_PCT = 10.0    # host CPU busy, percentage points above the other repetitions' median
STEAL_RISE_PCT = 2.0    # or host CPU steal, percentage points above the other repetitions' median
MIN_REPETITIONS = 3     # fewer: no "others" to compare with


@dataclass(frozen=True)
class ContendedRepetition:
    """One slowed repetition (tok/s; CPU figures in % of all the host's CPUs over the window)."""

    repetition: int
    tok_s: float
    median_tok_s: float
    cpu_util_pct: float
    others_cpu_util_pct: float
    cpu_steal_pct: float
    others_cpu_steal_pct: float

    def describe(self) -> str:
        return (f"repetition {self.repetition} decoded at {self.tok_s:.1f} tok/s against the cell's median "
                f"{self.median_tok_s:.1f} while the host's CPUs were {self.cpu_util_pct:.0f} % busy "
                f"({self.cpu_steal_pct:.1f} % stolen) against {self.others_cpu_util_pct:.0f} % "
                f"({self.others_cpu_steal_pct:.1f} %) in its other repetitions")


def contended_repetitions(reps: pd.DataFrame) -> List[ContendedRepetition]:
    """The contended repetitions among one cell's successful repetition rows (``tok_s``, ``cpu_util_pct``,
    ``cpu_steal_pct``, ``repetition``); none where the host's CPU use was not recorded."""
    needed = ["tok_s", "cpu_util_pct", "cpu_steal_pct", "repetition"]
    if any(c not in reps for c in needed):
        return []
    reps = reps.dropna(subset=needed)
    if len(reps) < MIN_REPETITIONS:
        return []
    median_tok_s = float(reps.tok_s.median())
    found = []
    for index, r in reps.iterrows():
        others = reps.drop(index)
        util, steal = float(others.cpu_util_pct.median()), float(others.cpu_steal_pct.median())
        slower = r.tok_s < (1.0 - SPEED_DROP) * median_tok_s
        busier = r.cpu_util_pct - util >= UTIL_RISE_PCT or r.cpu_steal_pct - steal >= STEAL_RISE_PCT
        if slower and busier:
            found.append(ContendedRepetition(int(r.repetition), float(r.tok_s), median_tok_s,
                                             float(r.cpu_util_pct), util, float(r.cpu_steal_pct), steal))
    return found


def _cv_pct(values: pd.Series) -> float:
    """CV of the finite values, % (the report's: ``stats.Summary.cv_pct``)."""
    return summarize(values.dropna().astype(float).tolist(), bootstrap=False).cv_pct


def contention_note(reps: pd.DataFrame, metric: str = "energy_j_per_1k_tok") -> Optional[str]:
    """What the report says of one cell's contended repetitions (None: none), with the cell's CV of ``metric``
    with and without them."""
    found = contended_repetitions(reps)
    if not found:
        return None
    kept = reps[~reps.repetition.isin([c.repetition for c in found])]
    return ("; ".join(c.describe() for c in found)
            + f": another process competed for the host. {metric} CV {_cv_pct(reps[metric]):.1f} % with "
              f"{'it' if len(found) == 1 else 'them'}, {_cv_pct(kept[metric]):.1f} % without; the tables keep every "
              "repetition. Measure on a quiet host (no other study starting there), or measure the cell again.")
