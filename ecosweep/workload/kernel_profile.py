"""Where a generated token's time goes: one call of a cell's workload traced with the PyTorch profiler.

With ``profile=true`` a cell makes one extra call after its energy windows are closed (never inside them:
the profiler's own overhead is not billed to any measurement) and records, per generated token:

- how long the GPU was busy (the union of its kernels' intervals) against the call's wall time: the idle
  share is the launch-bound share, measured instead of inferred from static power;
- kernels and host-side kernel launches (``cudaLaunchKernel``, ``cudaGraphLaunch``, ...) per token;
- GPU time by kernel class (``KERNEL_CLASSES``), classified by one ordered rule table (``RULES``) on the
  kernel's name, the op that launched it and the ops and module scopes around that op. A kernel no rule
  knows is counted as ``unknown`` and named in ``profile_unknown_kernels``, never dropped.

The trace (Chrome JSON, gzip) is kept beside the cell's power trace, ``traces/<cell_id>.profile.json.gz``,
openable in Perfetto or chrome://tracing. On a CPU there are no kernels: the operators (``aten::``,
``bitsandbytes::``, ..., each with its self time) stand in for them and there is no busy or idle share.

Under the eager engine, attention and normalisation modules and bitsandbytes' linear layers are wrapped in
profiler scopes (``ecosweep::module::<class>``) for the call, so their non-GEMM kernels can be attributed;
graph and compiled engines replay or fuse their modules, and their kernels are classified by name alone.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ecosweep.results.schema import KERNEL_CLASSES



@dataclass(frozen=True)
class KernelRule:
    """A kernel belongs to ``kernel_class`` when every pattern given matches (``re.search``): ``kernel`` in
    its name, ``op`` in the name of the operator that launched it, ``within`` in the name of one of the
    operators or profiler scopes around that operator."""

    kernel_class: str
    kernel: str = ""
    op: str = ""
    within: str = ""


_BNB = r"^bitsandbytes::"
_INT8_QUANT_OPS = _BNB + r"(int8_vectorwise_quant|int8_double_quant)"
_GEMM_OPS = r"^aten::(mm|addmm|bmm|baddbmm|matmul|linear|addmv|mv)$"
_GEMM_KERNELS = (r"gemm|gemv|cutlass|xmma|cublas|nvjet|tensorop|sgemm|hgemm|splitkreduce|s16816|s1688|"
                 r"triton_(tem|mm)_|_mm_")

# Ordered: the first rule that matches decides. Specific (quantization) rules come before generic ones.
RULES: Tuple[KernelRule, ...] = (
    # bitsandbytes: its custom ops, by the op that launched the kernel or one around it
    KernelRule("int8_gemm", within=_BNB + r"int8_linear_matmul"),
    KernelRule("int8_gemm", op=_BNB + r"int8_linear_matmul"),
    # an int8 GEMM kernel by its name, whatever scope it ran in (the profiler can link one to the wrong op)
    KernelRule("int8_gemm", kernel=r"s8s8|i8i8|imma|igemm|int8_gemm|_i\d{4,5}gemm|i16832gemm"),
    KernelRule("dequantize", within=_BNB + r"(int8_mm_dequant|int8_vectorwise_dequant)"),
    KernelRule("act_quantize", op=_INT8_QUANT_OPS),
    KernelRule("act_quantize", kernel=r"kInt8VectorQuant|kQuantize|int8_vectorwise_quant"),
    KernelRule("dequantize", kernel=r"kdequant_mm|int8_mm_dequant"),
    KernelRule("llm_int8_outliers", within=_INT8_QUANT_OPS),
    KernelRule("llm_int8_side_gemm", within=_BNB + r"int8_mixed_scaled_mm", op=_GEMM_OPS),
    KernelRule("llm_int8_outliers", within=_BNB + r"int8_mixed_scaled_mm"),
    # bitsandbytes' 4-bit matmul above batch 1 dequantizes the weight, then runs an fp16 GEMM on it (aten::mm)
    KernelRule("dense_gemm", within=_BNB + r"gemm_4bit", op=_GEMM_OPS),
    KernelRule("nf4_fp4", within=_BNB + r"(gemm_4bit|dequantize_4bit|dequantize_blockwise)"),
    # by name (captured graphs have no ops): the fused 4-bit GEMV/GEMM kernels (gemm_4bit_simt,
    # gemm_4bit_sm80_m16n8k16, kgemm_4bit_inference_naive) before the generic "gemm" of dense GEMMs
    KernelRule("nf4_fp4", kernel=r"gemm_4bit|kDequantize|gemv_4bit|dequantize_4bit"),
    # torch's quantized matmuls (torchao int8 dynamic: torch._int_mm; fp8: torch._scaled_mm)
    KernelRule("int8_gemm", op=r"^aten::_int_mm$"),
    KernelRule("fp8_gemm", op=r"^aten::_scaled_mm$"),
    KernelRule("fp8_gemm", kernel=r"e4m3|e5m2|f8f8|fp8_gemm|_fp8_"),
    # attention kernels by name (before GEMMs: FlashAttention's names carry cutlass types)
    KernelRule("attention", kernel=r"flash|fmha|attention|attn|sdpa|softmax|_efficient_"),
    # dense matmuls: by name (cuBLAS, CUTLASS, Triton templates) or by the op
    KernelRule("dense_gemm", kernel=_GEMM_KERNELS),
    KernelRule("dense_gemm", op=_GEMM_OPS),
    # attention by op
    KernelRule("attention", op=r"^aten::(_?scaled_dot_product|_flash_attention|_efficient_attention|_softmax|softmax)"),
    # normalisation: fused kernels by name, or anything inside a norm module (eager scopes)
    KernelRule("norm", kernel=r"rms_?norm|layer_?norm|_norm_|rsqrt"),
    KernelRule("norm", op=r"^aten::(native_layer_norm|layer_norm|rms_norm|_fused_rms_norm)"),
    KernelRule("norm", within=r"^ecosweep::module::\w*Norm"),
    # copies and data movement
    KernelRule("copy", kernel=r"(?i)memcpy|memset|copy|CatArray|cat_|index_?select|gather|scatter|index_put|"
                              r"indexing|direct_copy|transpose|permute"),
    KernelRule("copy", op=r"^aten::(copy_|cat|index_select|index|index_put_|_to_copy|to|contiguous|clone|"
                          r"gather|scatter_|index_copy_|slice_scatter|narrow_copy|_unsafe_index|fill_|zero_)$"),
    # what is left inside an attention module (eager scopes): rotary embedding, scaling
    KernelRule("attention", within=r"^ecosweep::module::\w*Attention"),
    # elementwise and reductions
    KernelRule("elementwise", kernel=r"(?i)elementwise|vectorized|unrolled|reduce_kernel|reduction|triton_poi|"
                                     r"triton_red|triton_per|pointwise|silu|gelu|act_and_mul|argmax|arange|"
                                     r"where|compare|cumsum|sort|topk|fill|mul_|add_|_kernel_impl|launch_"),
    KernelRule("elementwise", op=r"^aten::"),
)

LAUNCH_APIS = re.compile(r"^(cudaLaunchKernel|cudaLaunchKernelExC|cuLaunchKernel|cuLaunchKernelEx|"
                         r"cudaLaunchCooperativeKernel|cudaGraphLaunch|cuGraphLaunch)")
_COMPILED_RULES = [(r.kernel_class, *(re.compile(p) if p else None for p in (r.kernel, r.op, r.within)))
                   for r in RULES]


@dataclass(frozen=True)
class KernelRecord:
    """One kernel of a traced call: its name, start and duration (microseconds), the operator that launched
    it and the names of the operators and profiler scopes around it (outermost first, that operator last)."""

    name: str
    start_us: float
    duration_us: float
    op: str = ""
    within: Tuple[str, ...] = ()


def classify(record: KernelRecord) -> str:
    """The record's kernel class (``KERNEL_CLASSES``): the first rule of ``RULES`` that matches."""
    return _classify(record.name, record.op, record.within)


@functools.lru_cache(maxsize=None)
def _classify(name: str, launched_by: str, within_names: Tuple[str, ...]) -> str:
    # cached: a call's tens of thousands of kernels are a few hundred distinct (name, op, scopes)
    for kernel_class, kernel, op, within in _COMPILED_RULES:
        if kernel and not kernel.search(name):
            continue
        if op and not op.search(launched_by):
            continue
        if within and not any(within.search(n) for n in within_names):
            continue
        return kernel_class
    return "unknown"


def busy_seconds(records: Sequence[KernelRecord]) -> float:
    """Seconds in which at least one kernel ran: the union of the kernels' intervals."""
    busy_us, end_us = 0.0, float("-inf")
    for r in sorted(records, key=lambda r: r.start_us):
        start, stop = r.start_us, r.start_us + r.duration_us
        if stop <= end_us:
            continue
        busy_us += stop - max(start, end_us)
        end_us = stop
    return busy_us / 1e6


@dataclass(frozen=True)
class KernelProfile:
    """One traced call. Seconds are wall or kernel time; ``busy_s`` is None on a CPU (no kernels)."""

    device: str                       # "cuda" | "cpu"
    tokens: int                       # tokens the call generated (batch_size x output_tokens)
    wall_s: float                     # the call's wall time, synchronised at both ends
    kernels: int                      # kernels (CPU: operators) that ran
    launches: int                     # host-side kernel and graph launches (CUDA runtime/driver calls)
    busy_s: Optional[float]           # union of the kernels' intervals
    measured_call_s: Optional[float] = None  # the same call's wall time in the energy windows, no profiler
    seconds_by_class: Dict[str, float] = field(default_factory=dict)  # summed kernel time per class
    unknown_kernels: Tuple[str, ...] = ()  # names of unclassified kernels, most time first
    trace_file: Optional[str] = None  # the trace's file name in the study's traces/ folder

    def columns(self) -> Dict[str, Any]:
        """Row columns (``profile_*``), per generated token."""
        per_tok = 1.0 / self.tokens
        # the profiler slows the host, not the kernels: against the call's unprofiled time where known
        call_s = self.measured_call_s or self.wall_s
        busy_share = None if self.busy_s is None or call_s <= 0 else min(1.0, self.busy_s / call_s)
        row: Dict[str, Any] = {
            "profile_wall_ms_per_tok": 1e3 * self.wall_s * per_tok,
            "profile_gpu_busy_share": busy_share,
            "profile_gpu_idle_share": None if busy_share is None else 1.0 - busy_share,
            "profile_kernels_per_tok": self.kernels * per_tok,
            "profile_launches_per_tok": self.launches * per_tok if self.device == "cuda" else None,
            "profile_unknown_kernels": "; ".join(self.unknown_kernels) or None,
            "profile_trace_file": self.trace_file,
        }
        row.update({f"profile_ms_per_tok_{c}": 1e3 * self.seconds_by_class.get(c, 0.0) * per_tok
                    for c in KERNEL_CLASSES})
        return row


def summarize(records: Sequence[KernelRecord], device: str, tokens: int, wall_s: float, launches: int,
              trace_file: Optional[str] = None, measured_call_s: Optional[float] = None,
              unknown_listed: int = 8) -> KernelProfile:
    """The profile of a call from its kernel records (``measured_call_s``: see ``KernelProfile``)."""
    by_class: Dict[str, float] = {}
    unknown: Dict[str, float] = {}
    for r in records:
        kernel_class = classify(r)
        by_class[kernel_class] = by_class.get(kernel_class, 0.0) + r.duration_us / 1e6
        if kernel_class == "unknown":
            unknown[r.name] = unknown.get(r.name, 0.0) + r.duration_us
    names = tuple(sorted(unknown, key=unknown.get, reverse=True)[:unknown_listed])  # type: ignore[arg-type]
    return KernelProfile(device, tokens, wall_s, len(records), launches,
                         busy_seconds(records) if device == "cuda" else None, measured_call_s, by_class, names,
                         trace_file)


def kernel_table(records: Sequence[KernelRecord]) -> str:
    """CSV of the distinct kernels of a call (name, launching op, the ops and scopes around it joined by ' > ',
    their class, how many ran and their total microseconds), most time first: the recorded names the
    classification is tested on (``traces/<cell_id>.kernels.csv``)."""
    import csv
    import io

    totals: Dict[Tuple[str, str, Tuple[str, ...]], List[float]] = {}
    for r in records:
        entry = totals.setdefault((r.name, r.op, r.within), [0, 0.0])
        entry[0] += 1
        entry[1] += r.duration_us
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["kernel", "op", "within", "kernel_class", "count", "total_us"])
    for (name, op, within), (count, total_us) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
        writer.writerow([name, op, " > ".join(within), classify(KernelRecord(name, 0.0, 0.0, op, within)),
                         int(count), round(total_us, 3)])
    return out.getvalue()


# The profiler's own work on the host, recorded between operators: it takes the correlation id of the operator
# it interrupted (a kernel linked by that id would name it as its launcher) and can enclose operators (it would
# show among their scopes). Neither an operator nor a scope.
PROFILER_OVERHEAD = re.compile(r"^(Buffer Flush|Activity Buffer Request)$")


def _enclosing_names(event: Any) -> Tuple[str, ...]:
    names: List[str] = []
    parent = getattr(event, "cpu_parent", None)
    while parent is not None:
        if not PROFILER_OVERHEAD.match(parent.name):
            names.append(parent.name)
        parent = parent.cpu_parent
    return tuple(reversed(names))


# CUDA runtime and driver calls on the host (cudaLaunchKernel, cuLaunchKernel, cudaMemcpyAsync, cudaGraphLaunch, ...):
# the profiler links them, and the kernels they start, to the operator that made them; they are not operators
_RUNTIME_API = re.compile(r"^cu(da)?[A-Z]")


def device_links(prof: Any) -> Dict[int, int]:
    """Each device event's correlation id -> the id of the host operator that launched it, read from the
    profiler's raw (Kineto) events. ``FunctionEvent.linked_correlation_id`` carries the same link in torch
    2.13 (this project's CPU pin); torch 2.11 (the GPU hosts') drops it after linking kernels to operators
    for its own tables.
    Events of one CUDA-graph launch share one correlation id, hence one operator."""
    from torch.autograd import DeviceType

    results = getattr(getattr(prof, "profiler", None), "kineto_results", None)
    if results is None:
        return {}
    return {k.correlation_id(): k.linked_correlation_id() for k in results.events()
            if k.device_type() == DeviceType.CUDA}


def is_device_scope(event: Any, host_names: Any = ()) -> bool:
    """Whether a device event is a profiler scope (``record_function``, e.g. ``ecosweep::module::<class>``) drawn
    on the GPU's timeline, not a kernel: torch 2.11 records each scope there too (``gpu_user_annotation``),
    spanning the kernels run inside it. Counted as a kernel it would double the GPU time and fill the idle gaps
    (the first H100 profile: ``unknown`` 35 ms per token, idle share 0 for fp16 eager). Told by the event's
    flag or, where a torch does not set it, by its name being one of the host's events' (a kernel's never is)."""
    return bool(getattr(event, "is_user_annotation", False)) or event.name in host_names


def records_from_events(events: Sequence[Any], device: str,
                        links: Optional[Dict[int, int]] = None) -> Tuple[List[KernelRecord], int]:
    """Kernel records and the number of host-side launches from the profiler's events
    (``torch.autograd.profiler_util.FunctionEvent``). CUDA: every device kernel and memcpy/memset, linked to
    the operator that launched it (``links``: ``device_links``, for a torch whose events lack the link). CPU:
    every operator, with its self time (its own, without the operators it called), so that the records add
    up to the time spent in operators."""
    from torch.autograd import DeviceType

    host = [e for e in events if e.device_type == DeviceType.CPU]
    if device != "cuda":
        ops = [e for e in host if not e.is_user_annotation and "::" in e.name]
        return [KernelRecord(e.name, e.time_range.start, e.self_cpu_time_total, e.name, (*_enclosing_names(e), e.name))
                for e in ops], 0
    links = links or {}

    def linked_id(event: Any) -> int:
        value = getattr(event, "linked_correlation_id", None)
        if value is not None:
            return value
        if event.device_type == DeviceType.CPU:  # runtime calls are linked to their operator, operators to nothing
            return 1 if _RUNTIME_API.match(event.name) else 0
        return links.get(event.id, 0)

    ops = {e.id: e for e in host if linked_id(e) == 0 and not PROFILER_OVERHEAD.match(e.name)}
    launches = sum(1 for e in host if LAUNCH_APIS.match(e.name))
    host_names = {e.name for e in host}
    records = []
    for e in events:
        if e.device_type != DeviceType.CUDA or is_device_scope(e, host_names):
            continue
        link = linked_id(e)
        op = ops.get(link) if link else None  # 0: no operator launched it
        records.append(KernelRecord(e.name, e.time_range.start, e.time_range.end - e.time_range.start,
                                    op.name if op is not None else "",
                                    (*_enclosing_names(op), op.name) if op is not None else ()))
    return records, launches


_SCOPED_MODULES = re.compile(r"Attention$|Norm$|^Linear8bitLt$|^Linear4bit$")


@contextmanager
def module_scopes(model: Any) -> Iterator[None]:
    """Profiler scopes ``ecosweep::module::<class>`` around the forward of attention and norm modules and
    bitsandbytes' linear layers, for one eager call; the hooks are removed on exit, whatever happens."""
    from torch.autograd.profiler import record_function

    handles, open_scopes = [], []

    def enter(module: Any, _args: Any) -> None:
        scope = record_function(f"ecosweep::module::{type(module).__name__}")
        scope.__enter__()
        open_scopes.append(scope)

    def leave(_module: Any, _args: Any, _output: Any) -> None:
        if open_scopes:
            open_scopes.pop().__exit__(None, None, None)

    try:
        for module in model.modules():
            if _SCOPED_MODULES.search(type(module).__name__):
                handles.append(module.register_forward_pre_hook(enter))
                handles.append(module.register_forward_hook(leave))
        yield
    finally:
        for handle in handles:
            handle.remove()
        while open_scopes:  # a forward that raised leaves its scope open
            open_scopes.pop().__exit__(None, None, None)


@dataclass(frozen=True)
class ProfiledCall:
    """A traced call: its summary, its trace (gzip'd Chrome JSON) and its distinct kernels (``kernel_table``)."""

    profile: KernelProfile
    trace_gzip: Optional[bytes]
    kernels_csv: str
    phases_s: Dict[str, float] = field(default_factory=dict)  # seconds: the traced call, reading its events, the trace


def profile_call(call: Callable[[], int], device: str, sync: Callable[[], None], trace_path: Optional[str] = None,
                 model: Any = None, measured_call_s: Optional[float] = None) -> ProfiledCall:
    """Trace one ``call`` (returns the tokens it generated) and summarise it, with the gzip'd Chrome trace
    (``trace_path``: its file name, recorded in the profile) and the table of its kernels. ``model``: scope its modules
    (eager engine only: a compiled or captured forward must not change under the profiler).
    ``measured_call_s``: the call's wall time without the profiler (the busy share's denominator)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    scopes = module_scopes(model) if model is not None else nullcontext()
    sync()
    entered = time.perf_counter()
    with profile(activities=activities) as prof:
        with scopes:
            start = time.perf_counter()
            tokens = call()
            sync()
            wall_s = time.perf_counter() - start
    traced = time.perf_counter()
    records, launches = records_from_events(prof.events(), device, device_links(prof) if device == "cuda" else None)
    read = time.perf_counter()
    trace = _chrome_trace_gzip(prof) if trace_path else None
    written = time.perf_counter()
    summary = summarize(records, device, tokens, wall_s, launches, trace_path, measured_call_s)
    table = kernel_table(records)
    phases = {"profile_call_s": traced - entered, "profile_events_s": read - traced,
              "profile_trace_export_s": written - read, "profile_summary_s": time.perf_counter() - written}
    return ProfiledCall(summary, trace, table, phases)


def _chrome_trace_gzip(prof: Any) -> bytes:
    handle, path = tempfile.mkstemp(suffix=".json", prefix="ecosweep-profile-")
    os.close(handle)
    try:
        prof.export_chrome_trace(path)
        with open(path, "rb") as f:
            return gzip.compress(f.read(), compresslevel=6)
    finally:
        os.unlink(path)
