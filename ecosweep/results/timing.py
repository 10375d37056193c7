"""Where a cell's wall time went: the phases of its timing file (``timings/<cell_id>.json``), in order, and the
study-wide breakdown the end-of-run summary, MLflow and the report's methods section show.

A cell's wall time (``wall_s``) runs from the driver asking Ray to run it (``launched_unix_s``) to its results
stored (``written_unix_s``). Every second of it is in exactly one phase below; ``other_s`` is what none of them
covers (a few milliseconds of bookkeeping), so a breakdown sums to its wall time by construction and
``other_s`` says how complete the named phases are. Times in seconds. ``start_s`` and ``return_s`` compare the
driver's clock with the cell process's (both ``time.time()``): on a cluster they hold the clock offset between
the two hosts too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

# (phase, what it holds), in the order a cell goes through them.
CELL_PHASES: Tuple[Tuple[str, str], ...] = (
    ("start_s", "from the driver's launch to the cell's code running: Ray scheduling, the actor's (or the lane's "
                "fresh process's) start, unpickling the cell, ecosweep's own imports"),
    ("imports_s", "torch, transformers and the quantization libraries imported (seconds per library: "
                   "`imports_detail_s`)"),
    ("device_s", "the host's and the device's facts read and the cell's precision checked against them; after the "
                 "windows, what the engine ran"),
    ("fidelity_reference_s", "the fidelity reference: the 16-bit model built and run on the cell's prompts, or "
                             "read from reuse.reference_dir"),
    ("load_s", "the cell's model built (random or pretrained weights) and quantized"),
    ("fidelity_s", "the cell's model compared with the reference, position by position"),
    ("int8_count_s", "one hooked generate() counting LLM.int8()'s decomposed columns"),
    ("capture_s", "the graph engine's CUDA graph captured"),
    ("compile_s", "the compiled engine's torch.compile and its capture"),
    ("token_check_s", "the engine's tokens and logits compared with generate()'s (generate()'s side computed "
                      "or read from reuse.reference_dir)"),
    ("next_process_wait_s", "before the warm-up, the wait for the lane's next process to finish its imports "
     "(ray.prepare_next_process), so they never fall in this cell's windows"),
    ("meter_start_s", "the meter opened (NVML, the sampler process)"),
    ("warmup_s", "warm-up calls"),
    ("settle_s", "the wait after warm-up, before the idle baseline"),
    ("idle_window_s", "the idle baseline window, or the short check that lets an earlier baseline be reused"),
    ("cooldown_s", "waits for the GPU to cool before a repetition (measurement.cooldown_temp_c)"),
    ("windows_s", "the energy windows: prefill and whole-call windows of every repetition"),
    ("between_windows_s", "between and after the windows of a repetition: checks, CPU counters, its row"),
    ("meter_stop_s", "the meter closed and its power trace collected"),
    ("profile_s", "the profiled call and its trace (profile=true), after the meter stopped"),
    ("return_s", "from the cell's code ending to its outcome in the driver: pickling, the process's exit, "
                 "Ray's transfer"),
    ("write_s", "the cell's config, trace, rows and this file stored by the driver"),
    ("other_s", "what no phase above covers"),
)
PHASE_NAMES = tuple(name for name, _ in CELL_PHASES)
# Phases measured inside the cell's own process (the rest are the driver's).
IN_PROCESS_PHASES = tuple(n for n in PHASE_NAMES if n not in ("start_s", "return_s", "write_s", "other_s"))
# What the breakdown groups them into for a one-line summary.
PHASE_GROUPS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("energy windows", ("windows_s",)),
    ("between windows", ("between_windows_s", "cooldown_s")),
    ("warm-up and idle baseline", ("warmup_s", "settle_s", "idle_window_s")),
    ("model", ("load_s",)),
    ("checks (fidelity, token check, LLM.int8() count)",
     ("fidelity_reference_s", "fidelity_s", "int8_count_s", "token_check_s")),
    ("capture and compile", ("capture_s", "compile_s")),
    ("process start and imports", ("start_s", "imports_s", "device_s", "next_process_wait_s")),
    ("meter, profile, return and write", ("meter_start_s", "meter_stop_s", "profile_s", "return_s", "write_s")),
    ("other", ("other_s",)),
)


def cell_breakdown(launched_unix_s: float, started_unix_s: float, finished_unix_s: float,
                   written_unix_s: float, in_process_s: Dict[str, float], write_s: float) -> Dict[str, float]:
    """The cell's phases (seconds, every name of PHASE_NAMES) and ``wall_s``. ``in_process_s``: the phases the
    cell's process measured (names of IN_PROCESS_PHASES; others are refused, so a new phase is never silently
    left out of the sum)."""
    unknown = set(in_process_s) - set(IN_PROCESS_PHASES)
    if unknown:
        raise ValueError(f"unknown cell phases {sorted(unknown)}; known: {', '.join(IN_PROCESS_PHASES)}")
    phases = {name: 0.0 for name in PHASE_NAMES}
    phases.update(in_process_s)
    launched = launched_unix_s or started_unix_s  # a cell run outside the scheduler has no launch
    phases["start_s"] = max(0.0, started_unix_s - launched)
    phases["return_s"] = max(0.0, written_unix_s - write_s - finished_unix_s)
    phases["write_s"] = write_s
    wall = max(0.0, written_unix_s - launched)
    phases["other_s"] = max(0.0, wall - sum(v for k, v in phases.items() if k != "other_s"))
    return {**phases, "wall_s": wall}


@dataclass(frozen=True)
class TimeBreakdown:
    """A study's cells, their time summed phase by phase (seconds). ``gpu_s`` weighs each cell by the GPUs it
    held (0 for CPU cells); ``windows_share`` is the energy windows' share of the cells' summed wall time."""

    cells: int
    wall_s: float
    gpu_s: float
    phases_s: Dict[str, float]

    @property
    def windows_share(self) -> float:
        return self.phases_s.get("windows_s", 0.0) / self.wall_s if self.wall_s > 0 else math.nan

    def groups_s(self) -> List[Tuple[str, float]]:
        return [(label, sum(self.phases_s.get(n, 0.0) for n in names)) for label, names in PHASE_GROUPS]

    def one_line(self) -> str:
        """E.g. 'the 3 cells took 306.8 s (306.8 GPU-s): energy windows 27 %, ...'."""
        parts = [f"{label} {100 * s / self.wall_s:.0f} %" for label, s in self.groups_s()
                 if self.wall_s > 0 and s > 0]
        return f"the {self.cells} cell(s) took {self.wall_s:.1f} s{self.gpu_note()}: " + ", ".join(parts)

    def gpu_note(self) -> str:
        return f" ({self.gpu_s:.1f} GPU-s)" if self.gpu_s > 0 else ""


def has_breakdown(timing: Dict[str, Any]) -> bool:
    """Whether a timing file holds the full breakdown (files of cells measured before it existed do not)."""
    return "wall_s" in timing and all(name in timing for name in PHASE_NAMES)


def study_breakdown(timings: Iterable[Dict[str, Any]]) -> Optional[TimeBreakdown]:
    """Sum of the measured cells' breakdowns (copied and failed cells are left out); None without any."""
    measured = [t for t in timings if has_breakdown(t) and t.get("status") == "ok" and not t.get("reused_from")]
    if not measured:
        return None
    phases = {name: sum(float(t[name]) for t in measured) for name in PHASE_NAMES}
    wall = sum(float(t["wall_s"]) for t in measured)
    gpu_s = sum(float(t["wall_s"]) * int(t.get("gpu_count") or 0) for t in measured)
    return TimeBreakdown(len(measured), wall, gpu_s, phases)


def read_timings(timings_dir: Path) -> List[Dict[str, Any]]:
    """Every readable timing file of a study (a damaged one is skipped: timings never hold results)."""
    out = []
    for path in sorted(Path(timings_dir).glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out
