"""What one command does with each of its cells, decided once, before anything is written or runs.

:func:`build_plan` reads the output root and gives every validated cell a :class:`CellState` — skip it,
copy it from another study, measure it (again) — and :meth:`Plan.lanes` groups the cells to measure into
*lanes*, the cells that share one actor and so one set of GPUs (``ray.one_gpu_per``), with the GPUs each
lane's actor reserves. The dry run prints the plan, the pre-flight checks count from it, and the study
and the driver consume it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ecosweep.planner import Cell, RunOptions, measured_identity, run_options, stable_digest
from ecosweep.results.store import DamagedResultError, StudyStore
from ecosweep.workload.placement import requested_gpus


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
    source_id: Optional[str] = None  # the cell's id in ``source`` (its legacy id there, or its id)
    legacy_here: bool = False  # its own study holds it under its legacy id: renamed to its id before the run

    def label(self) -> str:
        """The state as the dry run prints it: done, todo, damaged, reuse:<study>, todo:<study> (its lane
        is measured whole); "(stored as <id>)" where its own study holds it under its legacy id."""
        if self.state is CellState.REUSE:
            text = f"reuse:{self.source.root.name}"  # type: ignore[union-attr]
        elif self.state is CellState.REMEASURE:
            text = f"todo:{self.source.root.name}"  # type: ignore[union-attr]
        else:
            text = self.state.value
        return f"{text} (stored as {self.cell.legacy_id})" if self.legacy_here else text


@dataclass(frozen=True)
class LaneSpec:
    """Cells that share one actor, and so one set of GPUs, measured one after another in this order."""

    key: str
    cells: Tuple[Cell, ...]
    gpus: float  # GPUs its actor reserves (0: a CPU cell's lane)


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


def _ids(cell: Cell) -> List[str]:
    """The ids a cell's results may be stored under: its id, then its legacy id (``planner.legacy_cell_id``)."""
    return [cell.id] + ([cell.legacy_id] if cell.legacy_id and cell.legacy_id != cell.id else [])


def measured_by_another_study(cell: Cell) -> Optional[Tuple[StudyStore, str]]:
    """Another study folder under the output root holding this cell complete and all ok, with the id it has
    there (its id, or its legacy id in a folder written before 2026-11-27), or None.

    The cell id hashes everything the measurement depends on and nothing else (not the study
    name), so a complete cell of the same id is the same measurement.
    """
    root = Path(cell.settings.output_root).expanduser().resolve()
    if not root.is_dir():
        return None
    for study_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name != cell.settings.study):
        other = StudyStore(root, study_dir.name)
        for stored_id in _ids(cell):
            try:
                if other.is_complete(stored_id, retry_failed=True):
                    return other, stored_id
            except DamagedResultError:  # another study's damaged copy is not a source; its own run repairs it
                continue
    return None


def _own_state(cell: Cell) -> PlannedCell:
    """The cell's state from the stored results alone, before lanes are considered."""
    store = store_for(cell)
    legacy = _ids(cell)[1:]
    legacy_here = bool(legacy) and not store.cell_path(cell.id).exists() and store.cell_path(legacy[0]).exists()
    here = legacy[0] if legacy_here else cell.id
    try:
        if store.is_complete(here, cell.settings.retry_failed):  # type: ignore[arg-type]
            return PlannedCell(cell, CellState.DONE, legacy_here=legacy_here)
    except DamagedResultError:
        return PlannedCell(cell, CellState.DAMAGED, legacy_here=legacy_here)
    found = measured_by_another_study(cell) if cell.settings.reuse_cells else None
    if found is not None:
        return PlannedCell(cell, CellState.REUSE, found[0], found[1], legacy_here)
    return PlannedCell(cell, CellState.TODO, legacy_here=legacy_here)


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
        devices = {d for i in reused for d in entries[i].source.cell_devices(entries[i].source_id)}  # type: ignore
        if not whole or len(devices) > 1:
            for i in reused:
                e = entries[i]
                entries[i] = PlannedCell(cells[i], CellState.REMEASURE, e.source, e.source_id, e.legacy_here)
    return Plan(tuple(entries), run_options(cells))


def lane_key(cell: Cell) -> str:
    """Cells with the same key share one GPU, measured one after another (``ray.one_gpu_per``).

    ``cell``: every cell its own key. ``comparison``: the cell's measured identity without
    quantization, engine and batch size, so the two sides of every comparison the report makes
    (a precision against fp16, an engine against eager, a batch against batch 1) meet on one
    device. ``precision``: the same, but batch size stays in the key: each batch size's
    precisions and engines share a GPU, and batch sizes spread over GPUs (changes against batch 1
    then cross devices, which the report flags). ``study``: the study.
    """
    s = cell.settings
    mode = s.ray.one_gpu_per
    if mode == "study":
        return f"study:{s.study}"
    if mode in ("comparison", "precision"):
        varying = ("quantization", "engine") if mode == "precision" else ("quantization", "engine", "batch_size")
        identity = {k: v for k, v in measured_identity(s).items() if k not in varying}
        return f"{mode}:" + stable_digest(identity)
    return f"cell:{cell.id}"


def gpus_per_cell(cell: Cell, cluster_gpus: float) -> float:
    """GPUs a cell's actor reserves: what it asks for (``ray.gpus_by_quantization``, ``ray.gpus_per_cell``)
    when set, else one whole GPU for CUDA cells and none for CPU cells."""
    s = cell.settings
    explicit = requested_gpus(s)
    if explicit is not None:
        return explicit
    if s.hardware.device == "cuda" or (s.hardware.device == "auto" and cluster_gpus > 0):
        return 1.0
    return 0.0


def group_lanes(cells: List[Cell], cluster_gpus: float) -> List[LaneSpec]:
    """Group cells into lanes in the order their first cell appears. CPU cells reserve no device,
    so each is its own lane; GPU cells share a lane when their ``lane_key`` (and the resources
    their actor asks for) agree."""
    members: Dict[str, List[Cell]] = {}
    gpus: Dict[str, float] = {}
    for cell in cells:
        need = gpus_per_cell(cell, cluster_gpus)
        if need > 0:
            key = f"{lane_key(cell)}|gpus={need:g}|{sorted(cell.settings.ray.resources.items())}"
        else:
            key = f"cell:{cell.id}"
        members.setdefault(key, []).append(cell)
        gpus[key] = need
    return [LaneSpec(key, tuple(cells_of), gpus[key]) for key, cells_of in members.items()]
