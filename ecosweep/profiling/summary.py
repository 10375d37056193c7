"""A traced call's kernel records summarised per generated token: GPU busy and idle share, kernels and launches,
time by kernel class, the matmul kernel that did most of the work, and the table of distinct kernels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ecosweep.profiling.rules import MATMUL_CLASSES, KernelRecord, classify
from ecosweep.results.schema import KERNEL_CLASSES


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
