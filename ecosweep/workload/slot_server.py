"""ecosweep's own server for ``scenario=serving`` (``serving.server=ecosweep``): continuous batching over a fixed
set of KV-cache slots, decoded by CUDA graph replays.

transformers' continuous batching (:mod:`ecosweep.workload.serving`) schedules a paged cache from Python at every
step; at max batch 64 on an H100 it spent 3.2x the fixed batch's energy per output token (2026-12-07). This server
is the design static-cache engines use instead:

* ``serving.max_batch`` slots, each a row of one preallocated KV cache as long as the stream's longest request
  (:class:`ecosweep.workload.slot_decoder.SlotDecoder`);
* each iteration: requests whose time has come are queued; queued requests take the lowest free slots and are
  prefilled together (grouped by prompt length, at most ``PREFILL_TOKENS_MAX`` tokens a call), which gives their
  first token; then one decode step for every slot up to the highest one in use, replayed from the CUDA graph
  captured for that many rows (1, 2, 4, ... max_batch); a request that has all its tokens leaves its slot;
* the host waits for each step's tokens (a server streams them to its clients), so every request's token times
  are the moments its tokens existed. Client and server are one loop of the cell's process: the client's clock
  reads the same moments (``*_clock_diff_pct`` is 0 by construction here, unlike transformers' threaded server).

Greedy decoding with EOS suppressed, like every ecosweep engine, so each request runs to its asked length;
:meth:`SlotServingWorkload.decode_prompts` serves prompts through the same slots and graphs for the token check
against generate() (:func:`ecosweep.workload.token_check.verify_tokens`).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from ecosweep.config.schema import ServingConfig
from ecosweep.measure.serving_stats import RequestRecord
from ecosweep.workload.generation import eos_token_ids
from ecosweep.workload.request_stream import RequestSpec, prompt_ids
from ecosweep.workload.serving import ServingRun
from ecosweep.workload.slot_decoder import SlotDecoder

NAN = math.nan
PREFILL_TOKENS_MAX = 16384  # prompt tokens one prefill call takes (a group of longer prompts is split)
CAPTURE_WARMUP_STEPS = 2  # uncaptured steps per row count before its capture (lazy initialisation)
SERVER_NAME = "ecosweep_slots"


def row_buckets(max_batch: int) -> List[int]:
    """The row counts a decode step is captured for: powers of two below ``max_batch``, and ``max_batch``."""
    rows, n = [], 1
    while n < max_batch:
        rows.append(n)
        n *= 2
    return rows + [max_batch]


def bucket_for(rows_needed: int, buckets: List[int]) -> int:
    return next(b for b in buckets if b >= rows_needed)


@dataclass
class _Active:
    """A request in the server: queued (``slot`` None) or decoding in ``slot``."""

    spec: RequestSpec
    sent_s: float
    slot: Optional[int] = None
    admitted_s: float = NAN
    token_times: List[float] = field(default_factory=list)
    tokens: List[int] = field(default_factory=list)


class SlotServingWorkload:
    """A model served from ``serving.max_batch`` KV-cache slots; ``run(specs)`` serves one repetition's requests
    (the interface of :class:`ecosweep.workload.serving.ServingWorkload`)."""

    def __init__(self, model: Any, vocab_size: int, serving: ServingConfig, device: str, seed: int,
                 longest_request_tokens: int, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep):
        self.model = model
        self.vocab_size = vocab_size
        self.v = serving
        self.device = device
        self.seed = seed
        self.longest_request_tokens = longest_request_tokens
        self.clock = clock
        self.sleep = sleep
        self.capture = device.startswith("cuda") and serving.cuda_graphs != "off"
        self.buckets = row_buckets(serving.max_batch)
        self.decoder: Optional[SlotDecoder] = None
        self.graphs: Dict[int, Any] = {}
        self.eos: Any = None
        self.restarts = 0
        self.needs_restart = False
        self.capture_s = NAN
        self.kv_cache_mib = NAN
        self.graph_rows: List[int] = []  # the row counts captured at the last start (kept after close, for facts)
        self.last_tokens: Dict[str, List[int]] = {}  # the last repetition's tokens by request id (also unfinished)

    # --- the server ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Allocate the slots' cache and capture one decode graph per row count (again after a failure)."""
        import torch

        if self.decoder is not None:
            self.close()
            self.restarts += 1
        with torch.inference_mode():
            self.decoder = SlotDecoder(self.model, self.v.max_batch, self.longest_request_tokens, self.device)
            self.kv_cache_mib = self.decoder.kv_cache_bytes() / 2**20
            eos = [e for e in eos_token_ids(self.model) if 0 <= e < self.vocab_size]
            self.eos = torch.tensor(eos, dtype=torch.long, device=self.device) if eos else None
            started = time.perf_counter()
            self.graph_rows = []
            if self.capture:
                self._capture_all()
                self.graph_rows = sorted(self.graphs)
            self.capture_s = time.perf_counter() - started

    def close(self) -> None:
        """Free the graphs and the cache."""
        self.graphs.clear()
        self.decoder = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def facts(self) -> Dict[str, Any]:
        """Row columns saying what served: this server, its graphs, its cache, its restarts."""
        rows = self.graph_rows
        graphs = f"decode=True,rows={'/'.join(map(str, rows))}" if rows else "decode=False"
        return {"serving_server": SERVER_NAME, "serving_cuda_graphs": graphs, "serving_async_batching": False,
                "attn_implementation": "ecosweep_sdpa", "serving_compile_level": self.v.compile_level,
                "serving_restarts_count": self.restarts,
                "serving_kv_cache_mib": self.kv_cache_mib,
                "serving_slot_tokens": self.longest_request_tokens}

    # --- the model calls -------------------------------------------------------------------------------------
    def _greedy(self, logits: Any) -> Tuple[Any, Any]:
        """(arg-max tokens, float32 scores) of (rows, 1, vocab) logits, EOS suppressed."""
        import torch

        scores = logits[:, -1, :].float()
        if self.eos is not None:
            scores.index_fill_(1, self.eos, -torch.inf)
        return scores.argmax(dim=-1), scores

    def _decode_step(self, rows: int) -> Any:
        """One token for slots 0 .. rows-1, written as their next input; device-side only (capturable).
        Returns the step's scores. Positions past the cache (a free slot keeps stepping while a higher one is in
        use) stay at its last position: a slot's next request writes every position before it reads it."""
        d = self.decoder
        assert d is not None
        nxt, scores = self._greedy(d.step(rows))
        d.tokens[:rows, 0].copy_(nxt)
        d.positions[:rows].clamp_(max=d.max_cache_len - 1)
        return scores

    def _capture_all(self) -> None:
        import torch

        d = self.decoder
        assert d is not None
        pool = torch.cuda.graph_pool_handle()
        self.graph_scores: Dict[int, Any] = {}
        for rows in sorted(self.buckets, reverse=True):  # the largest first: the smaller ones reuse its pool
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(CAPTURE_WARMUP_STEPS):
                    self._decode_step(rows)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.graph_scores[rows] = self._decode_step(rows)
            self.graphs[rows] = graph
        d.positions.zero_()
        d.tokens.zero_()
        torch.cuda.current_stream().synchronize()

    def _step(self, rows: int) -> Any:
        """A decode step over the smallest captured row count >= ``rows``; returns its (bucket rows, vocab)
        scores (a graph's output buffer: valid until the next replay)."""
        bucket = bucket_for(rows, self.buckets)
        graph = self.graphs.get(bucket)
        if graph is None:
            return self._decode_step(bucket)
        graph.replay()
        return self.graph_scores[bucket]

    def _prefill(self, prompts: List[List[int]], slots: List[int]) -> Tuple[Any, Any]:
        """Prefill ``prompts`` (one length) into ``slots``: (first tokens, their scores); each slot's next input
        is its first token."""
        import torch

        d = self.decoder
        assert d is not None
        ids = torch.tensor(prompts, dtype=torch.long, device=self.device)
        slot_index = torch.tensor(slots, dtype=torch.long, device=self.device)
        first, scores = self._greedy(d.prefill_into(ids, slot_index))
        d.tokens.index_copy_(0, slot_index, first.unsqueeze(1))
        return first, scores

    def _prefill_groups(self, admitted: List[_Active]) -> List[int]:
        """Prefill the admitted requests, grouped by prompt length, each group at most PREFILL_TOKENS_MAX
        tokens per call; returns their first tokens in ``admitted``'s order (read on the host: it waits)."""
        import torch

        by_length: Dict[int, List[int]] = {}
        for i, a in enumerate(admitted):
            by_length.setdefault(a.spec.input_tokens, []).append(i)
        firsts: List[Any] = [None] * len(admitted)
        for length, members in by_length.items():
            per_call = max(1, PREFILL_TOKENS_MAX // max(1, length))
            for start in range(0, len(members), per_call):
                chunk = members[start:start + per_call]
                prompts = [prompt_ids(self.vocab_size, length, self.seed, admitted[i].spec.index) for i in chunk]
                first, _ = self._prefill(prompts, [admitted[i].slot for i in chunk])  # type: ignore[misc]
                for i, token in zip(chunk, first.unbind()):
                    firsts[i] = token
        return torch.stack(firsts).tolist()

    def step_tokens(self, rows: int) -> List[int]:
        """A decode step of slots 0 .. rows-1 and their new tokens, read on the host (which waits for the step, as
        a server streaming tokens does)."""
        self._step(rows)
        assert self.decoder is not None
        return self.decoder.tokens[:rows, 0].tolist()

    def _synchronize(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.current_stream().synchronize()

    # --- one repetition --------------------------------------------------------------------------------------
    def run(self, specs: List[RequestSpec]) -> ServingRun:
        """Serve ``specs`` on their schedule (closed loop: as earlier ones finish); every request ends completed,
        failed (the model call raised) or timed_out (``serving.request_timeout_s`` after it was sent)."""
        import torch

        if self.decoder is None or self.needs_restart:
            self.start()
            self.needs_restart = False
        with torch.inference_mode():
            return _SlotLoop(self, specs).serve()

    # --- the token check -------------------------------------------------------------------------------------
    def decode_prompts(self, input_ids: Any, output_tokens: int) -> Tuple[Any, List[Any]]:
        """Greedy tokens (batch, output_tokens) and each step's float32 scores (batch, vocab) of ``input_ids``
        (batch <= max_batch, one length) served in slots 0 .. batch-1 through the same prefill and captured
        steps as a stream."""
        import torch

        if self.decoder is None:
            self.start()
        batch = input_ids.shape[0]
        if batch > self.v.max_batch:
            raise ValueError(f"{batch} prompts do not fit {self.v.max_batch} slots")
        with torch.inference_mode():
            d = self.decoder
            assert d is not None
            d.positions.zero_()
            first, scores = self._prefill(input_ids.tolist(), list(range(batch)))
            tokens, all_scores = [first], [scores.clone()]
            for _ in range(output_tokens - 1):
                step_scores = self._step(batch)
                tokens.append(d.tokens[:batch, 0].clone())
                all_scores.append(step_scores[:batch].clone())
            d.positions.zero_()
            self._synchronize()
        return torch.stack(tokens, dim=1), all_scores


class ServedTokenCheck:
    """The slot server as :func:`ecosweep.workload.token_check.check_tokens` drives an engine: one free-running
    call of the reference's prompts, each step's scores with it."""

    def __init__(self, server: SlotServingWorkload, input_ids: Any, output_tokens: int):
        self.server = server
        self.input_ids = input_ids
        self.output_tokens = output_tokens
        self.engine_effective = SERVER_NAME + ("_graphs" if server.capture else "_uncaptured")
        self.model = server.model

    def generate_with_scores(self) -> Tuple[Any, List[Any]]:
        return self.server.decode_prompts(self.input_ids, self.output_tokens)


class _ModelCallFailed(Exception):
    """A prefill or decode step raised (its exception is the cause); the bookkeeping around them never does."""


def _model_call(call: Callable[..., Any], *args: Any) -> Any:
    try:
        return call(*args)
    except Exception as exc:
        raise _ModelCallFailed() from exc


class _SlotLoop:
    """One repetition's iterations: arrivals, timeouts, admissions and prefills, a decode step."""

    def __init__(self, server: SlotServingWorkload, specs: List[RequestSpec]):
        self.s = server
        self.clock = server.clock
        self.unsent: Deque[RequestSpec] = deque(specs)
        self.total = len(specs)
        self.queued: Deque[_Active] = deque()
        self.slots: List[Optional[_Active]] = [None] * server.v.max_batch
        self.records: Dict[str, RequestRecord] = {}
        self.notes: List[str] = []
        self.closed_loop = bool(specs) and specs[0].arrival_s is None
        server.last_tokens = {}

    def serve(self) -> ServingRun:
        unix_minus_perf = time.time() - self.clock()
        self.start = self.clock()
        if self.closed_loop:
            for _ in range(min(self.s.v.concurrency, len(self.unsent))):
                self._send(self.unsent.popleft())
        try:
            while len(self.records) < self.total:
                self._send_due()
                self._expire()
                self._admit()
                if any(a is not None for a in self.slots):
                    self._decode()
                elif not self.queued and self.unsent:
                    self._wait_for_arrival()
        except _ModelCallFailed as failed:  # out of memory, a CUDA error, a bad token id: no request is lost
            exc = failed.__cause__
            self._fail_outstanding(f"the server's model call failed: {type(exc).__name__}: {str(exc)[:300]}")
            self.s.needs_restart = True
            self.notes.append("a model call failed: the server is started again before the next repetition")
        ended = self.clock()
        ordered = sorted(self.records.values(), key=lambda r: r.request_id)
        return ServingRun(ordered, self.start, ended, unix_minus_perf, self.notes)

    # --- arrivals and timeouts -------------------------------------------------------------------------------
    def _send(self, spec: RequestSpec) -> None:
        self.queued.append(_Active(spec, self.clock()))

    def _send_due(self) -> None:
        if self.closed_loop:
            return
        now = self.clock() - self.start
        while self.unsent and (self.unsent[0].arrival_s or 0.0) <= now:
            self._send(self.unsent.popleft())

    def _wait_for_arrival(self) -> None:
        due = self.start + (self.unsent[0].arrival_s or 0.0) - self.clock()
        if due > 0:
            self.s.sleep(due)

    def _expire(self) -> None:
        limit = self.s.v.request_timeout_s
        now = self.clock()
        for a in [a for a in self.queued if now - a.sent_s > limit]:
            self.queued.remove(a)
            self._record(a, "timed_out", error=f"not finished {limit:g} s after it was sent")
        for slot, a in enumerate(self.slots):
            if a is not None and now - a.sent_s > limit:
                self.slots[slot] = None
                self._record(a, "timed_out", error=f"not finished {limit:g} s after it was sent")

    # --- admission and decoding ------------------------------------------------------------------------------
    def _admit(self) -> None:
        admitted: List[_Active] = []
        for slot in range(len(self.slots)):
            if not self.queued:
                break
            if self.slots[slot] is None:
                a = self.queued.popleft()
                a.slot, a.admitted_s = slot, self.clock()
                self.slots[slot] = a
                admitted.append(a)
        if not admitted:
            return
        firsts = _model_call(self.s._prefill_groups, admitted)  # waits for them: the host reads the tokens
        now = self.clock()
        for a, token in zip(admitted, firsts):
            self._token(a, token, now)

    def _decode(self) -> None:
        in_use = [slot for slot, a in enumerate(self.slots) if a is not None]
        rows = in_use[-1] + 1
        tokens = _model_call(self.s.step_tokens, rows)
        now = self.clock()
        for slot in in_use:
            a = self.slots[slot]
            if a is not None:
                self._token(a, tokens[slot], now)

    def _token(self, a: _Active, token: int, now: float) -> None:
        a.token_times.append(now)
        a.tokens.append(token)
        if len(a.token_times) >= a.spec.output_tokens:
            self.slots[a.slot] = None  # type: ignore[index]
            self._record(a, "completed")

    def _fail_outstanding(self, why: str) -> None:
        for slot, a in enumerate(self.slots):
            if a is not None:
                self.slots[slot] = None
                self._record(a, "failed", error=why)
        while self.queued:
            self._record(self.queued.popleft(), "failed", error=why)
        while self.unsent:
            self._record(_Active(self.unsent.popleft(), self.clock()), "failed", error=f"{why} before it was sent")

    def _record(self, a: _Active, status: str, error: Optional[str] = None) -> None:
        spec, times = a.spec, tuple(a.token_times)
        self.s.last_tokens[spec.request_id] = a.tokens
        done = times[-1] if status == "completed" else NAN
        self.records[spec.request_id] = RequestRecord(
            request_id=spec.request_id, input_tokens=spec.input_tokens, output_tokens_asked=spec.output_tokens,
            tokens_generated=len(times), status=status, sent_s=a.sent_s, created_s=a.sent_s,
            admitted_s=a.admitted_s, finished_s=done, first_token_s=times[0] if times else NAN,
            last_token_s=times[-1] if times else NAN, client_first_token_s=times[0] if times else NAN,
            client_done_s=done, error=error, token_times_s=times)
        if self.closed_loop and self.unsent:
            self._send(self.unsent.popleft())
