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
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

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
    # int4 weight-only: tinygemm (aten._weight_int4pack_mm; torchao int4 with tile_packed_to_4d)
    KernelRule("int4_gemm", op=r"^aten::_weight_int4pack_mm"),
    KernelRule("int4_gemm", kernel=r"tinygemm|int4pack|_int4_mm|int4_gemm"),
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

# The classes of kernels that do a linear layer's matmul (profile_matmul_kernel is the top one of these).
MATMUL_CLASSES = ("dense_gemm", "int8_gemm", "fp8_gemm", "int4_gemm", "nf4_fp4", "llm_int8_side_gemm")

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
    matmul_kernel: Optional[str] = None  # the matmul-class kernel with the most time (MATMUL_CLASSES)
    matmul_kernel_share: Optional[float] = None  # its share of the matmul classes' time

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
            "profile_matmul_kernel": self.matmul_kernel,
            "profile_matmul_kernel_share": self.matmul_kernel_share,
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
    matmuls: Dict[str, float] = {}
    for r in records:
        kernel_class = classify(r)
        by_class[kernel_class] = by_class.get(kernel_class, 0.0) + r.duration_us / 1e6
        if kernel_class == "unknown":
            unknown[r.name] = unknown.get(r.name, 0.0) + r.duration_us
        if kernel_class in MATMUL_CLASSES:
            matmuls[r.name] = matmuls.get(r.name, 0.0) + r.duration_us
    names = tuple(sorted(unknown, key=unknown.get, reverse=True)[:unknown_listed])  # type: ignore[arg-type]
    top = max(matmuls, key=matmuls.get) if matmuls else None  # type: ignore[arg-type]
    share = matmuls[top] / sum(matmuls.values()) if top and sum(matmuls.values()) > 0 else None
    return KernelProfile(device, tokens, wall_s, len(records), launches,
                         busy_seconds(records) if device == "cuda" else None, measured_call_s, by_class, names,
                         trace_file, top, share)


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

# CUDA runtime and driver calls on the host (cudaLaunchKernel, cuLaunchKernel, cudaMemcpyAsync, cudaGraphLaunch, ...):
# the profiler links them, and the kernels they start, to the operator that made them; they are not operators
_RUNTIME_API = re.compile(r"^cu(da)?[A-Z]")

# the profiler's bookkeeping records (memory allocations, out-of-memory marks) and the utility operators torch's
# own event tree leaves out (record_function's enter and exit, autograd's bookkeeping): not events of the call
_PROFILER_RECORDS = re.compile(r"^(\[(memory|OutOfMemory)\]|profiler::_record_function_(enter|enter_new|exit)|"
                               r"aten::(is_leaf|output_nr|_version))$")


class TraceEvent(NamedTuple):
    """One profiler event, with what the kernel breakdown needs of it. ``kind``: ``op`` (an operator on a host
    thread), ``scope`` (a ``record_function`` scope on a host thread), ``launch`` (a CUDA runtime or driver call),
    ``device`` (a kernel, memcpy or memset on a GPU), ``device_scope`` (a scope drawn on a GPU's timeline, which
    torch 2.11 records for every host scope: not GPU work). Times in microseconds."""

    kind: str
    name: str
    thread: Any          # the host thread (ops and scopes nest within one thread); None on a GPU
    start_us: float
    duration_us: float
    op_id: int           # op, scope: its own id; launch, device: the id of the op or scope that made it (0: none)

    @property
    def end_us(self) -> float:
        return self.start_us + self.duration_us


def _flag(event: Any, method: str) -> bool:
    getter = getattr(event, method, None)  # not every torch's Kineto events have every flag
    return bool(getter()) if callable(getter) else False


def trace_events_from_kineto(results: Any) -> List[TraceEvent]:
    """The events of a finished profile (``prof.profiler.kineto_results``), read straight from the profiler's
    Kineto records: a few microseconds per event, where torch's ``prof.events()`` builds a Python object tree
    (80-179 s for the ~1.4 M events of one eager 7B call on an H100). Operators and scopes carry their
    correlation id, runtime calls and device events the linked one (the operator's)."""
    from torch.autograd import DeviceType

    raw = results.events()
    # relative to the trace's start before dividing: epoch nanoseconds as float microseconds keep only ~0.25 us
    base_ns = min((k.start_ns() for k in raw), default=0)
    events = []
    for k in raw:
        name = k.name()
        if _PROFILER_RECORDS.match(name) or _flag(k, "is_hidden_event"):
            continue
        start_us, duration_us = (k.start_ns() - base_ns) / 1e3, k.duration_ns() / 1e3
        device_type = k.device_type()
        if device_type == DeviceType.CUDA:
            kind = "device_scope" if _flag(k, "is_user_annotation") else "device"
            events.append(TraceEvent(kind, name, None, start_us, duration_us, k.linked_correlation_id()))
        elif device_type == DeviceType.CPU and not PROFILER_OVERHEAD.match(name):
            linked = k.linked_correlation_id()
            if linked > 0 or _RUNTIME_API.match(name):
                events.append(TraceEvent("launch", name, k.start_thread_id(), start_us, duration_us, linked))
            else:
                kind = "scope" if _flag(k, "is_user_annotation") else "op"
                events.append(TraceEvent(kind, name, k.start_thread_id(), start_us, duration_us, k.correlation_id()))
    return events


# Chrome-trace categories (what ``prof.export_chrome_trace`` writes) -> TraceEvent kinds; other categories
# (the profiler's overhead, flow arrows, metadata) are no events of the breakdown
_CHROME_KINDS = {"cpu_op": "op", "user_annotation": "scope", "cuda_runtime": "launch", "cuda_driver": "launch",
                 "kernel": "device", "gpu_memcpy": "device", "gpu_memset": "device",
                 "gpu_user_annotation": "device_scope"}


def trace_events_from_chrome(trace: Dict[str, Any]) -> List[TraceEvent]:
    """The events of a saved trace (``traces/<cell_id>.profile.json.gz``, parsed): the same events as
    ``trace_events_from_kineto`` reads, linked by the trace's "External id" (an operator's own, and on its
    runtime calls and kernels the id of the operator that made them)."""
    events = []
    for e in trace.get("traceEvents", []):
        kind = _CHROME_KINDS.get(e.get("cat", "")) if e.get("ph") == "X" else None
        if kind is None or _PROFILER_RECORDS.match(e.get("name", "")):
            continue
        on_host = kind in ("op", "scope", "launch")
        events.append(TraceEvent(kind, e["name"], (e.get("pid"), e.get("tid")) if on_host else None, float(e["ts"]),
                                 float(e.get("dur", 0.0)), int(e.get("args", {}).get("External id", 0) or 0)))
    return events


@dataclass(frozen=True)
class _Nesting:
    """How a thread's host events (ops and scopes) nest: ``parent[i]`` the event ``i`` sits in (-1: none),
    ``merged[i]`` the event it counts as (itself, or the same-named event it was the only one inside: torch's
    event tree drops such a dispatcher re-entry, e.g. ``aten::sum`` inside ``aten::sum``, and lifts its kernels
    up), ``inner_us[i]`` the summed duration of the events directly inside ``i``, microseconds."""

    parent: List[int]
    merged: List[int]
    inner_us: List[float]


def _nest(host: Sequence[TraceEvent]) -> _Nesting:
    """One event encloses another on the same thread when it starts no later and ends no earlier (as torch's own
    event tree: sorted by start, longer first; a partial overlap is no nesting)."""
    raw_parent, inside = [-1] * len(host), [0] * len(host)
    order: List[int] = []
    by_thread: Dict[Any, List[int]] = {}
    for i, e in enumerate(host):
        by_thread.setdefault(e.thread, []).append(i)
    for indices in by_thread.values():
        indices.sort(key=lambda i: (host[i].start_us, -host[i].end_us))
        open_events: List[int] = []
        for i in indices:
            while open_events:
                top = host[open_events[-1]]
                if host[i].start_us >= top.end_us or host[i].end_us > top.end_us:
                    open_events.pop()
                    continue
                raw_parent[i] = open_events[-1]
                inside[open_events[-1]] += 1
                break
            open_events.append(i)
        order.extend(indices)  # parents before their children
    merged, parent, inner_us = list(range(len(host))), [-1] * len(host), [0.0] * len(host)
    for i in order:
        p = raw_parent[i]
        if p < 0:
            continue
        if host[p].name == host[i].name and inside[p] == 1:
            merged[i] = merged[p]
        else:
            parent[i] = merged[p]
            inner_us[merged[p]] += host[i].duration_us
    return _Nesting(parent, merged, inner_us)


def records_from_trace(events: Sequence[TraceEvent], device: str) -> Tuple[List[KernelRecord], int]:
    """Kernel records and the number of host-side launches of a traced call. CUDA: every device kernel and
    memcpy/memset, linked to the operator (or scope) that launched it, with the operators and scopes around that
    one; a device event that is a scope drawn on the GPU's timeline (flagged, or named like a host event: a
    kernel never is) is left out — counted, it would double the GPU time and fill the idle gaps. CPU: every
    operator, with its self time (its own, without the events inside it), so that the records add up to the
    time spent in operators."""
    host = [e for e in events if e.kind in ("op", "scope")]
    nesting = _nest(host)
    chains: Dict[int, Tuple[str, ...]] = {}

    def within(i: int) -> Tuple[str, ...]:  # the names around host[i], outermost first, then its own
        if i not in chains:
            p = nesting.parent[i]
            chains[i] = (*(within(p) if p >= 0 else ()), host[i].name)
        return chains[i]

    launches = sum(1 for e in events if e.kind == "launch" and LAUNCH_APIS.match(e.name))
    if device != "cuda":
        return [KernelRecord(e.name, e.start_us, e.duration_us - nesting.inner_us[i], e.name, within(i))
                for i, e in enumerate(host) if e.kind == "op" and "::" in e.name and nesting.merged[i] == i], launches
    by_id = {e.op_id: nesting.merged[i] for i, e in enumerate(host) if e.op_id}
    host_names = {e.name for e in events if e.kind in ("op", "scope", "launch")}
    records = []
    for e in events:
        if e.kind != "device" or e.name in host_names:
            continue
        i = by_id.get(e.op_id, -1) if e.op_id else -1
        records.append(KernelRecord(e.name, e.start_us, e.duration_us, host[i].name if i >= 0 else "",
                                    within(i) if i >= 0 else ()))
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
    records, launches = records_from_trace(trace_events_from_kineto(prof.profiler.kineto_results), device)
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
