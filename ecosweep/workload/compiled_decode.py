"""The ``compiled`` engine: the graph engine's greedy loop with its decode step compiled by ``torch.compile``.

inductor compiles the whole step (``engine.compile.fullgraph``: a graph break fails the cell) with the engine
group's options, and the compiled step is replayed from CUDA graphs: by inductor's CUDA-graph trees
(``engine.compile.cudagraphs=inductor``, torch.compile's "reduce-overhead"; the default: a hand capture of a
compiled step failed on an H200 and left the process's CUDA state unusable, DESIGN.md), by ecosweep's own
``torch.cuda.graph`` capture (``ecosweep``), or not at all (``none``). Every tensor the step writes in place is
marked as a static address, so the trees capture it rather than copying or skipping it.

:meth:`CompiledDecodeGeneration.prepare` compiles before anything else uses the engine (the token check
checks the compiled step itself), and the time it takes is the cell's ``compile_s``. A :class:`CompileWatch`
counts every compilation and CUDA-graph recording from then on, so a compile inside an energy window is
caught (the protocol refuses such a window). inductor's caches (FX graphs, AOT autograd, Triton kernels) live
in one folder per host (``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_<user>``) shared by every
actor there, so a second cell of the same model, precision and shapes compiles from cache; the rows say
whether it did (``compile_cache``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ecosweep.config.compat import recommended_inductor_options
from ecosweep.config.schema import CompileConfig, QuantizationConfig
from ecosweep.errors import EcosweepError
from ecosweep.workload.graph_decode import GraphDecodeGeneration

# torch.compile's backend for the step and the prefill; tests swap in a slowed inductor to check that no
# compile time reaches a window.
COMPILE_BACKEND: Any = "inductor"


class CompileError(EcosweepError):
    """The decode step did not compile as the engine settings require (a graph break under fullgraph)."""


def inductor_options(cfg: CompileConfig, q: QuantizationConfig, device: str) -> Dict[str, Any]:
    """The options torch.compile passes to inductor for this cell, sorted by name: the engine's settings, the
    quantization backend's recommendations (``backend_recommended``), then ``inductor_options`` over both."""
    options: Dict[str, Any] = {"coordinate_descent_tuning": cfg.coordinate_descent_tuning,
                               "max_autotune": cfg.max_autotune,
                               "triton.cudagraphs": cfg.cudagraphs == "inductor" and device.startswith("cuda")}
    if cfg.backend_recommended:
        options.update(recommended_inductor_options(q))
    options.update(dict(cfg.inductor_options))
    return dict(sorted(options.items()))


def _counters() -> Dict[str, Dict[str, int]]:
    from torch._dynamo.utils import counters

    return {group: dict(values) for group, values in counters.items()}


@dataclass
class CompileWatch:
    """Counts dynamo compilations and CUDA-graph recordings in this process (dynamo's compile callbacks), and
    the time spent inside them, seconds. ``events`` only grows: compare two readings to see whether anything
    compiled in between."""

    events: int = 0
    frames: int = 0  # dynamo compiling a Python frame
    recordings: int = 0  # CUDA-graph trees recording a graph
    seconds: float = 0.0
    _started: Optional[float] = None
    _installed: bool = False
    skip_messages: List[str] = field(default_factory=list)

    def _start(self, args: Any = None) -> None:
        self._started = time.perf_counter()

    def _end(self, args: Any = None) -> None:
        self.events += 1
        trigger = getattr(getattr(args, "callback_trigger", None), "name", "")
        if trigger == "CUDAGRAPH_RECORDING":
            self.recordings += 1
        elif trigger in ("DYNAMO", ""):
            self.frames += 1
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None

    def install(self) -> "CompileWatch":
        """Register the callbacks (again after ``torch._dynamo.reset()``, which clears them); idempotent."""
        from torch._dynamo.callback import callback_handler

        if self._start not in getattr(callback_handler, "start_callbacks", ()):
            callback_handler.register_start_callback(self._start)
        if self._end not in getattr(callback_handler, "end_callbacks", ()):
            callback_handler.register_end_callback(self._end)
        if not self._installed:
            # torch's "cudagraphs" log artifact, which does not propagate: its warnings say why a graph was skipped
            logging.getLogger("torch._inductor.cudagraph_utils.__cudagraphs").addHandler(
                _SkipRecorder(self.skip_messages))
            self._installed = True
        return self


_PROCESS_WATCH: Optional[CompileWatch] = None


def process_watch() -> CompileWatch:
    """The process's one CompileWatch (dynamo's callbacks are process-wide), installed."""
    global _PROCESS_WATCH
    if _PROCESS_WATCH is None:
        _PROCESS_WATCH = CompileWatch()
    return _PROCESS_WATCH.install()


class _SkipRecorder(logging.Handler):
    """Keeps inductor's "skipping cudagraphs due to ..." messages: why the trees did not capture a graph."""

    def __init__(self, messages: List[str]):
        super().__init__(level=logging.DEBUG)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "skipping cudagraphs" in text:
            self.messages.append(text)


def _graph_breaks(before: Dict[str, Dict[str, int]], after: Dict[str, Dict[str, int]]) -> int:
    return sum(after.get("graph_break", {}).values()) - sum(before.get("graph_break", {}).values())


def _delta(before: Dict[str, Dict[str, int]], after: Dict[str, Dict[str, int]], group: str, key: str) -> int:
    return after.get(group, {}).get(key, 0) - before.get(group, {}).get(key, 0)


def cache_outcome(hits: int, misses: int) -> Optional[str]:
    """hit (every compiled graph came from inductor's FX-graph cache), miss (none did), partial, or None."""
    if hits + misses == 0:
        return None
    return "hit" if misses == 0 else ("miss" if hits == 0 else "partial")


def inductor_cache_dir() -> Optional[str]:
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        return cache_dir()
    except Exception:  # an internal helper: without it the folder stays unrecorded
        return None


class CompiledDecodeGeneration(GraphDecodeGeneration):
    """One cell's workload under the ``compiled`` engine (same interface as the graph engine)."""

    def __init__(self, model: Any, vocab_size: int, batch_size: int, input_tokens: int, output_tokens: int,
                 seed: int, device: str, compile_config: CompileConfig, quantization: QuantizationConfig,
                 capture_warmup_steps: int = 3, decode_model: Optional[str] = None, fuse_projections: bool = False):
        import torch

        super().__init__(model, vocab_size, batch_size, input_tokens, output_tokens, seed, device,
                         capture=compile_config.cudagraphs == "ecosweep", capture_warmup_steps=capture_warmup_steps,
                         decode_model=decode_model, fuse_projections=fuse_projections)
        self.compile_config = compile_config
        self.options = inductor_options(compile_config, quantization, device)
        # a cell owns its process: forget code compiled for another workload, whose guards would fail on this one
        # and count towards dynamo's recompile limit
        torch._dynamo.reset()
        self.watch = process_watch()
        with torch.inference_mode():
            self.scores = torch.zeros(batch_size, vocab_size, dtype=torch.float32, device=device)
        self.last_scores = self.scores  # every step (and the prefill) writes its scores here
        for tensor in self._static_tensors():
            torch._dynamo.mark_static_address(tensor)
        backend_options = {} if COMPILE_BACKEND != "inductor" else {"options": self.options}
        self._compiled_step = torch.compile(self._decode_step, fullgraph=compile_config.fullgraph, dynamic=False,
                                            backend=COMPILE_BACKEND, **backend_options)
        prefill_options = {} if COMPILE_BACKEND != "inductor" else {
            "options": {k: v for k, v in self.options.items() if k != "triton.cudagraphs"}}
        self._compiled_prefill = (torch.compile(self.decoder.prefill, fullgraph=compile_config.fullgraph,
                                                dynamic=False, backend=COMPILE_BACKEND, **prefill_options)
                                  if compile_config.prefill else None)
        self.engine_effective = "unknown"  # until prepare() compiled
        self.compile_note: Optional[str] = None
        self.compile_facts: Dict[str, Any] = {}
        self._prepared = False

    def _static_tensors(self) -> List[Any]:
        own = [self.tokens, self.next_token, self.position, self.write_index, self.scores]
        return own + ([self.eos] if self.eos is not None else []) + list(self.decoder.static_tensors())

    # -- the loop's hooks ---------------------------------------------------------------------
    def _greedy(self, logits: Any) -> Any:
        import torch

        scores = logits[:, -1, :].float()
        if self.eos is not None:
            scores = scores.index_fill(1, self.eos, -torch.inf)
        self.scores.copy_(scores)  # a static buffer: the compiled step returns nothing
        return scores.argmax(dim=-1)

    def _prefill(self) -> None:
        logits = (self._compiled_prefill or self.decoder.prefill)(self.input_ids)
        first = self._greedy(logits)
        self.tokens[:, 0] = first
        self.next_token.copy_(first.unsqueeze(1))
        self.position.fill_(self.input_tokens)
        self.write_index.fill_(1)

    def _step(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self._compiled_step()

    def _step_scores(self) -> Any:
        return self.scores

    def _capture(self) -> None:
        """ecosweep's capture of the compiled step (cudagraphs=ecosweep): warm-up steps on a side stream
        (they compile), then one torch.cuda.graph of the compiled step."""
        import torch

        self._prefill()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._warm_steps(max(1, self.capture_warmup_steps))
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._compiled_step()
        self.graph = graph

    # -- compile once, before anything uses the engine ----------------------------------------
    def prepare(self) -> None:
        """Compile (and capture) the step: a prefill and ``capture_warmup_steps`` compiled steps (at least two:
        inductor's trees run a step once before they record it), then, for cudagraphs=ecosweep, the capture.
        Records what happened in ``compile_facts``; raises CompileError for a graph break under fullgraph."""
        import torch

        if self._prepared:
            return
        before, started = _counters(), time.perf_counter()
        frames, recordings, skips = self.watch.frames, self.watch.recordings, len(self.watch.skip_messages)
        try:
            with torch.inference_mode():
                if self.capture and self.output_tokens > 1:
                    self._capture()
                else:
                    self._prefill()
                    self._warm_steps(max(2, self.capture_warmup_steps))
                if self.device.startswith("cuda"):
                    torch.cuda.current_stream().synchronize()
        except Exception as exc:
            if type(exc).__name__ in ("Unsupported", "UserError") or "graph break" in str(exc).lower():
                raise CompileError(
                    f"engine=compiled: torch.compile(fullgraph={self.compile_config.fullgraph}) could not compile "
                    f"the decode step as one graph: {type(exc).__name__}: {str(exc).splitlines()[0]}. Set "
                    "engine.compile.fullgraph=false to allow graph breaks (rows count them), or use engine=graph."
                ) from exc
            raise
        self._prepared = True
        self._record(before, _counters(), self.watch.frames - frames, self.watch.recordings - recordings,
                     self.watch.skip_messages[skips:], time.perf_counter() - started)
        self._events_after_prepare = self.watch.events

    def _record(self, before: Dict[str, Dict[str, int]], after: Dict[str, Dict[str, int]], frames: int,
                recordings: int, skips: List[str], seconds: float) -> None:
        captured = self.device.startswith("cuda") and self.compile_config.cudagraphs != "none"
        skipped = _delta(before, after, "inductor", "cudagraph_skips")
        if captured and self.compile_config.cudagraphs == "inductor" and (skips or skipped or not recordings):
            captured = False
            why = skips[0] if skips else (f"inductor skipped CUDA graphs {skipped} time(s) (TORCH_LOGS=cudagraphs "
                                          "says why)" if skipped else "inductor recorded no CUDA graph")
            self.compile_note = f"asked for compiled with CUDA graphs, ran without them: {why}"
        self.engine_effective = "compiled" if captured else "compiled_uncaptured"
        hits = _delta(before, after, "inductor", "fxgraph_cache_hit")
        misses = _delta(before, after, "inductor", "fxgraph_cache_miss")
        self.compile_facts = {
            "compile_s": seconds,
            "compile_frames_count": frames,
            "compile_graphs_count": _delta(before, after, "stats", "unique_graphs"),
            "compile_graph_breaks_count": _graph_breaks(before, after),
            "compile_cudagraph_recordings_count": recordings,
            "compile_cache": cache_outcome(hits, misses),
            "compile_cache_dir": inductor_cache_dir(),
            "compile_options": json.dumps(self.options, sort_keys=True),
            "compile_cudagraphs": self.compile_config.cudagraphs,
            "compile_prefill": self.compile_config.prefill,
        }

    def compile_events(self) -> int:
        """Compilations and CUDA-graph recordings so far in this process (the protocol reads it around each
        window: a change means something compiled inside the window)."""
        return self.watch.events

    def recompiles(self) -> int:
        """Compilations since prepare() finished (the token check and warm-up must not add any)."""
        return self.watch.events - getattr(self, "_events_after_prepare", self.watch.events)
