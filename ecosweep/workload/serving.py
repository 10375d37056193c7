"""A served request stream under transformers' continuous batching (``scenario=serving``).

:class:`ServingWorkload` owns one ``ContinuousBatchingManager`` (paged KV cache, requests joining and leaving a
running batch of at most ``serving.max_batch``) and runs a repetition's requests through it as a client would:
sent on their schedule (all at once, Poisson) or as earlier ones finish (closed loop), streamed back token by token
so that the client's own clock sees each request's first token and end. Every request ends as ``completed``,
``failed`` (the server reported an error) or ``timed_out`` (cancelled ``serving.request_timeout_s`` after it was
sent): :func:`ecosweep.measure.serving_stats.accounting` checks that they add up.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional

from ecosweep.config.schema import ServingConfig
from ecosweep.measure.serving_stats import RequestRecord
from ecosweep.workload.request_stream import RequestSpec, prompt_ids

NAN = math.nan
# A paged KV cache block holds this many tokens (transformers' default page / block size).
TOKENS_PER_BLOCK = 256
POLL_S = 0.05  # the longest the client waits for an output before it looks at its schedule and timeouts again


def _cb_config(v: ServingConfig, on_cuda: bool, longest_request_tokens: int) -> Any:
    """transformers' ContinuousBatchingConfig for these settings (only the fields this transformers has). On a
    CPU the cache is sized from the load (transformers sizes it from free GPU memory)."""
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    wanted: Dict[str, Any] = {"max_requests_per_batch": v.max_batch,
                              "use_cuda_graph": {"auto": None, "on": True, "off": False}[v.cuda_graphs],
                              "default_compile_level": v.compile_level, "allow_block_sharing": False}
    if v.max_memory_percent is not None:
        wanted["max_memory_percent"] = v.max_memory_percent
    if not on_cuda:
        blocks_per_request = math.ceil(longest_request_tokens / TOKENS_PER_BLOCK) + 1
        wanted["num_blocks"] = v.max_batch * blocks_per_request + 1
        wanted["max_batch_tokens"] = max(256, min(v.max_batch, 8) * longest_request_tokens)
    known = {f.name for f in dataclasses.fields(ContinuousBatchingConfig)}
    return ContinuousBatchingConfig(**{k: value for k, value in wanted.items() if k in known})


def _served_facts(manager: Any, model: Any) -> Dict[str, Any]:
    """What transformers resolved for this server, read from the manager before it runs: the CUDA graphs of its
    varlen (prefill) and decode paths and its asynchronous batching (``serving.cuda_graphs=auto`` leaves them to
    transformers, which turns graphs off for an attention that needs a mask), and the paged attention it switched
    the model to (``paged|sdpa`` without flash attention). Read here because stopping the manager switches the
    model's attention back."""
    resolved = getattr(manager, "continuous_batching_config", None)
    facts: Dict[str, Any] = {"attn_implementation": getattr(model.config, "_attn_implementation", None)}
    graphs = getattr(resolved, "cuda_graph_booleans", None)
    if graphs is not None:
        facts["serving_cuda_graphs"] = f"varlen={bool(graphs[0])},decode={bool(graphs[1])}"
    asynchronous = getattr(resolved, "use_async_batching", None)
    if asynchronous is not None:
        facts["serving_async_batching"] = bool(asynchronous)
    return facts


@dataclass
class _InFlight:
    spec: RequestSpec
    sent_s: float
    client_first_token_s: float = NAN


@dataclass
class ServingRun:
    """One repetition's requests as they ended, and the run's span (perf_counter seconds)."""

    records: List[RequestRecord]
    started_s: float
    ended_s: float
    unix_minus_perf_s: float  # add to a perf_counter time for Unix seconds (the meter's clock)
    notes: List[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.ended_s - self.started_s


class ServingWorkload:
    """A model served by continuous batching; ``run(specs)`` serves one repetition's requests."""

    def __init__(self, model: Any, vocab_size: int, serving: ServingConfig, device: str, seed: int,
                 longest_request_tokens: int, clock: Callable[[], float] = time.perf_counter):
        self.model = model
        self.vocab_size = vocab_size
        self.v = serving
        self.device = device
        self.seed = seed
        self.longest_request_tokens = longest_request_tokens
        self.clock = clock
        self.manager: Any = None
        self.served: Dict[str, Any] = {}  # what the running server resolved (read while it runs: see _served_facts)
        self.restarts = 0
        self.runs = 0  # repetitions served: each one's requests get ids of their own on the server
        self.needs_restart = False  # a repetition left cancelled requests behind

    # --- the server --------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create and start the manager (again, after a failure stopped it)."""
        from transformers import GenerationConfig

        if self.manager is not None:
            self.close()
            self.restarts += 1
        generation = GenerationConfig(do_sample=False, eos_token_id=-1, pad_token_id=0, max_new_tokens=16)
        asked = _cb_config(self.v, self.device.startswith("cuda"), self.longest_request_tokens)
        self.manager = self.model.init_continuous_batching(generation_config=generation,
                                                           continuous_batching_config=asked)
        self.served = _served_facts(self.manager, self.model)
        self.manager.start()

    def close(self) -> None:
        manager, self.manager = self.manager, None
        if manager is None:
            return
        try:
            manager.stop(block=True)
        finally:
            destroy = getattr(self.model, "destroy_cached_continuous_batching_manager", None)
            if destroy is not None:
                destroy()

    def facts(self) -> Dict[str, Any]:
        """What ran (row columns): the server, its CUDA graphs and asynchronous batching as transformers decided
        them, the attention it served with, its restarts."""
        return {"serving_server": "transformers_continuous_batching",
                "serving_cuda_graphs": None, "serving_async_batching": None,
                "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
                **self.served, "serving_compile_level": self.v.compile_level,
                "serving_restarts_count": self.restarts}

    # --- one repetition ----------------------------------------------------------------------------------------
    def run(self, specs: List[RequestSpec]) -> ServingRun:
        """Serve ``specs`` as a client: send each on its schedule (closed loop: as others finish), stream the
        outputs back, cancel what passes its timeout. Returns every request's record."""
        if self.manager is None or not self.manager.is_running() or self.needs_restart:
            self.start()
            self.needs_restart = False
        self.runs += 1
        run = _Client(self, specs).serve()
        if any(r.status == "timed_out" for r in run.records):
            # cancelled requests may still hold the server's batch: the next repetition starts on a fresh one
            self.needs_restart = True
            run.notes.append("requests timed out: the server is started again before the next repetition")
        return run

    def server_id(self, spec: RequestSpec) -> str:
        """The request's id on the server: unique per repetition, so a late output of an earlier one is not taken
        for this one's."""
        return f"{self.runs}:{spec.request_id}"

    def send(self, spec: RequestSpec) -> bool:
        """Hand one request to the server; False when it refused it."""
        request_id = self.manager.add_request(
            prompt_ids(self.vocab_size, spec.input_tokens, self.seed, spec.index),
            request_id=self.server_id(spec), max_new_tokens=spec.output_tokens, streaming=True,
            record_timestamps=True)
        return request_id is not None


class _Client:
    """The client side of one repetition (one pass over its requests)."""

    def __init__(self, workload: ServingWorkload, specs: List[RequestSpec]):
        self.w = workload
        self.clock = workload.clock
        self.queue: Deque[RequestSpec] = deque(specs)
        self.total = len(specs)
        self.in_flight: Dict[str, _InFlight] = {}
        self.records: Dict[str, RequestRecord] = {}
        self.notes: List[str] = []
        self.closed_loop = bool(specs) and specs[0].arrival_s is None

    def serve(self) -> ServingRun:
        unix_minus_perf = time.time() - self.clock()
        self.start = self.clock()
        if self.closed_loop:
            for _ in range(min(self.w.v.concurrency, len(self.queue))):
                self._send(self.queue.popleft())
        while len(self.records) < self.total:
            self._send_due()
            output = self.w.manager.get_result(timeout=self._wait_s())
            if output is not None:
                self._receive(output)
            self._expire()
            if output is None and not self.w.manager.is_running():
                self._fail_outstanding("the continuous-batching server stopped")
        ended = self.clock()
        ordered = sorted(self.records.values(), key=lambda r: r.request_id)
        return ServingRun(ordered, self.start, ended, unix_minus_perf, self.notes)

    def _wait_s(self) -> float:
        if self.queue and not self.closed_loop:
            due = self.start + (self.queue[0].arrival_s or 0.0) - self.clock()
            return max(0.0, min(POLL_S, due))
        return POLL_S

    def _send_due(self) -> None:
        if self.closed_loop:
            return
        now = self.clock() - self.start
        while self.queue and (self.queue[0].arrival_s or 0.0) <= now:
            self._send(self.queue.popleft())

    def _send(self, spec: RequestSpec) -> None:
        sent = self.clock()
        if self.w.send(spec):
            self.in_flight[self.w.server_id(spec)] = _InFlight(spec, sent)
        else:
            self._record(_InFlight(spec, sent), "failed", error="the server did not accept the request")

    def _receive(self, output: Any) -> None:
        flight = self.in_flight.get(output.request_id)
        if flight is None:  # an output of a request already timed out (or a warm-up leftover)
            return
        now = self.clock()
        if output.generated_tokens and not math.isfinite(flight.client_first_token_s):
            flight.client_first_token_s = now
        if output.error is not None:
            self._record(flight, "failed", output, error=str(output.error)[:500])
        elif output.is_finished():
            self._record(flight, "completed", output, client_done_s=now)

    def _expire(self) -> None:
        limit = self.w.v.request_timeout_s
        now = self.clock()
        for server_id, flight in list(self.in_flight.items()):
            if now - flight.sent_s > limit:
                self.w.manager.cancel_request(server_id)
                self._record(flight, "timed_out", error=f"not finished {limit:g} s after it was sent")

    def _fail_outstanding(self, why: str) -> None:
        for flight in list(self.in_flight.values()):
            self._record(flight, "failed", error=why)
        while self.queue:
            spec = self.queue.popleft()
            self._record(_InFlight(spec, self.clock()), "failed", error=f"{why} before it was sent")

    def _record(self, flight: _InFlight, status: str, output: Any = None, error: Optional[str] = None,
                client_done_s: float = NAN) -> None:
        spec = flight.spec
        self.in_flight.pop(self.w.server_id(spec), None)
        times = tuple(getattr(output, "timestamps", None) or ())
        lifespan = getattr(output, "lifespan", (-1, -1))
        self.records[spec.request_id] = RequestRecord(
            request_id=spec.request_id, input_tokens=spec.input_tokens, output_tokens_asked=spec.output_tokens,
            tokens_generated=len(output.generated_tokens) if output is not None else 0, status=status,
            sent_s=flight.sent_s, created_s=getattr(output, "created_time", NAN),
            admitted_s=lifespan[0] if lifespan[0] >= 0 else NAN, finished_s=lifespan[1] if lifespan[1] >= 0 else NAN,
            first_token_s=times[0] if times else NAN, last_token_s=times[-1] if times else NAN,
            client_first_token_s=flight.client_first_token_s, client_done_s=client_done_s, error=error,
            token_times_s=times)
        if self.closed_loop and self.queue:
            self._send(self.queue.popleft())
