"""The Ray driver: one actor per cell, results collected as cells finish.

Every cell gets a fresh actor (a fresh process, so a fresh CUDA context and no state
carried from the previous cell). A GPU cell's actor asks for one whole GPU, so Ray
never puts two cells on one device; the driver keeps at most as many cells in flight
as there are slots (GPUs, or ``ray.max_concurrent_cpu_cells`` for CPU cells), polls
them with ``ray.wait`` and hands each outcome to ``on_outcome`` as soon as it arrives.
An actor that dies (segfault, ``os._exit``, lost node) is retried
``ray.actor_retries`` times, then recorded as a failed cell.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional

from ecosweep.cell_runner import CellOutcome, failure_row
from ecosweep.config.schema import RayConfig
from ecosweep.errors import ConfigError
from ecosweep.planner import Cell
from ecosweep.progress import Progress

log = logging.getLogger("ecosweep")

_ACTOR_CLASS = None


def _actor_class():
    """The Ray actor class, created on first use so importing this module needs no Ray."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        import ray

        @ray.remote(max_restarts=0, max_task_retries=0)
        class CellActor:
            def run(self, cell: Cell, run_id: str) -> CellOutcome:
                from ecosweep.cell_runner import execute_cell

                return execute_cell(cell, run_id)

        _ACTOR_CLASS = CellActor
    return _ACTOR_CLASS


def connect_ray(rc: RayConfig) -> bool:
    """Connect to (or start) Ray. Returns True when this call started it (and should stop it)."""
    import ray

    if ray.is_initialized():
        return False
    address = rc.address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs: Dict[str, Any] = {"address": address, "logging_level": logging.WARNING,
                              "configure_logging": True, "log_to_driver": True}
    if address == "local":
        kwargs.update(include_dashboard=False, num_cpus=rc.num_cpus, num_gpus=rc.num_gpus)
    elif rc.num_cpus is not None or rc.num_gpus is not None:
        log.warning("ray.num_cpus / ray.num_gpus apply to a local Ray only; ignored for %s", address)
    ray.init(**kwargs)
    return True


def gpus_per_cell(cell: Cell, cluster_gpus: float) -> float:
    """GPUs a cell's actor reserves: one whole GPU for CUDA cells, none for CPU cells."""
    s = cell.settings
    explicit = s.ray.gpus_per_cell
    if explicit is not None:
        return float(explicit)
    if s.hardware.device == "cuda" or (s.hardware.device == "auto" and cluster_gpus > 0):
        return 1.0
    return 0.0


@dataclass
class _Flight:
    cell: Cell
    actor: Any
    attempt: int
    slot: str
    started: float
    launched_unix_s: float


class CellScheduler:
    """Runs cells on Ray actors with bounded concurrency and per-cell fault isolation."""

    def __init__(self, cells: List[Cell], run_id: str, on_outcome: Callable[[Cell, CellOutcome], None],
                 progress: Progress, poll_s: float = 1.0):
        self.cells = cells
        self.run_id = run_id
        self.on_outcome = on_outcome
        self.progress = progress
        self.poll_s = poll_s

    def _plan_slots(self) -> None:
        """Read the cluster's GPUs and refuse, before launching anything, cells it cannot host."""
        import ray

        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        self._gpus = gpus
        self._resources = resources
        problems = []
        for cell in self.cells:
            need = gpus_per_cell(cell, gpus)
            if need > gpus:
                problems.append(
                    f"cell {cell.id} ({cell.label}, hardware={cell.settings.hardware.name}) needs "
                    f"{need:g} GPU per cell but the Ray cluster has {gpus:g} GPUs; use hardware=cpu "
                    "or hardware=auto on a machine without GPUs."
                )
            for name, amount in cell.settings.ray.resources.items():
                if float(resources.get(name, 0)) < amount:
                    problems.append(
                        f"ray.resources asks for {name}={amount:g} per cell but the cluster offers "
                        f"{float(resources.get(name, 0)):g}; start the nodes with --resources."
                    )
        if problems:
            raise ConfigError(sorted(set(problems)))

    def _capacity(self, cell: Cell) -> int:
        """Cells of this kind (GPU or CPU) to keep in flight: no more than the cluster can host."""
        need = gpus_per_cell(cell, self._gpus)
        caps = [int(self._gpus // need) if need > 0 else cell.settings.ray.max_concurrent_cpu_cells]
        caps += [int(float(self._resources.get(name, 0)) // amount)
                 for name, amount in cell.settings.ray.resources.items() if amount > 0]
        return max(1, min(caps))

    def _launch(self, cell: Cell, attempt: int, inflight: Dict[Any, _Flight]) -> None:
        s = cell.settings
        need = gpus_per_cell(cell, self._gpus)
        actor = _actor_class().options(
            num_cpus=s.ray.cpus_per_cell, num_gpus=need, resources=dict(s.ray.resources) or None,
        ).remote()
        ref = actor.run.remote(cell, self.run_id)
        slot = "GPU" if need > 0 else "CPU"
        inflight[ref] = _Flight(cell, actor, attempt, slot, time.monotonic(), time.time())
        self.progress.started(cell.id, cell.label, slot)

    def run(self) -> None:
        import ray
        from ray.exceptions import RayActorError, WorkerCrashedError

        self._plan_slots()
        pending: Deque[tuple[Cell, int]] = deque((c, 0) for c in self.cells)
        inflight: Dict[Any, _Flight] = {}
        try:
            while pending or inflight:
                # launch while the next cell's kind of slot has room (keeps the given order)
                while pending:
                    cell, attempt = pending[0]
                    kind_busy = sum(1 for f in inflight.values()
                                    if (gpus_per_cell(f.cell, self._gpus) > 0) == (gpus_per_cell(cell, self._gpus) > 0))
                    if kind_busy >= self._capacity(cell):
                        break
                    pending.popleft()
                    self._launch(cell, attempt, inflight)
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=self.poll_s)
                if not ready:
                    self.progress.tick()
                    continue
                for ref in ready:
                    flight = inflight.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except (RayActorError, WorkerCrashedError) as exc:
                        if flight.attempt < flight.cell.settings.ray.actor_retries:
                            self.progress.retrying(flight.cell.id, flight.cell.label, flight.attempt + 1,
                                                   f"actor died: {type(exc).__name__}")
                            pending.appendleft((flight.cell, flight.attempt + 1))
                            continue
                        outcome = self._died(flight, exc)
                    finally:
                        ray.kill(flight.actor, no_restart=True)
                    outcome.launched_unix_s = flight.launched_unix_s
                    self.on_outcome(flight.cell, outcome)
                    self.progress.finished(flight.cell.id, flight.cell.label, outcome.status,
                                           time.monotonic() - flight.started)
        finally:
            for flight in inflight.values():  # driver interrupted: do not leave actors behind
                ray.kill(flight.actor, no_restart=True)

    def _died(self, flight: _Flight, exc: BaseException) -> CellOutcome:
        error = (f"actor died {flight.attempt + 1} time(s) (retries: "
                 f"{flight.cell.settings.ray.actor_retries}): {type(exc).__name__}: {exc}")
        row = failure_row(flight.cell, self.run_id, "failed", error)
        now = time.time()
        return CellOutcome(flight.cell.id, [row], "failed", error, None, {}, now, now)
