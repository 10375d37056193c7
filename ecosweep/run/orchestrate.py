"""Run a planned study: skip finished cells, reuse cells other studies measured, measure the
rest on Ray, store, summarise.

The driver process is the only writer: each outcome is written to Parquet the moment it
arrives (atomically), then mirrored to MLflow when tracking is on. A killed driver loses
at most the cells that were in flight; the same command resumes.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, TextIO

import pyarrow as pa
from omegaconf import OmegaConf

from ecosweep.cells import Cell
from ecosweep.plan import CellState, Plan, store_for
from ecosweep.results.schema import requests_to_table, rows_to_table
from ecosweep.results.store import read_results
from ecosweep.results.timing import TimeBreakdown, cell_breakdown, study_breakdown
from ecosweep.run.progress import Progress
from ecosweep.run.scheduler import CellScheduler, Cluster, connect_ray
from ecosweep.run.worker import CellOutcome
from ecosweep.tracking import make_tracker

log = logging.getLogger("ecosweep")


@dataclass
class StudyRun:
    """What one invocation did."""

    run_id: str
    plan: Plan
    reused: Dict[str, str] = field(default_factory=dict)  # cell id -> the study it was copied from
    marks: Dict[str, float] = field(default_factory=dict)  # driver milestones, unix seconds (see DRIVER_PHASES)
    outcomes: Dict[str, CellOutcome] = field(default_factory=dict)
    interrupted: bool = False  # stopped by Ctrl-C / SIGINT before every cell was measured
    tracker: Any = None  # the study's tracker, finished after the report (ecosweep.tracking)

    @property
    def cells(self) -> List[Cell]:
        return self.plan.cells

    @property
    def skipped(self) -> List[Cell]:
        """Cells complete in their study already."""
        return [e.cell for e in self.plan.having(CellState.DONE)]

    @property
    def remeasured(self) -> Dict[str, str]:
        """Cell id -> the study whose copy its lane did not use (measured again)."""
        return {e.cell.id: e.source.root.name for e in self.plan.having(CellState.REMEASURE)}  # type: ignore[union-attr]

    @property
    def failed(self) -> List[Cell]:
        return [c for c in self.cells if c.id in self.outcomes and self.outcomes[c.id].status != "ok"]


def persist_outcome(cell: Cell, outcome: CellOutcome) -> pa.Table:
    """Write the cell's config, trace, rows and wall-time breakdown (rows last but one); returns the rows'
    table as written, for the other sinks."""
    store = store_for(cell)
    t = time.perf_counter()
    store.write_config(cell.id, OmegaConf.to_yaml(OmegaConf.structured(cell.settings)))
    if outcome.trace is not None:
        store.write_trace(cell.id, outcome.trace)
    store.write_profile(cell.id, outcome.profile_trace, outcome.profile_kernels_csv)
    store.write_process_profile(cell.id, outcome.process_profile)
    if outcome.requests:
        store.write_requests(cell.id, requests_to_table(outcome.requests))
    table = rows_to_table(outcome.rows)
    store.write_cell(cell.id, table)
    first = outcome.rows[0] if outcome.rows else {}
    timing: Dict[str, Any] = {
        "cell_id": cell.id, "label": cell.label, "status": outcome.status, "run_id": first.get("run_id"),
        "host": first.get("host"), "gpu_count": first.get("gpu_count"),
        "cuda_visible_devices": outcome.cuda_visible_devices, "ray_node_id": outcome.ray_node_id,
        "process_id": outcome.process_id,
        "launched_unix_s": outcome.launched_unix_s, "actor_started_unix_s": outcome.started_unix_s,
        "finished_unix_s": outcome.finished_unix_s, "collected_unix_s": outcome.collected_unix_s or time.time(),
        "idle_baseline_source": first.get("idle_baseline_source"),
        "fidelity_reference_source": first.get("fidelity_reference_source"),
        "engine_reference_source": first.get("engine_reference_source"),
        "profile_detail_s": outcome.profile_phases_s or None,
        "imports_detail_s": outcome.phase_details_s.get("imports_s"),
    }
    write_s = time.perf_counter() - t
    timing["written_unix_s"] = written = time.time()
    timing.update(cell_breakdown(outcome.launched_unix_s, outcome.started_unix_s, outcome.finished_unix_s, written,
                                 outcome.phases_s, write_s))
    store.write_timing(cell.id, timing)
    return table


def _prepare_store(run: StudyRun, plan: Plan, out: TextIO) -> None:
    """The writes before measuring: damaged files moved aside, other studies' cells copied in; says so."""
    for entry in plan.having(CellState.DAMAGED):
        cell, store = entry.cell, store_for(entry.cell)
        reason = store.is_damaged(cell.id) or "unreadable"
        moved = store.quarantine(cell.id, reason)
        print(f"WARNING: {store.cell_path(cell.id)} was damaged ({reason}); moved to {moved}, and the cell "
              f"{cell.label} is measured again.", file=out)
    for entry in plan.having(CellState.REUSE):
        cell, source = entry.cell, entry.source
        store_for(cell).adopt_cell(source, cell.id, cell.settings.study,  # type: ignore[arg-type]
                                   OmegaConf.to_yaml(OmegaConf.structured(cell.settings)))
        run.reused[cell.id] = source.root.name  # type: ignore[union-attr]
    if run.reused:
        by_study = Counter(run.reused.values())
        print(f"Reusing {len(run.reused)} of {len(run.cells)} cells that "
              + ", ".join(f"{name} ({n})" for name, n in sorted(by_study.items()))
              + " already measured (same cell id; reuse_cells=false measures them again).", file=out)
    if run.remeasured:
        print(f"Measuring {len(run.remeasured)} cell(s) again that "
              + ", ".join(sorted(set(run.remeasured.values())))
              + " already measured: ray.one_gpu_per measures each lane's cells together on one GPU, and "
                "the rest of their lane is not measured yet (ray.one_gpu_per=cell reuses them).", file=out)


def run_study(plan: Plan, out: TextIO = sys.stdout, marks: Optional[Dict[str, float]] = None) -> StudyRun:
    """Measure every cell of ``plan`` that it says to measure, after copying in the ones it reuses. Cells
    may belong to several studies.

    ``marks``: driver milestones recorded before this call (unix seconds), kept in ``run.marks``.
    """
    cells = plan.cells
    run = StudyRun(run_id=uuid.uuid4().hex[:12], plan=plan, marks=dict(marks or {}))
    todo, adopt = plan.to_measure, [e.cell for e in plan.having(CellState.REUSE)]
    if run.skipped:
        print(f"Skipping {len(run.skipped)} of {len(cells)} cells already complete "
              f"(results under {store_for(run.skipped[0]).cells_dir}).", file=out)
    if not todo and not adopt:
        print("Nothing to run: every cell of this study is complete.", file=out)
        return run


    started_ray = False
    try:
        if todo:  # the cluster must host every cell before anything is written, reused copies included
            run.marks["ray_connect"] = time.time()
            started_ray = connect_ray(plan.options)
            run.marks["ray_ready"] = time.time()
            cluster = Cluster.read()
            cluster.check_hosts(todo)
        _prepare_store(run, plan, out)
        tracker = run.tracker = make_tracker(plan.options, todo or adopt, out)
        for cell in adopt:
            tracker.log_cell(cell, None, store_for(cell))  # copied: read back from its file
        if todo:
            _measure(run, cluster, tracker, Progress(len(todo), plan.options.progress, stream=out))
        else:
            tracker.close(run)
            print("Nothing left to measure: every other cell of this study is complete.", file=out)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
        if "ray_ready" in run.marks:
            run.marks["ray_stopped"] = time.time()
    return run


def _measure(run: StudyRun, cluster: Cluster, tracker: Any, progress: Progress) -> None:
    """Measure the plan's cells on ``cluster``; each outcome is stored, then mirrored, as it arrives. Ctrl-C ends
    the run with what is stored (``run.interrupted``)."""

    def on_outcome(cell: Cell, outcome: CellOutcome) -> None:
        stored = persist_outcome(cell, outcome)  # Parquet first: it is the source of truth
        run.outcomes[cell.id] = outcome
        tracker.log_cell(cell, stored.to_pylist(), store_for(cell))  # the rows as written, not read back
        run.marks["last_result"] = time.time()

    try:
        CellScheduler(run.plan, run.run_id, cluster, on_outcome, progress).run()
    except KeyboardInterrupt:
        run.interrupted = True  # the cells stored so far are complete; the same command resumes
    finally:
        progress.close()
        tracker.close(run)


# (phase, from mark, to mark): where one invocation's wall time went, in order.
DRIVER_PHASES = [
    ("start_and_plan_s", "process_start", "planned"),           # interpreter, imports, Hydra, planning
    ("skip_reuse_track_s", "planned", "ray_connect"),           # finding complete cells, MLflow set-up
    ("ray_start_s", "ray_connect", "ray_ready"),
    ("until_first_launch_s", "ray_ready", "first_launch"),
    ("cells_s", "first_launch", "last_result"),                 # first actor asked for -> last result stored
    ("ray_stop_s", "last_result", "ray_stopped"),
    ("summary_and_report_s", "ray_stopped", "report_done"),
]


def driver_timing(run: StudyRun) -> Optional[Dict[str, object]]:
    """Where the invocation's wall time went outside and around the cells, or None when no cell ran.

    Durations in seconds; a phase whose marks are missing is left out.
    """
    if not run.outcomes:
        return None
    marks = dict(run.marks)
    launched = [o.launched_unix_s for o in run.outcomes.values() if o.launched_unix_s]
    if launched:
        marks["first_launch"] = min(launched)
    phases = {name: marks[b] - marks[a] for name, a, b in DRIVER_PHASES if a in marks and b in marks}
    first, last = min(marks.values()), max(marks.values())
    return {"run_id": run.run_id, "cells_measured": len(run.outcomes), "cells_skipped": len(run.skipped),
            "cells_reused": len(run.reused), "wall_s": last - first, **phases,
            "marks_unix_s": {k: marks[k] for k in sorted(marks, key=marks.get)}}


def write_driver_timing(run: StudyRun, out: TextIO = sys.stdout) -> None:
    """Store the driver timing under each touched study's runs/ folder and print it on one line."""
    timing = driver_timing(run)
    if timing is None:
        return
    stores = [store_for(c) for c in run.cells if c.id in run.outcomes]
    for store in {store.root: store for store in stores}.values():
        store.write_run_timing(run.run_id, timing)
    parts = ", ".join(f"{name[:-2].replace('_', ' ')} {timing[name]:.1f} s" for name, _, _ in DRIVER_PHASES
                      if name in timing)
    print(f"Driver: {timing['wall_s']:.1f} s wall = {parts}.", file=out)


def summary_table(cells: List[Cell]):
    """Per-cell summary (one line per cell) of the stored results of ``cells``."""
    import pandas as pd

    paths = sorted({store_for(c).cell_path(c.id) for c in cells if store_for(c).cell_path(c.id).exists()})
    if not paths:
        return pd.DataFrame()
    df = read_results(paths).to_pandas()
    df["engine"] = df.engine_variant.fillna(df.engine).fillna("eager")
    agg = df.groupby("cell_id", sort=False).agg(
        study=("study", "first"), model=("model", "first"), quantization=("quantization", "first"),
        engine_=("engine", "first"), batch_size=("batch_size", "first"), status=("status", "first"),
        reps=("repetition", "count"),
        tok_s=("tok_s", "mean"), energy_j_per_1k_tok=("energy_j_per_1k_tok", "mean"),
        energy_source=("energy_source", "first"),
    ).rename(columns={"engine_": "engine"})  # (agg's own `engine=` keyword is pandas' numba switch)
    order = {c.id: i for i, c in enumerate(cells)}
    return agg.reset_index().sort_values("cell_id", key=lambda s: s.map(order))


def measured_time(run: StudyRun) -> Optional[TimeBreakdown]:
    """Where the wall time of the cells this run measured went (results.timing), or None when it measured none."""
    timings = []
    for cell in run.cells:
        path = store_for(cell).timing_path(cell.id)
        if cell.id in run.outcomes and path.exists():
            try:
                timings.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
    return study_breakdown(timings)


def print_summary(run: StudyRun, out: TextIO = sys.stdout) -> None:
    import pandas as pd

    table = summary_table(run.cells)
    roots = sorted({str(store_for(c).root) for c in run.cells})
    print("", file=out)
    if not table.empty:
        with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_rows", 500):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"), file=out)
    for root in roots:
        print(f"Results: {root}/cells/ (one Parquet file per cell; read with pandas.read_parquet)", file=out)
    breakdown = measured_time(run)
    if breakdown is not None:
        print(f"Time: {breakdown.one_line()} (timings/<cell_id>.json per cell).", file=out)
    if run.failed:
        print(f"\n{len(run.failed)} cell(s) failed:", file=out)
        for cell in run.failed:
            err = (run.outcomes[cell.id].error or "").strip().splitlines()
            print(f"  {cell.id} {cell.label}: {run.outcomes[cell.id].status}: {err[0] if err else ''}", file=out)
