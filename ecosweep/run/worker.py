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
from typing import Any, Dict, List, Optional, Tuple

from ecosweep.cells import Cell, engine_variant
from ecosweep.config.compat import compiled_int_mm_problem, torchao_problem
from ecosweep.config.schema import StudyConfig
from ecosweep.measure.host import cpu_model, host_facts
from ecosweep.measure.meters import make_meter, synchronize_devices
from ecosweep.measure.meters.nvml_device import driver_version
from ecosweep.measure.protocol import CellProtocol
from ecosweep.profiling.call import profile_call
from ecosweep.results.store import profile_trace_name
from ecosweep.workload.engines import build_workload, engine_facts
from ecosweep.workload.fidelity import cell_fidelity, prepare_reference
from ecosweep.workload.generation import FixedLengthGeneration
from ecosweep.workload.int8_outliers import count_decomposed_columns
from ecosweep.workload.kernel_path import kernel_path, quantized_weight_type
from ecosweep.workload.models import load_model
from ecosweep.workload.placement import gpu_count
from ecosweep.workload.token_check import tolerance_for, verify_tokens


@dataclass
class CellOutcome:
    """What an actor sends back to the driver (picklable)."""

    cell_id: str
    rows: List[Dict[str, Any]]
    status: str  # ok | failed | oom
    error: Optional[str] = None
    trace: Any = None  # pyarrow.Table of sampler readings, or None
    phases_s: Dict[str, float] = field(default_factory=dict)
    started_unix_s: float = 0.0
    finished_unix_s: float = 0.0
    cuda_visible_devices: Optional[str] = None
    launched_unix_s: float = 0.0  # set by the driver: when it asked Ray to run the cell
    ray_node_id: Optional[str] = None
    process_id: Optional[int] = None  # the process that measured the cell (a fresh one per cell)
    profile_trace: Optional[bytes] = None  # gzip'd Chrome trace of the profiled call (profile=true)
    profile_kernels_csv: Optional[str] = None  # its distinct kernels and their classes (kernel_profile.kernel_table)


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
    }


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


def prepare_workload(s: StudyConfig, device: str, extra: Dict[str, Any], phases: Dict[str, float]) -> Any:
    """Load the cell's model (for a quantized cell, its unquantized reference first: fidelity) and build
    its engine's workload; for graph and compiled engines, check their tokens against generate() first
    (raises TokenMismatchError). Adds what it learns to ``extra`` (row columns) and its wall times to
    ``phases``. Nothing here is inside an energy window."""
    import torch


    t = time.perf_counter()
    reference = prepare_reference(s, device)
    fidelity_s = time.perf_counter() - t
    t = time.perf_counter()
    loaded = load_model(s, device)
    phases["load_s"] = time.perf_counter() - t
    extra.update(params_count=loaded.params_count, weights_source=loaded.source,
                 quant_weight_type=quantized_weight_type(loaded.model))
    t = time.perf_counter()
    fidelity = cell_fidelity(s, loaded.model, reference, device)
    del reference
    if fidelity is not None:
        extra.update(fidelity.columns())
        phases["fidelity_s"] = fidelity_s + time.perf_counter() - t
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    shape = dict(model=loaded.model, vocab_size=loaded.vocab_size, batch_size=s.batch_size,
                 input_tokens=s.input_tokens, output_tokens=s.output_tokens, seed=s.seed, device=device)
    if s.quantization.is_llm_int8:

        t = time.perf_counter()  # one hooked generate() call: what LLM.int8()'s decomposition takes
        extra.update(count_decomposed_columns(loaded.model, FixedLengthGeneration(**shape).generate).columns())
        phases["int8_count_s"] = time.perf_counter() - t
    workload = build_workload(s.engine, **shape, quantization=s.quantization)
    if hasattr(workload, "prepare"):  # capture (graph) or compile and capture (compiled), before its token check
        t = time.perf_counter()
        workload.prepare()
        phases["compile_s" if s.engine.kind == "compiled" else "capture_s"] = time.perf_counter() - t
    if s.engine.kind != "eager" and s.engine.verify_tokens:
        t = time.perf_counter()
        check = verify_tokens(workload, FixedLengthGeneration(**shape), s.engine.name,
                              tolerance_for(s.quantization.dtype, s.quantization.method))
        extra.update(check.columns())
        phases["token_check_s"] = time.perf_counter() - t
        if device.startswith("cuda"):
            torch.cuda.empty_cache()  # the reference's logits of every step
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


def measure_workload(cell: Cell, workload: Any, device: str, gpus: int, base_row: Dict[str, Any]) -> Tuple[Any, Any]:
    """The cell's protocol (warm-up, idle baseline, energy windows) under its meter: the protocol's result
    (rows built on ``base_row``, wall times) and the meter's power trace (None without a sampler)."""
    import torch


    s = cell.settings
    is_cuda = device.startswith("cuda")
    for index in range(gpus):
        torch.cuda.reset_peak_memory_stats(index)

    def peak_memory_mib() -> float:  # summed over the cell's GPUs
        return sum(torch.cuda.max_memory_allocated(i) for i in range(gpus)) / 2**20 if is_cuda else math.nan

    uuids = base_row["gpu_uuid"].split("+") if base_row.get("gpu_uuid") else []
    meter, observes_device = make_meter(s.measurement, device, uuids)
    with meter:
        protocol = CellProtocol(workload, meter, s.measurement, s.repetitions, s.warmup,
                                observes_device=observes_device)
        result = protocol.run(base_row, peak_memory_mib)
        trace = meter.trace()
    return result, trace


def execute_cell(cell: Cell, run_id: Optional[str] = None, ray_node_id: Optional[str] = None) -> CellOutcome:
    """Load, warm up, measure. Runs in the actor (or a process it started; then ``ray_node_id`` is
    the actor's node); returns rows instead of raising."""
    quiet_libraries()
    run_id = run_id or uuid.uuid4().hex[:12]
    s = cell.settings
    started = time.time()
    phases: Dict[str, float] = {}
    extra: Dict[str, Any] = host_facts()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    node = ray_node_id or _ray_node_id()
    extra.update(cuda_visible_devices=visible, ray_node_id=node)
    try:
        _testing_crash(cell)
        import torch

        if s.hardware.device == "cpu":
            torch.set_num_threads(max(1, int(s.ray.cpus_per_cell)))
        device = resolve_device(s)
        gpus = gpu_count(s, device)
        extra.update(device_facts(device, gpus))
        check_device_runs(s, extra)


        workload = prepare_workload(s, device, extra, phases)
        result, trace = measure_workload(cell, workload, device, gpus, {**config_row(cell, run_id), **extra})
        facts = engine_facts(workload, s.engine)  # known once the workload ran (compiled: whether it compiled)
        facts.update(kernel_path(s.quantization, extra.get("quant_weight_type"), facts.get("engine_effective")))
        profiled = None
        if s.profile:  # after the meter stopped: nothing the profiler does is in an energy window
            t = time.perf_counter()
            try:
                profiled = profile_workload(cell, workload, device, gpus, result.rows)
                facts.update(profiled.profile.columns())
            except Exception as exc:  # the measurement stands; the rows say why there is no profile
                facts["profile_error"] = f"{type(exc).__name__}: {exc}"
            phases["profile_s"] = time.perf_counter() - t
            phases.update(profiled.phases_s if profiled else {})
        for row in result.rows:
            row.update(facts)
        phases.update(result.phases_s)
        return CellOutcome(cell.id, result.rows, "ok", None, trace, phases, started, time.time(), visible,
                           ray_node_id=node, process_id=os.getpid(),
                           profile_trace=profiled.trace_gzip if profiled else None,
                           profile_kernels_csv=profiled.kernels_csv if profiled else None)
    except Exception as exc:  # the cell failed; the study goes on
        status = "oom" if is_oom(exc) else "failed"
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        row = failure_row(cell, run_id, status, error, extra)
        return CellOutcome(cell.id, [row], status, error, None, phases, started, time.time(), visible,
                           ray_node_id=node, process_id=os.getpid())


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent (the lane's actor) dies, so a killed study
    leaves no orphan holding the GPU. Elsewhere a no-op."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _measure_in_child(cell: Cell, run_id: str, ray_node_id: Optional[str], parent_pid: int, conn: Any) -> None:
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    conn.send(execute_cell(cell, run_id, ray_node_id))
    conn.close()


def run_in_fresh_process(cell: Cell, run_id: str) -> CellOutcome:
    """``execute_cell`` in a new (spawned) process: a fresh CUDA context per cell while the caller,
    a lane's actor, keeps its GPU for the next cell. Raises CellProcessDied when the process exits
    without an outcome."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_measure_in_child, args=(cell, run_id, _ray_node_id(), os.getpid(), send),
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
