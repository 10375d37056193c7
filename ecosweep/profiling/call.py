"""One call of a cell's workload traced with the PyTorch profiler, after its energy windows (never inside them:
the profiler's own overhead is not billed to any measurement). Under the eager engine, attention and
normalisation modules and bitsandbytes' linear layers are wrapped in profiler scopes (``ecosweep::module::<class>``)
for the call, so their non-GEMM kernels can be attributed; graph and compiled engines replay or fuse their
modules, and their kernels are classified by name alone."""

from __future__ import annotations

import gzip
import os
import re
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Optional

from ecosweep.profiling.summary import KernelProfile, kernel_table, summarize
from ecosweep.profiling.trace import records_from_trace, trace_events_from_kineto

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
