"""What one served repetition's requests say: latency percentiles, SLO goodput, the accounting of every request,
and the steady-state window its energy is read in. Pure functions of request records (times in seconds on one
clock, ``time.perf_counter`` of the cell's process); no model, device or meter here.

The steady-state window follows ML.ENERGY's rule: it opens once the batch is full (as many requests in flight as
the load allows: ``serving.max_batch``, capped by the requests sent, or ``serving.concurrency`` for a closed loop)
and closes when the drain begins (the first moment after the last request was admitted that fewer are in flight).
A Poisson stream rarely fills its batch: its window runs from the arrival of the tenth percentile request to the
last arrival (the load has built up and no request is missing yet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

NAN = math.nan
STATUSES = ("completed", "failed", "timed_out")
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class RequestRecord:
    """One request of a repetition. Times are ``perf_counter`` seconds of the cell's process: ``sent_s`` when the
    client handed it over; the server's own ``created_s`` (request created), ``admitted_s`` (no longer queued),
    ``first_token_s`` / ``last_token_s`` (its first and last tokens), ``finished_s``; the client's
    ``client_first_token_s`` / ``client_done_s`` (when its first token and its end reached the client: the
    wall-clock cross-check). NaN where a time never came (a failed or timed-out request)."""

    request_id: str
    input_tokens: int
    output_tokens_asked: int
    tokens_generated: int
    status: str  # completed | failed | timed_out
    sent_s: float
    created_s: float = NAN
    admitted_s: float = NAN
    first_token_s: float = NAN
    last_token_s: float = NAN
    finished_s: float = NAN
    client_first_token_s: float = NAN
    client_done_s: float = NAN
    error: Optional[str] = None
    token_times_s: Tuple[float, ...] = ()

    @property
    def ttft_ms(self) -> float:
        """Time to first token from the server's timestamps, milliseconds."""
        return 1000.0 * (self.first_token_s - self.created_s)

    @property
    def tpot_ms(self) -> float:
        """Time per output token after the first (the mean inter-token latency), milliseconds."""
        if self.tokens_generated < 2:
            return NAN
        return 1000.0 * (self.last_token_s - self.first_token_s) / (self.tokens_generated - 1)

    @property
    def e2e_ms(self) -> float:
        return 1000.0 * (self.finished_s - self.created_s)

    @property
    def queue_ms(self) -> float:
        return 1000.0 * (self.admitted_s - self.created_s)

    @property
    def client_ttft_ms(self) -> float:
        return 1000.0 * (self.client_first_token_s - self.sent_s)

    @property
    def client_tpot_ms(self) -> float:
        if self.tokens_generated < 2:
            return NAN
        return 1000.0 * (self.client_done_s - self.client_first_token_s) / (self.tokens_generated - 1)

    @property
    def client_e2e_ms(self) -> float:
        return 1000.0 * (self.client_done_s - self.sent_s)

    def columns(self) -> Dict[str, Any]:
        """The request's row of the per-request Parquet file (times relative to nothing: seconds on the cell's
        clock; latencies in milliseconds)."""
        return {"request_id": self.request_id, "status": self.status, "input_tokens": self.input_tokens,
                "output_tokens_asked": self.output_tokens_asked, "tokens_generated": self.tokens_generated,
                "sent_s": self.sent_s, "admitted_s": self.admitted_s, "first_token_s": self.first_token_s,
                "finished_s": self.finished_s, "ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms,
                "e2e_ms": self.e2e_ms, "queue_ms": self.queue_ms, "client_ttft_ms": self.client_ttft_ms,
                "client_tpot_ms": self.client_tpot_ms, "client_e2e_ms": self.client_e2e_ms, "error": self.error}


def completed(records: Sequence[RequestRecord]) -> List[RequestRecord]:
    return [r for r in records if r.status == "completed"]


def accounting(records: Sequence[RequestRecord], sent: int) -> Dict[str, int]:
    """How many requests ended each way; raises when they do not add up to ``sent`` (a lost request is a bug,
    never a silent gap in the figures)."""
    counts = {f"requests_{status}": sum(r.status == status for r in records) for status in STATUSES}
    unknown = [r.request_id for r in records if r.status not in STATUSES]
    if unknown or sum(counts.values()) != sent or len(records) != sent:
        raise AssertionError(f"{sent} requests sent, {len(records)} records ({counts}; unknown status: {unknown})")
    return {"requests_sent": sent, **counts}


def percentile_columns(name: str, values_ms: Sequence[float]) -> Dict[str, float]:
    """``<name>_p50`` / ``_p90`` / ``_p99`` of the finite values (linear interpolation), NaN without any."""
    finite = np.array([v for v in values_ms if math.isfinite(v)], dtype=float)
    return {f"{name}_p{p}": float(np.percentile(finite, p)) if finite.size else NAN for p in PERCENTILES}


def latency_columns(records: Sequence[RequestRecord]) -> Dict[str, float]:
    """TTFT, TPOT, end-to-end and queueing percentiles of the completed requests (server timestamps), the client's
    wall-clock TTFT / TPOT / end-to-end percentiles, and how far the two are apart at the median
    (``*_clock_diff_pct``: server minus client, % of the client's)."""
    done = completed(records)
    columns: Dict[str, float] = {}
    for name in ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms", "client_ttft_ms", "client_tpot_ms", "client_e2e_ms"):
        columns.update(percentile_columns(name, [getattr(r, name) for r in done]))
    for name in ("ttft_ms", "tpot_ms", "e2e_ms"):
        server, client = columns[f"{name}_p50"], columns[f"client_{name}_p50"]
        columns[f"{name}_clock_diff_pct"] = 100.0 * (server - client) / client if client else NAN
    return columns


def meets(record: RequestRecord, ttft_ms: float, tpot_ms: float) -> bool:
    """A completed request within both limits (a one-token request has no TPOT to miss)."""
    if record.status != "completed":
        return False
    tpot = record.tpot_ms
    return record.ttft_ms <= ttft_ms and (not math.isfinite(tpot) or tpot <= tpot_ms)


def goodput_columns(records: Sequence[RequestRecord], slos: Mapping[str, Any], duration_s: float) -> Dict[str, Any]:
    """Per SLO (each with ``ttft_ms`` and ``tpot_ms``), in ``slo_names`` order: the requests per second that met
    it over the run's ``duration_s`` (``goodput_rps_by_slo``) and their share of those sent
    (``slo_met_share_by_slo``)."""
    names = list(slos)
    met = [sum(meets(r, slos[name].ttft_ms, slos[name].tpot_ms) for r in records) for name in names]
    return {"slo_names": ",".join(names),
            "goodput_rps_by_slo": [m / duration_s if duration_s > 0 else NAN for m in met],
            "slo_met_share_by_slo": [m / len(records) if records else NAN for m in met]}


def in_flight_at(records: Sequence[RequestRecord], t: float) -> int:
    """Requests admitted and not finished at time ``t``."""
    return sum(r.admitted_s <= t < r.finished_s for r in records
               if math.isfinite(r.admitted_s) and math.isfinite(r.finished_s))


@dataclass(frozen=True)
class SteadyWindow:
    """The steady-state stretch of a repetition (perf_counter seconds) and the rule that found it."""

    t0_s: float
    t1_s: float
    rule: str  # batch_full | arrivals

    @property
    def seconds(self) -> float:
        return self.t1_s - self.t0_s


def steady_window(records: Sequence[RequestRecord], arrival: str, cap: int) -> Optional[SteadyWindow]:
    """The repetition's steady-state window (module docstring), or None where it has none (the batch never
    filled, or closed before it opened)."""
    if arrival == "poisson":
        sent = sorted(r.sent_s for r in records)
        if len(sent) < 2:
            return None
        t0, t1 = sent[int(math.ceil(0.1 * (len(sent) - 1)))], sent[-1]
        return SteadyWindow(t0, t1, "arrivals") if t1 > t0 else None
    timed = [r for r in records if math.isfinite(r.admitted_s) and math.isfinite(r.finished_s)]
    events = sorted({r.admitted_s for r in timed} | {r.finished_s for r in timed})
    opened = next((t for t in events if in_flight_at(timed, t) >= cap), None)
    if opened is None:
        return None
    last_admitted = max(r.admitted_s for r in timed)
    closed = next((t for t in events if t >= max(opened, last_admitted) and in_flight_at(timed, t) < cap), None)
    if closed is None or closed <= opened:
        return None
    return SteadyWindow(opened, closed, "batch_full")


def tokens_between(records: Sequence[RequestRecord], t0: float, t1: float) -> Tuple[int, int]:
    """(output tokens generated, input tokens whose first token came) within [t0, t1)."""
    output = sum(sum(t0 <= t < t1 for t in r.token_times_s) for r in records)
    prompts = sum(r.input_tokens for r in records if math.isfinite(r.first_token_s) and t0 <= r.first_token_s < t1)
    return output, prompts
