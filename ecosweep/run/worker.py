"""Run one cell where it was scheduled (inside its Ray actor) and return its rows.

Never raises for a failure of the cell itself: an exception, including running out of
memory, becomes a single row with status ``failed`` or ``oom`` and the error text, so
the driver can store it and the rest of the study goes on.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ecosweep.cells import Cell, engine_variant
from ecosweep.config.compat import compiled_int_mm_problem, torchao_problem
from ecosweep.config.load_names import serving_load
from ecosweep.config.schema import StudyConfig
from ecosweep.measure.host import cpu_model, host_facts
from ecosweep.measure.idle import IdleBaseline
from ecosweep.measure.meters import discard_launched_ahead, launch_samplers_ahead, synchronize_devices
from ecosweep.measure.meters.nvml_device import driver_version
from ecosweep.measure.phases import PhaseClock
from ecosweep.measure.protocol import CellProtocol, IdleContext
from ecosweep.profiling.call import profile_call
from ecosweep.results.store import profile_trace_name
from ecosweep.run.metered import run_metered
from ecosweep.run.model_prep import load_with_fidelity
from ecosweep.run.process_profile import ProcessProfile
from ecosweep.run.serving_cell import measure_serving, prepare_serving, requests_per_repetition
from ecosweep.run.token_gate import verify_against_generate
from ecosweep.workload.engines import build_workload, engine_facts
from ecosweep.workload.generation import FixedLengthGeneration
from ecosweep.workload.int8_outliers import count_decomposed_columns
from ecosweep.workload.kernel_path import kernel_path
from ecosweep.workload.placement import gpu_count
from ecosweep.workload.references import ReferenceStore


@dataclass
class CellOutcome:
    """What an actor sends back to the driver (picklable)."""

    cell_id: str
    rows: List[Dict[str, Any]]
    status: str  # ok | failed | oom
    error: Optional[str] = None
    trace: Any = None  # pyarrow.Table of sampler readings, or None
    phases_s: Dict[str, float] = field(default_factory=dict)  # seconds per phase in the cell's process (results.timing)
    started_unix_s: float = 0.0
    finished_unix_s: float = 0.0
    cuda_visible_devices: Optional[str] = None
    launched_unix_s: float = 0.0  # set by the driver: when it asked Ray to run the cell
    collected_unix_s: float = 0.0  # set by the driver: when the outcome arrived
    ray_node_id: Optional[str] = None
    process_id: Optional[int] = None  # the process that measured the cell (a fresh one per cell)
    profile_trace: Optional[bytes] = None  # gzip'd Chrome trace of the profiled call (profile=true)
    profile_kernels_csv: Optional[str] = None  # its distinct kernels and their classes (kernel_profile.kernel_table)
    idle_baseline: Any = None  # the idle.IdleBaseline the rows are net of, offered to the next cells on its GPUs
    profile_phases_s: Dict[str, float] = field(default_factory=dict)  # inside profile_s: the traced call, its events
    requests: Optional[List[Dict[str, Any]]] = None  # scenario=serving: one row per request of every repetition
    process_profile: Optional[str] = None  # profile_process=true: the process's cProfile table (run.process_profile)
    phase_details_s: Dict[str, Dict[str, float]] = field(default_factory=dict)  # imports_s per library


class CellProcessDied(RuntimeError):
    """The process measuring a cell exited without sending its outcome (segfault, os._exit, kill)."""


def config_row(cell: Cell, run_id: str) -> Dict[str, Any]:
    """Columns that describe what the cell is, shared by all of its rows."""
    s = cell.settings
    q = s.quantization
    return {
        "study": s.study,
        "cell_id": cell.id,
        "run_id": run_id,
        "model": s.model.name,
        "model_type": s.model.model_type,
        "params_b_nominal": s.model.params_b,
        "weights": s.weights,
        "quantization": q.name,
        "engine": s.engine.name,
        "engine_variant": engine_variant(s.engine),
        "quant_method": q.method,
        "dtype": q.dtype,
        "bnb_4bit_quant_type": q.bnb_4bit_quant_type,
        "bnb_4bit_compute_dtype": q.bnb_4bit_compute_dtype,
        "bnb_4bit_use_double_quant": q.bnb_4bit_use_double_quant if q.method == "bnb_4bit" else None,
        "llm_int8_threshold": q.llm_int8_threshold,
        "torchao_type": q.torchao_type,
        "outlier_features_count": s.outlier_features.count,
        "batch_size": s.batch_size,
        "input_tokens": s.input_tokens,
        "output_tokens": s.output_tokens,
        "hardware": s.hardware.name,
        **scenario_columns(s),
    }


def scenario_columns(s: StudyConfig) -> Dict[str, Any]:
    """The workload's shape: ``scenario`` on every row; a served cell's load and stream settings besides."""
    if s.scenario.name != "serving":
        return {"scenario": s.scenario.name}
    v = s.serving
    return {"scenario": "serving", "serving_load": serving_load(v), "serving_arrival": v.arrival,
            "serving_max_batch_requests": v.max_batch,
            "serving_request_rate_rps": v.request_rate_rps if v.arrival == "poisson" else None,
            "serving_concurrency_requests": v.concurrency if v.arrival == "closed_loop" else None,
            "serving_requests": requests_per_repetition(v), "serving_lengths": v.lengths,
            "serving_slos": ",".join(f"{name}:{slo.ttft_ms:g}/{slo.tpot_ms:g}ms" for name, slo in v.slos.items())}


def failure_row(cell: Cell, run_id: str, status: str, error: str,
        extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    from datetime import datetime, timezone

    row = config_row(cell, run_id)
    row.update(extra or {})
    row.update(status=status, error=error, repetition=None, energy_source="none",
               timestamp_utc=datetime.now(timezone.utc))
    return row


def is_oom(exc: BaseException) -> bool:
    """CUDA or host out-of-memory: Python's MemoryError, torch's OutOfMemoryError (the CUDA caching
    allocator), and the two that torch raises as a plain RuntimeError — a CUDA call that failed to allocate
    ("CUDA error: out of memory", e.g. inside cuBLAS) and its CPU allocator ("can't allocate memory")."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except ImportError:
        pass
    text = str(exc)
    return "CUDA error: out of memory" in text or "can't allocate memory" in text


def _ray_node_id() -> Optional[str]:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # outside Ray (tests, scripts): no node id
        return None


# Fault injection for tests and for rehearsing a deployment: a cell whose label contains this
# text makes its actor process exit at once, as a segfault would (the driver sees actor death).
CRASH_ENV = "ECOSWEEP_TESTING_CRASH_CELL"


def _testing_crash(cell: Cell) -> None:
    marker = os.environ.get(CRASH_ENV)
    if marker and marker in cell.label:
        os._exit(17)


# A meeting point for tests of parallel cells: "FOLDER:COUNT" makes each cell leave a file in FOLDER and wait (at
# most BARRIER_TIMEOUT_S) until COUNT cells have, so cells that run in parallel are seen to overlap however slowly
# a loaded host starts their processes; cells that do not run in parallel time out and go on.
BARRIER_ENV = "ECOSWEEP_TESTING_BARRIER"
BARRIER_TIMEOUT_S = 60.0


def _testing_barrier(cell: Cell) -> None:
    spec = os.environ.get(BARRIER_ENV)
    if not spec:
        return
    folder, count = spec.rsplit(":", 1)
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"{cell.id}.{os.getpid()}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while len(list(Path(folder).iterdir())) < int(count) and time.monotonic() < deadline:
        time.sleep(0.05)


def resolve_device(s: StudyConfig) -> str:
    """'cuda:0' (the actor's own GPU; Ray sets CUDA_VISIBLE_DEVICES) or 'cpu'."""
    import torch

    want = s.hardware.device
    if want == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda:0"
    if want == "cuda":
        raise RuntimeError(
            f"hardware={s.hardware.name} needs a CUDA GPU, but this actor sees none "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
        )
    return "cpu"


def device_facts(device: str, gpus: int = 1) -> Dict[str, Any]:
    """The device's columns; a cell over ``gpus`` GPUs names every one (``gpu_uuid`` joined with '+', in
    device order) and sums their memory. Raises when the actor sees fewer GPUs than the cell holds."""
    import torch

    if device == "cpu":
        return {"device": "cpu", "device_name": cpu_model(), "gpu_count": 0}
    if torch.cuda.device_count() < gpus:
        raise RuntimeError(f"ray.gpus_per_cell={gpus} but this actor sees {torch.cuda.device_count()} GPU(s) "
                           f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    props = [torch.cuda.get_device_properties(i) for i in range(gpus)]
    names = sorted({p.name for p in props})
    facts: Dict[str, Any] = {
        "device": "cuda",
        "device_name": " + ".join(names),
        "gpu_uuid": "+".join("GPU-" + str(p.uuid) for p in props),
        "gpu_count": gpus,
        "compute_capability": f"{props[0].major}.{props[0].minor}",
        "gpu_memory_total_mib": sum(p.total_memory for p in props) / 2**20,
        "cuda_version": torch.version.cuda,
    }

    facts["driver_version"] = driver_version()
    return facts


def check_device_runs(s: StudyConfig, facts: Dict[str, Any]) -> None:
    """Raise, before the model loads, where this device cannot run the cell's quantization or profile."""
    if s.quantization.method == "torchao":
        device = facts.get("device", "cpu")
        problem = (torchao_problem(s.quantization, device)
                   or compiled_int_mm_problem(s.quantization, s.engine.kind, s.batch_size, device))
        if problem:
            raise RuntimeError(problem)
    need = s.quantization.min_compute_capability
    have = facts.get("compute_capability")
    if need is not None and have is not None and float(have) < need:
        raise RuntimeError(
            f"quantization={s.quantization.name} needs compute capability >= {need}; "
            f"{facts['device_name']} has {have}"
        )
    pattern = s.hardware.gpu_name_pattern
    if pattern and facts.get("device") == "cuda" and pattern not in facts["device_name"]:
        raise RuntimeError(
            f"hardware={s.hardware.name} describes a '{pattern}' GPU but this actor has "
            f"{facts['device_name']!r}; use hardware=auto or the matching profile"
        )


def quiet_libraries() -> None:
    """Keep progress bars and per-call warnings of the ML libraries out of the study log."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # torchao's import warns of its optional CUDA extensions on machines that cannot load them, and torch of
    # enum constants torchao registers: neither concerns a measurement
    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="bitsandbytes")


def prepare_workload(s: StudyConfig, device: str, extra: Dict[str, Any], clock: PhaseClock,
                     cell_id: str = "") -> Any:
    """Load the cell's model (for a quantized cell, its unquantized reference first: fidelity) and build
    its engine's workload; for graph and compiled engines, check their tokens against generate() first
    (raises TokenMismatchError). Adds what it learns to ``extra`` (row columns) and its wall times to
    ``clock``. Nothing here is inside an energy window. References go through the host's reference store when
    ``reuse`` allows (``ecosweep.workload.references``)."""

    gpus, device_name = gpu_count(s, device), str(extra.get("device_name", ""))
    store = ReferenceStore.for_settings(s)
    loaded = load_with_fidelity(s, device, extra, clock, cell_id, store)
    shape = dict(model=loaded.model, vocab_size=loaded.vocab_size, batch_size=s.batch_size,
                 input_tokens=s.input_tokens, output_tokens=s.output_tokens, seed=s.seed, device=device)
    if s.quantization.is_llm_int8:
        with clock.phase("int8_count_s"):  # one hooked generate() call: what LLM.int8()'s decomposition takes
            extra.update(count_decomposed_columns(loaded.model, FixedLengthGeneration(**shape).generate).columns())
    workload = build_workload(s.engine, **shape, quantization=s.quantization)
    if hasattr(workload, "prepare"):  # capture (graph) or compile and capture (compiled), before its token check
        with clock.phase("compile_s" if s.engine.kind == "compiled" else "capture_s"):
            workload.prepare()
    if s.engine.kind != "eager" and s.engine.verify_tokens:
        with clock.phase("token_check_s"):
            verify_against_generate(workload, FixedLengthGeneration(**shape), s, s.engine.name, store, device,
                                    device_name, gpus, cell_id, extra)
    return workload


def profile_workload(cell: Cell, workload: Any, device: str, gpus: int, rows: List[Dict[str, Any]]) -> Any:
    """One more call of the cell's workload under the PyTorch profiler (``workload.kernel_profile``): a
    ``ProfiledCall`` (its ``profile_*`` columns, trace and kernel table). The busy share is taken against the
    call's measured latency (the mean of the repetitions' ``latency_s_per_request``), which the profiler's host
    overhead does not inflate."""
    latencies = [r["latency_s_per_request"] for r in rows if r.get("latency_s_per_request")]
    scoped = getattr(workload, "model", None) if cell.settings.engine.kind == "eager" else None
    return profile_call(workload.generate, "cuda" if device.startswith("cuda") else "cpu",
                        synchronize_devices(device, gpus), profile_trace_name(cell.id), scoped,
                        sum(latencies) / len(latencies) if latencies else None)


def measure_workload(cell: Cell, workload: Any, device: str, gpus: int, base_row: Dict[str, Any],
                     clock: PhaseClock, context: "CellContext") -> Tuple[Any, Any]:
    """The cell's protocol (warm-up, idle baseline, energy windows) under its meter: the protocol's result
    (rows built on ``base_row``, wall times) and the meter's power trace (None without a sampler). An idle
    baseline of the same GPUs in ``context`` may stand for the cell's own (``ecosweep.measure.idle``)."""
    s = cell.settings

    def protocol(meter: Any, observes_device: bool, idle: IdleContext) -> CellProtocol:
        return CellProtocol(workload, meter, s.measurement, s.repetitions, s.warmup, observes_device=observes_device,
                            idle=idle)

    return run_metered(cell, device, gpus, base_row, clock, context.idle_baselines, protocol)


@dataclass(frozen=True)
class CellContext:
    """What the driver hands a cell besides its settings: the latest idle baseline of each GPU (key:
    ``idle.baseline_key``) that earlier cells of the command measured."""

    idle_baselines: Dict[str, IdleBaseline] = field(default_factory=dict)
    # Called in the cell's process just before its warm-up (run.prepared_process: holds the cell until the lane's
    # next process has done its imports, so they never fall in this cell's windows); None: go straight on.
    before_windows: Optional[Callable[[], None]] = None
    # Lanes the cell's actor measured before this cell's lane (ray.reuse_actors hands a finished lane's actor on)
    actor_earlier_lanes: int = 0


def import_cell_libraries(s: Optional[StudyConfig]) -> Dict[str, float]:
    """Import what the cell's model and precision need up front (``import_libraries``), so their first-use cost
    shows as ``imports_s`` rather than inside the model's load or between windows. ``None``: only what every cell
    needs (a process prepared before its cell is known). Returns ``import_libraries``' seconds per library: the
    timing file's ``imports_detail_s``."""
    if s is None:
        return import_libraries(None, None)
    return import_libraries(s.model.model_type, s.quantization.method)


def import_libraries(model_type: Optional[str], method: Optional[str]) -> Dict[str, float]:
    """Import torch, scipy's special functions (the protocol's CI between windows, ``stats.t_ci``), transformers'
    model class, the module of ``model_type`` (None: none) and the library of the quantization ``method``
    (bitsandbytes, torchao). Returns the seconds each import took, in the order they ran (a library this process
    had imported already: about 0). ``experiments/device/import_probe.py`` times a host's imports through it."""
    import importlib

    seconds: Dict[str, float] = {}

    def timed(name: str, module: str, attribute: Optional[str] = None) -> None:
        start = time.perf_counter()
        try:
            imported = importlib.import_module(module)
            if attribute is not None:
                getattr(imported, attribute)
        finally:
            seconds[name] = time.perf_counter() - start

    timed("torch", "torch")
    timed("scipy.special", "scipy.special")
    timed("transformers", "transformers", "AutoModelForCausalLM")  # the attribute resolves its lazy modules
    if model_type is not None:
        try:
            timed(f"modeling_{model_type}", f"transformers.models.{model_type}.modeling_{model_type}")
        except ImportError:  # a model type without its own module (remote code): loaded when the model is
            pass
    library = "bitsandbytes" if (method or "").startswith("bnb") else "torchao" if method == "torchao" else None
    if library is not None:
        timed(library, library)
    return seconds


@dataclass(frozen=True)
class CellWork:
    """What a cell's process measured: its rows, power trace, profiled call (or None), the idle baseline its rows
    are net of, and a served cell's request rows."""

    rows: List[Dict[str, Any]]
    trace: Any
    profiled: Any
    idle_baseline: Optional[IdleBaseline]
    requests: Optional[List[Dict[str, Any]]] = None


def wait_before_windows(context: CellContext, clock: PhaseClock) -> None:
    """The context's hook before the cell's warm-up, timed as ``next_process_wait_s``."""
    if context.before_windows is not None:
        with clock.phase("next_process_wait_s"):
            context.before_windows()


def _run_cell(cell: Cell, run_id: str, extra: Dict[str, Any], clock: PhaseClock, context: CellContext,
              process_profile: ProcessProfile) -> CellWork:
    """The cell's work once its process runs (``process_profile`` paused from the warm-up to the last window)."""
    s = cell.settings
    with clock.phase("imports_s"):
        clock.detail("imports_s", import_cell_libraries(s))
    import torch

    with clock.phase("device_s"):
        if s.hardware.device == "cpu":
            torch.set_num_threads(max(1, int(s.ray.cpus_per_cell)))
        device = resolve_device(s)
        gpus = gpu_count(s, device)
        extra.update(device_facts(device, gpus))
        check_device_runs(s, extra)
        # the meter's sampler processes start Python and open NVML while the model loads, not at the meter's start
        launch_samplers_ahead(s.measurement, device, str(extra.get("gpu_uuid") or "").split("+"))
    if s.scenario.name == "serving":
        workload, specs = prepare_serving(s, device, extra, clock, cell.id)
        wait_before_windows(context, clock)
        with process_profile.paused():
            result, trace, requests = measure_serving(cell, workload, specs, device,
                                                      {**config_row(cell, run_id), **extra}, clock,
                                                      context.idle_baselines)
        return CellWork(result.rows, trace, None, result.idle.baseline if result.idle else None, requests)
    workload = prepare_workload(s, device, extra, clock, cell.id)
    wait_before_windows(context, clock)
    with process_profile.paused():
        result, trace = measure_workload(cell, workload, device, gpus, {**config_row(cell, run_id), **extra}, clock,
                                         context)
    with clock.phase("device_s"):
        facts = engine_facts(workload, s.engine)  # known once the workload ran (compiled: whether it compiled)
        facts.update(kernel_path(s.quantization, extra.get("quant_weight_type"), facts.get("engine_effective")))
    profiled = None
    if s.profile:  # after the meter stopped: nothing the profiler does is in an energy window
        with clock.phase("profile_s"):
            try:
                profiled = profile_workload(cell, workload, device, gpus, result.rows)
                facts.update(profiled.profile.columns())
            except Exception as exc:  # the measurement stands; the rows say why there is no profile
                facts["profile_error"] = f"{type(exc).__name__}: {exc}"
    for row in result.rows:
        row.update(facts)
    return CellWork(result.rows, trace, profiled, result.idle.baseline if result.idle else None)


# What a cell inherits from a process of its own, started when the cell was (row columns); a lane process
# (run.lane_process) or a prepared one (run.prepared_process) passes its own.
FRESH_PROCESS_FACTS: Dict[str, Any] = {"process_earlier_cells_count": 0, "cuda_allocated_mib_at_start": 0.0,
                                       "process_prepared": False, "process_prepared_imports_s": math.nan,
                                       "process_ready_unix_s": math.nan}


def execute_cell(cell: Cell, run_id: Optional[str] = None, ray_node_id: Optional[str] = None,
                 context: Optional[CellContext] = None, facts: Optional[Dict[str, Any]] = None) -> CellOutcome:
    """Load, warm up, measure. Runs in the actor (or a process it started; then ``ray_node_id`` is
    the actor's node); returns rows instead of raising. Its ``phases_s`` cover the time from its start to its
    end (``results.timing.IN_PROCESS_PHASES``). ``facts``: what the cell inherits from its process (a lane
    process's earlier cells, ``run.lane_process``); default: a process of its own."""
    started = time.time()
    context = context or CellContext()
    clock = PhaseClock()
    with clock.phase("device_s"):
        quiet_libraries()
        run_id = run_id or uuid.uuid4().hex[:12]
        extra: Dict[str, Any] = host_facts()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        node = ray_node_id or _ray_node_id()
    extra.update(cuda_visible_devices=visible, ray_node_id=node,
                 actor_earlier_lanes_count=context.actor_earlier_lanes,
                 **{**FRESH_PROCESS_FACTS, **(facts or {})})
    process_profile = ProcessProfile(cell.settings.profile_process)
    try:
        _testing_crash(cell)
        _testing_barrier(cell)
        work = _run_cell(cell, run_id, extra, clock, context, process_profile)
        profiled = work.profiled
        return CellOutcome(cell.id, work.rows, "ok", None, work.trace, clock.seconds, started, time.time(), visible,
                           ray_node_id=node, process_id=os.getpid(),
                           profile_trace=profiled.trace_gzip if profiled else None,
                           profile_kernels_csv=profiled.kernels_csv if profiled else None,
                           idle_baseline=work.idle_baseline, profile_phases_s=profiled.phases_s if profiled else {},
                           requests=work.requests, process_profile=process_profile.report(),
                           phase_details_s=clock.details)
    except Exception as exc:  # the cell failed; the study goes on
        status = "oom" if is_oom(exc) else "failed"
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        row = failure_row(cell, run_id, status, error, extra)
        return CellOutcome(cell.id, [row], status, error, None, clock.seconds, started, time.time(), visible,
                           ray_node_id=node, process_id=os.getpid(), process_profile=process_profile.report(),
                           phase_details_s=clock.details)
    finally:
        discard_launched_ahead()  # a sampler the cell's meter never took (it failed before its windows)


def _die_with_parent(parent_pid: int) -> None:
    """In a process the lane's actor (``parent_pid``) started: ask Linux to kill it when the actor dies, so a
    killed study leaves no orphan holding the GPU (elsewhere no signal is armed), and exit at once if the actor
    died before the signal was armed."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        libc = None
    if libc is not None:
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def start_child_process(target: Callable[..., None], args: Tuple[Any, ...], name: str) -> Tuple[Any, Any]:
    """A spawned process running ``target(conn, *args, parent_pid)`` and this side's end of their duplex pipe:
    (process, conn)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    conn, theirs = ctx.Pipe(duplex=True)
    process = ctx.Process(target=target, args=(theirs, *args, os.getpid()), name=name)
    process.start()
    theirs.close()  # EOF on our end then means the process is gone
    return process, conn


def end_child_process(process: Any, conn: Any) -> None:
    """Tell a process from :func:`start_child_process` to end (``None``), then wait up to 60 s before killing it."""
    try:
        conn.send(None)
    except (BrokenPipeError, OSError):  # it ended already
        pass
    conn.close()
    process.join(timeout=60)
    if process.is_alive():
        process.kill()
        process.join()


def _measure_in_child(cell: Cell, run_id: str, ray_node_id: Optional[str], parent_pid: int, conn: Any,
                      context: Optional[CellContext] = None) -> None:
    _die_with_parent(parent_pid)
    conn.send(execute_cell(cell, run_id, ray_node_id, context))
    conn.close()


def run_in_fresh_process(cell: Cell, run_id: str, context: Optional[CellContext] = None) -> CellOutcome:
    """``execute_cell`` in a new (spawned) process: a fresh CUDA context per cell while the caller,
    a lane's actor, keeps its GPU for the next cell. Raises CellProcessDied when the process exits
    without an outcome."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_measure_in_child, args=(cell, run_id, _ray_node_id(), os.getpid(), send, context),
                          name=f"ecosweep-cell-{cell.id}")
    process.start()
    send.close()  # only the child writes; EOF on our end then means it is gone
    try:
        return receive.recv()
    except EOFError:
        process.join()
        raise CellProcessDied(f"the process measuring {cell.label} exited with code {process.exitcode} "
                              "before sending its results") from None
    finally:
        receive.close()
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
            process.join()
