"""The Ray driver: cells run on GPU-pinned actors, results collected as cells finish.

Every cell runs in a fresh process (a fresh CUDA context, no state carried from the previous
cell). A GPU cell's actor asks for one whole GPU, so Ray never puts two cells on one device.
Cells are grouped into *lanes* (``ray.one_gpu_per``): with ``cell`` (the default) each cell is
its own lane and its own actor, on whichever GPU is free; with ``comparison`` or ``study`` the
cells of a lane share one actor, and so one GPU, and run one after another, each in a process
the actor starts. The driver keeps at most as many lanes in flight as there are slots (GPUs,
or ``ray.max_concurrent_cpu_cells`` for CPU cells), polls them with ``ray.wait`` and hands each
outcome to ``on_outcome`` as soon as it arrives. A cell whose process or actor dies (segfault,
``os._exit``, lost node) is retried ``ray.actor_retries`` times, then recorded as a failed cell.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from ecosweep.cells import Cell, RunOptions
from ecosweep.errors import ConfigError
from ecosweep.lanes import gpus_per_cell, resource_problems
from ecosweep.plan import Plan
from ecosweep.run.lane_process import LaneProcess
from ecosweep.run.prepared_process import PreparedProcesses
from ecosweep.run.progress import Progress
from ecosweep.run.reaper import start_reaper
from ecosweep.run.worker import (
    CellContext,
    CellOutcome,
    CellProcessDied,
    execute_cell,
    failure_row,
    run_in_fresh_process,
)

log = logging.getLogger("ecosweep")

_ACTOR_CLASS = None
_REAPER = None  # the local Ray's reaper process (kept: its pipe closes when this process ends)


def _actor_class():
    """The Ray actor class, created on first use so importing this module needs no Ray."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        import ray

        @ray.remote(max_restarts=0, max_task_retries=0)
        class CellActor:
            def run(self, cell: Cell, run_id: str, context: CellContext) -> CellOutcome:
                return execute_cell(cell, run_id, context=context)

            def run_isolated(self, cell: Cell, run_id: str, context: CellContext,
                             next_cell: Optional[Cell]) -> CellOutcome:
                """One of a shared lane's cells (``next_cell``: the lane's next one, None after its last)."""
                r = cell.settings.ray
                if r.process_per == "lane":  # one process for the lane's cells, in turn
                    if not hasattr(self, "lane_process"):
                        self.lane_process = LaneProcess()
                    return self.lane_process.run(cell, run_id, context)
                if r.prepare_next_process:  # a fresh process, imported while the cell before it ran
                    if not hasattr(self, "prepared"):
                        self.prepared = PreparedProcesses()
                    return self.prepared.run(cell, run_id, context, next_cell)
                return run_in_fresh_process(cell, run_id, context)

        _ACTOR_CLASS = CellActor
    return _ACTOR_CLASS


def connect_ray(options: RunOptions) -> bool:
    """Connect to (or start) the command's Ray (``options``: ray.address, ray.num_cpus, ray.num_gpus). Returns
    True when this call started it (and should stop it)."""
    import ray

    if ray.is_initialized():
        return False
    address = options.ray_address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs: Dict[str, Any] = {"address": address, "logging_level": logging.WARNING,
                              "configure_logging": True, "log_to_driver": True}
    if address == "local":
        kwargs.update(include_dashboard=False, num_cpus=options.ray_num_cpus, num_gpus=options.ray_num_gpus)
    elif options.ray_num_cpus is not None or options.ray_num_gpus is not None:
        log.warning("ray.num_cpus / ray.num_gpus apply to a local Ray only; ignored for %s", address)
    ray.init(**kwargs)
    if address == "local":  # a local Ray ends with this process, even a killed one (ray_reaper)
        global _REAPER
        _REAPER = start_reaper(ray.get_runtime_context().get_session_name())
    return True


@dataclass
class Lane:
    """Cells that share one actor and so one GPU, run in order; one cell unless ``ray.one_gpu_per``
    groups them."""

    key: str
    todo: Deque[Tuple[Cell, int]]  # (cell, attempt) still to run
    gpus: float = 0.0  # GPUs its actor reserves (0: a CPU cell's lane)
    shared: bool = False  # several cells: each runs in a fresh process the lane's actor starts
    actor: Any = None
    actor_earlier_lanes: int = 0  # lanes its actor measured before this one (ray.reuse_actors)


def runtime_lanes(plan: Plan, cluster_gpus: float) -> List[Lane]:
    """The plan's lanes (``Plan.lanes``) as the driver runs them: each with its cells still to run (attempt 0)."""
    return [Lane(spec.key, deque((cell, 0) for cell in spec.cells), gpus=spec.gpus, shared=len(spec.cells) > 1)
            for spec in plan.lanes(cluster_gpus)]


class StopRequest:
    """Ctrl-C (SIGINT) while cells run: the first asks the scheduler to stop once the outcomes that have
    arrived are stored — so no library call in between (an MLflow request) can swallow the interrupt — and
    a second raises KeyboardInterrupt at once. Installed only in the main thread; the previous handler is
    put back on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@dataclass
class _Flight:
    cell: Cell
    lane: Lane
    attempt: int
    slot: str
    started: float
    launched_unix_s: float


@dataclass(frozen=True)
class Cluster:
    """What the connected Ray cluster offers, read once: its resources (``ray.cluster_resources()``) and the
    GPUs of its largest live node."""

    resources: Dict[str, float]
    node_gpus: float

    @property
    def gpus(self) -> float:
        return float(self.resources.get("GPU", 0))

    @classmethod
    def read(cls) -> "Cluster":
        import ray

        node_gpus = max((float(n["Resources"].get("GPU", 0)) for n in ray.nodes() if n.get("Alive")), default=0.0)
        return cls(dict(ray.cluster_resources()), node_gpus)

    def check_hosts(self, cells: List[Cell]) -> None:
        """Refuse (ConfigError), before anything is launched or written, cells this cluster cannot host."""
        problems = resource_problems(cells, self.resources, self.node_gpus)
        if problems:
            raise ConfigError(problems)


class CellScheduler:
    """Runs the plan's cells to measure on Ray actors of ``cluster`` with bounded concurrency and per-cell fault
    isolation, handing each outcome to ``on_outcome`` as it arrives and telling ``progress``."""

    def __init__(self, plan: Plan, run_id: str, cluster: Cluster, on_outcome: Callable[[Cell, CellOutcome], None],
                 progress: Progress, poll_s: float = 1.0):
        self.plan = plan
        self.cells = plan.to_measure
        self.run_id = run_id
        self.on_outcome = on_outcome
        self.progress = progress
        self.poll_s = poll_s
        self._resources = cluster.resources
        self._gpus = cluster.gpus
        # the latest idle baseline measured on each GPU (idle.baseline_key), handed to every cell launched after it
        self._idle_baselines: Dict[str, Any] = {}
        # ray.reuse_actors: actors of finished shared lanes, waiting to take the next lane launched with the same
        # resources; (what it reserves, actor, lanes it measured). Released when no lane launched took them.
        self._idle_actors: List[Tuple[Tuple[Any, ...], Any, int]] = []

    def _capacity(self, cell: Cell) -> int:
        """Cells of this kind (GPU or CPU) to keep in flight: no more than the cluster can host."""
        need = gpus_per_cell(cell, self._gpus)
        caps = [int(self._gpus // need) if need > 0 else cell.settings.ray.max_concurrent_cpu_cells]
        caps += [int(float(self._resources.get(name, 0)) // amount)
                 for name, amount in cell.settings.ray.resources.items() if amount > 0]
        return max(1, min(caps))

    @staticmethod
    def _actor_options(lane: Lane, cell: Cell) -> Dict[str, Any]:
        """What an actor for ``lane`` reserves from Ray (its ``.options``)."""
        r = cell.settings.ray
        return dict(num_cpus=r.cpus_per_cell, num_gpus=lane.gpus, resources=dict(r.resources) or None)

    def _reserves(self, lane: Lane, cell: Cell) -> Tuple[Any, ...]:
        """The actor's options as a comparable key: an actor handed on takes only a lane reserving the same."""
        options = self._actor_options(lane, cell)
        return (options["num_cpus"], options["num_gpus"], tuple(sorted((options["resources"] or {}).items())))

    @staticmethod
    def _hands_on(lane: Lane, cell: Cell) -> bool:
        """ray.reuse_actors applies to ``lane``: only a shared lane's actor, whose cells run in processes of their
        own (or its lane process), holds no CUDA context another lane's cells could meet."""
        return lane.shared and cell.settings.ray.reuse_actors

    def _take_idle_actor(self, lane: Lane, cell: Cell) -> bool:
        """Give ``lane`` an idle actor of a finished lane reserving the same (ray.reuse_actors); False if none."""
        if not self._hands_on(lane, cell):
            return False
        wanted = self._reserves(lane, cell)
        for i, (reserves, actor, lanes_done) in enumerate(self._idle_actors):
            if reserves == wanted:
                del self._idle_actors[i]
                lane.actor, lane.actor_earlier_lanes = actor, lanes_done
                return True
        return False

    def _retire(self, lane: Lane, cell: Cell) -> None:
        """A lane has measured its last cell: keep its actor for the next lane (ray.reuse_actors) or end it."""
        if lane.actor is not None and self._hands_on(lane, cell):
            self._idle_actors.append((self._reserves(lane, cell), lane.actor, lane.actor_earlier_lanes + 1))
            lane.actor = None
        else:
            self._release(lane)

    def _release_idle_actors(self) -> None:
        """End the idle actors no lane took: they would hold their GPUs from lanes that need other resources."""
        import ray

        while self._idle_actors:
            ray.kill(self._idle_actors.pop()[1], no_restart=True)

    def _launch_next(self, lane: Lane, inflight: Dict[Any, _Flight]) -> None:
        """Run the lane's next cell on its actor (created on first use or after it died, unless a finished lane's
        actor is handed on)."""
        cell, attempt = lane.todo.popleft()
        if lane.actor is None and not self._take_idle_actor(lane, cell):
            lane.actor = _actor_class().options(**self._actor_options(lane, cell)).remote()
            lane.actor_earlier_lanes = 0
        context = CellContext(dict(self._idle_baselines), actor_earlier_lanes=lane.actor_earlier_lanes)
        if lane.shared:
            ref = lane.actor.run_isolated.remote(cell, self.run_id, context, lane.todo[0][0] if lane.todo else None)
        else:
            ref = lane.actor.run.remote(cell, self.run_id, context)
        slot = "GPU" if lane.gpus > 0 else "CPU"
        inflight[ref] = _Flight(cell, lane, attempt, slot, time.monotonic(), time.time())
        self.progress.started(cell.id, cell.label, slot)

    @staticmethod
    def _release(lane: Lane) -> None:
        import ray

        if lane.actor is not None:
            ray.kill(lane.actor, no_restart=True)
            lane.actor = None

    def run(self) -> None:
        pending: Deque[Lane] = deque(runtime_lanes(self.plan, self._gpus))
        inflight: Dict[Any, _Flight] = {}
        try:
            with StopRequest() as stop:
                self._loop(pending, inflight, stop)
            if stop.requested:
                raise KeyboardInterrupt  # what arrived is stored; the study ends as interrupted
        finally:
            for flight in inflight.values():  # driver interrupted: do not leave actors behind
                self._release(flight.lane)
            self._release_idle_actors()

    def _loop(self, pending: Deque[Lane], inflight: Dict[Any, _Flight], stop: StopRequest) -> None:
        """Launch lanes as slots free up and store each outcome as it arrives, until every lane is done or a
        stop is requested."""
        import ray

        while (pending or inflight) and not stop.requested:
            # start lanes while the next lane's kind of slot has room (keeps the given order)
            while pending:
                is_gpu = pending[0].gpus > 0
                kind_busy = sum(1 for f in inflight.values() if (f.lane.gpus > 0) == is_gpu)
                if kind_busy >= self._capacity(pending[0].todo[0][0]):
                    break
                self._launch_next(pending.popleft(), inflight)
            self._release_idle_actors()
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=self.poll_s)
            if not ready:
                self.progress.tick()
            for ref in ready:
                self._collect(inflight.pop(ref), ref, inflight)

    def _collect(self, flight: _Flight, ref: Any, inflight: Dict[Any, _Flight]) -> None:
        """A finished flight: retry a cell whose process or actor died (while retries last), else hand its
        outcome on and start the lane's next cell (or free the lane's actor)."""
        import ray
        from ray.exceptions import RayActorError, WorkerCrashedError

        lane = flight.lane
        try:
            outcome = ray.get(ref)
        except (RayActorError, WorkerCrashedError, CellProcessDied) as exc:
            if not isinstance(exc, CellProcessDied):  # the actor itself is gone
                self._release(lane)
            if flight.attempt < flight.cell.settings.ray.actor_retries:
                self.progress.retrying(flight.cell.id, flight.cell.label, flight.attempt + 1,
                                       f"{self._what_died(exc)} died: {type(self._cause(exc)).__name__}")
                lane.todo.appendleft((flight.cell, flight.attempt + 1))
                self._launch_next(lane, inflight)  # the lane keeps its slot
                return
            outcome = self._died(flight, exc)
        outcome.launched_unix_s, outcome.collected_unix_s = flight.launched_unix_s, time.time()
        baseline = outcome.idle_baseline
        if baseline is not None and baseline.key:
            self._idle_baselines[baseline.key] = baseline
        if lane.todo:
            self._launch_next(lane, inflight)
        else:
            self._retire(lane, flight.cell)
        self.on_outcome(flight.cell, outcome)
        self.progress.finished(flight.cell.id, flight.cell.label, outcome.status, time.monotonic() - flight.started)

    @staticmethod
    def _what_died(exc: BaseException) -> str:
        return "cell process" if isinstance(exc, CellProcessDied) else "actor"

    @staticmethod
    def _cause(exc: BaseException) -> BaseException:
        """The exception raised inside the actor, without Ray's wrapper (RayTaskError)."""
        cause = getattr(exc, "cause", None)
        return cause if isinstance(exc, CellProcessDied) and isinstance(cause, BaseException) else exc

    def _died(self, flight: _Flight, exc: BaseException) -> CellOutcome:
        cause = self._cause(exc)
        error = (f"{self._what_died(exc)} died {flight.attempt + 1} time(s) (retries: "
                 f"{flight.cell.settings.ray.actor_retries}): {type(cause).__name__}: {cause}")
        row = failure_row(flight.cell, self.run_id, "failed", error)
        now = time.time()
        return CellOutcome(flight.cell.id, [row], "failed", error, None, {}, now, now)
