"""What one command does with each of its cells, decided once, before anything is written or runs.

:func:`build_plan` reads the output root and gives every validated cell a :class:`CellState` — skip it,
copy it from another study, measure it (again) — and :meth:`Plan.lanes` groups the cells to measure into
lanes (:mod:`ecosweep.lanes`). The dry run prints the plan, the pre-flight checks count from it, and the study
and the driver consume it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ecosweep.cells import Cell, RunOptions, run_options
from ecosweep.lanes import LaneSpec, group_lanes, lane_key
from ecosweep.results.store import DamagedResultError, StudyStore


class CellState(Enum):
    """What a run does with one cell."""

    DONE = "done"            # complete in this study: skipped
    REUSE = "reuse"          # complete in another study under the output root: copied in, not measured
    REMEASURE = "remeasure"  # another study has it, but its lane is measured whole here: measured again
    DAMAGED = "damaged"      # this study's file is unreadable: moved aside, then measured
    TODO = "todo"            # measured

    @property
    def measured(self) -> bool:
        return self in (CellState.TODO, CellState.REMEASURE, CellState.DAMAGED)


@dataclass(frozen=True)
class PlannedCell:
    cell: Cell
    state: CellState
    source: Optional[StudyStore] = None  # REUSE: the study to copy from; REMEASURE: the study whose copy is not used

    def label(self) -> str:
        """The state as the dry run prints it: done, todo, damaged, reuse:<study>, todo:<study> (its lane
        is measured whole)."""
        if self.state is CellState.REUSE:
            return f"reuse:{self.source.root.name}"  # type: ignore[union-attr]
        if self.state is CellState.REMEASURE:
            return f"todo:{self.source.root.name}"  # type: ignore[union-attr]
        return self.state.value


@dataclass(frozen=True)
class Plan:
    entries: Tuple[PlannedCell, ...]
    options: RunOptions  # how the command runs (dry run, tracking, report settings, Ray connection, progress)

    @property
    def cells(self) -> List[Cell]:
        return [e.cell for e in self.entries]

    def having(self, *states: CellState) -> List[PlannedCell]:
        return [e for e in self.entries if e.state in states]

    @property
    def to_measure(self) -> List[Cell]:
        return [e.cell for e in self.entries if e.state.measured]

    def lanes(self, cluster_gpus: float) -> List[LaneSpec]:
        """The cells to measure in lanes, on a cluster of ``cluster_gpus`` GPUs (it decides whether a
        ``hardware=auto`` cell takes a GPU)."""
        return group_lanes(self.to_measure, cluster_gpus)


def store_for(cell: Cell) -> StudyStore:
    return StudyStore(cell.settings.output_root, cell.settings.study)


def measured_by_another_study(cell: Cell) -> Optional[StudyStore]:
    """Another study folder under the output root holding this cell complete and all ok, or None.

    The cell id hashes everything the measurement depends on and nothing else (not the study
    name), so a complete cell of the same id is the same measurement.
    """
    root = Path(cell.settings.output_root).expanduser().resolve()
    if not root.is_dir():
        return None
    for study_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name != cell.settings.study):
        other = StudyStore(root, study_dir.name)
        try:
            if other.is_complete(cell.id, retry_failed=True):
                return other
        except DamagedResultError:  # another study's damaged copy is not a source; its own run repairs it
            continue
    return None


def _own_state(cell: Cell) -> PlannedCell:
    """The cell's state from the stored results alone, before lanes are considered."""
    store = store_for(cell)
    try:
        if store.is_complete(cell.id, cell.settings.retry_failed):
            return PlannedCell(cell, CellState.DONE)
    except DamagedResultError:
        return PlannedCell(cell, CellState.DAMAGED)
    found = measured_by_another_study(cell) if cell.settings.reuse_cells else None
    if found is not None:
        return PlannedCell(cell, CellState.REUSE, found)
    return PlannedCell(cell, CellState.TODO)


def build_plan(cells: List[Cell]) -> Plan:
    """Every cell's state, with the rule of ``ray.one_gpu_per`` lanes: a lane's cells that other studies
    measured are reused only when the whole lane can be, from results taken on one device; otherwise
    they are measured again beside the rest of the lane (REMEASURE), so that every comparison the lane
    holds is one device's. (Cells already complete in this study stay done: a resumed lane keeps what it
    measured.) Reads the output root; writes nothing."""
    entries = [_own_state(c) for c in cells]
    lanes: Dict[str, List[int]] = {}
    for i, cell in enumerate(cells):
        if cell.settings.ray.one_gpu_per != "cell":
            lanes.setdefault(lane_key(cell), []).append(i)
    for members in lanes.values():
        reused = [i for i in members if entries[i].state is CellState.REUSE]
        if not reused:
            continue
        whole = not any(entries[i].state in (CellState.TODO, CellState.DAMAGED) for i in members)
        devices = {d for i in reused for d in entries[i].source.cell_devices(entries[i].cell.id)}  # type: ignore
        if not whole or len(devices) > 1:
            for i in reused:
                e = entries[i]
                entries[i] = PlannedCell(cells[i], CellState.REMEASURE, e.source)
    return Plan(tuple(entries), run_options(cells))
