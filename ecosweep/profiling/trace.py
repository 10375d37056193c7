"""The profiler's events of a traced call (Kineto records, or a saved Chrome trace) as kernel records: each kernel
linked to the operator that launched it and the operators and scopes around that operator, nested as torch's own
event tree nests them (same thread, enclosed intervals, same-named re-entries merged with their kernels lifted).
Times are relative to the trace's start: epoch nanoseconds as float microseconds keep only ~0.25 us."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

from ecosweep.profiling.rules import LAUNCH_APIS, KernelRecord

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
