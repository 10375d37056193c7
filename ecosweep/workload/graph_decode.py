"""The ``graph`` engine: fixed-length greedy decode, one CUDA graph replay per token.

Each call: reset the KV cache's write positions, prefill the prompts (uncaptured: its shapes
differ from a decode step's), take the first token, then replay one captured decode step per
further token. The step reads the last token and its position from static tensors, writes the
next token into the output buffer and advances the position, all on the device, so the host only
launches one graph per token and never waits inside a call (it waits once at the end, as a server
does when it hands the tokens back). The graph is captured once per cell, after a few decode steps
on a side stream (lazy initialisation, kernel autotuning). On a CPU the same step runs uncaptured:
the loop, cache and masks are the same code, which is what the CPU tests check against
``generate()``.

The model behind the loop is a *decoder* (``engine.decode_model``): :class:`TransformersDecoder`, the
checkpoint's own transformers modules over a StaticCache (the default, and every graph cell before
2026-12-02), or ecosweep's compact decoder (:mod:`ecosweep.workload.decode_model`). The ``compiled``
engine (:mod:`ecosweep.workload.compiled_decode`) is this loop with its step compiled.

Greedy decoding matches ``generate(do_sample=False, min_new_tokens=max_new_tokens)``: logits in
float32, end-of-sequence ids suppressed (so every request runs to its full length), arg-max.
"""

from __future__ import annotations

from typing import Any, Iterator, List, Optional, Tuple

from ecosweep.workload.decode_model import EcosweepDecoder
from ecosweep.workload.generation import eos_token_ids, synthetic_prompts
from ecosweep.workload.transformers_decoder import TransformersDecoder


def build_decoder(kind: Optional[str], model: Any, batch_size: int, input_tokens: int, max_cache_len: int,
                  device: str, fuse_projections: bool = False) -> Any:
    """The decoder ``engine.decode_model`` names (None: transformers)."""
    if kind in (None, "transformers"):
        return TransformersDecoder(model, input_tokens, max_cache_len, device)
    if kind == "ecosweep":

        return EcosweepDecoder(model, batch_size, input_tokens, max_cache_len, device, fuse_projections)
    raise ValueError(f"unknown decode model {kind!r}")


class GraphDecodeGeneration:
    """One cell's workload under the ``graph`` engine (same interface as FixedLengthGeneration)."""

    def __init__(self, model: Any, vocab_size: int, batch_size: int, input_tokens: int, output_tokens: int,
                 seed: int, device: str, capture: bool, capture_warmup_steps: int = 3,
                 decode_model: Optional[str] = None, fuse_projections: bool = False):
        import torch
        self.model = model
        self.batch_size = batch_size
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.device = device
        self.capture = capture and device.startswith("cuda")
        self.engine_effective = "graph" if self.capture else "graph_uncaptured"
        self.capture_warmup_steps = capture_warmup_steps
        self.input_ids = synthetic_prompts(vocab_size, batch_size, input_tokens, seed, device)
        self.max_cache_len = input_tokens + output_tokens
        self.decoder = build_decoder(decode_model, model, batch_size, input_tokens, self.max_cache_len, device,
                                     fuse_projections)
        self.decode_model = self.decoder.name
        with torch.inference_mode():
            self.tokens = torch.zeros(batch_size, output_tokens, dtype=torch.long, device=device)
            self.next_token = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
            self.position = torch.zeros(1, 1, dtype=torch.long, device=device)  # position of next_token
            self.write_index = torch.zeros(1, dtype=torch.long, device=device)  # its column in tokens
            eos: List[int] = [e for e in eos_token_ids(model) if 0 <= e < vocab_size]
            self.eos = torch.tensor(eos, dtype=torch.long, device=device) if eos else None
        self.graph: Any = None
        self.last_tokens: Any = None
        self.last_scores: Any = None  # (batch, vocab) float32 scores of the last step, EOS suppressed
        self._graph_scores: Any = None

    # -- the two model calls -------------------------------------------------------------------
    def _greedy(self, logits: Any) -> Any:
        import torch

        scores = logits[:, -1, :].float()
        if self.eos is not None:
            scores.index_fill_(1, self.eos, -torch.inf)
        self.last_scores = scores  # under a graph: the same memory at every replay
        return scores.argmax(dim=-1)

    def _prefill(self) -> None:
        first = self._greedy(self.decoder.prefill(self.input_ids))
        self.tokens[:, 0] = first
        self.next_token.copy_(first.unsqueeze(1))
        self.position.fill_(self.input_tokens)
        self.write_index.fill_(1)

    def _decode_step(self) -> None:
        """One token for every request; device-side only (no host synchronisation), so capturable."""
        nxt = self._greedy(self.decoder.step(self.next_token, self.position)).unsqueeze(1)
        self.next_token.copy_(nxt)
        self.tokens.index_copy_(1, self.write_index, nxt)
        self.position.add_(1)
        self.write_index.add_(1)

    def _step(self) -> None:
        """One decode step as the engine runs it: a graph replay once captured, else the step itself."""
        if self.graph is not None:
            self.graph.replay()
        else:
            self._decode_step()

    # -- capture ------------------------------------------------------------------------------
    def _warm_steps(self, steps: int) -> None:
        """``steps`` decode steps, each the first decode step again (for lazy initialisation and autotuning)."""
        for _ in range(steps):
            self.position.fill_(self.input_tokens)
            self.write_index.fill_(1)
            self._step()

    def _capture(self) -> None:
        import torch

        self._prefill()  # allocates the static cache
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._warm_steps(self.capture_warmup_steps)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._decode_step()
        self.graph = graph
        self._graph_scores = self.last_scores  # where every replay writes its scores

    def prepare(self) -> None:
        """Everything the engine does once per cell before its first call (the graph engine: the capture),
        so that a caller can time it apart from the calls; the first call does it otherwise."""
        import torch

        with torch.inference_mode():
            if self.capture and self.graph is None and self.output_tokens > 1:
                self._capture()

    # -- the workload interface ---------------------------------------------------------------
    def generate(self) -> int:
        """One full call; returns the new tokens produced (batch_size x output_tokens)."""
        import torch

        self.prepare()
        with torch.inference_mode():
            self._prefill()
            for _ in range(self.output_tokens - 1):
                self._step()
            if self.device.startswith("cuda"):
                torch.cuda.current_stream().synchronize()  # the tokens are ready, as a server hands them back
        self.last_tokens = self.tokens
        return self.batch_size * self.output_tokens

    def _step_scores(self) -> Any:
        """The scores the last step wrote (a captured graph writes them where its capture did: the uncaptured
        prefill re-points last_scores)."""
        return self._graph_scores if self.graph is not None else self.last_scores

    def teacher_forced_scores(self, tokens: Any) -> Iterator[Tuple[int, Any]]:
        """Scores of every step when each step is fed ``tokens`` (batch, output_tokens) instead of its own
        choice: yields (step, scores) for steps 0 .. output_tokens - 1, through the captured graph when
        there is one (the code that is measured)."""
        import torch

        self.prepare()
        with torch.inference_mode():
            self._prefill()
            yield 0, self.last_scores
            for step in range(1, self.output_tokens):
                self.next_token.copy_(tokens[:, step - 1:step].to(self.next_token.device))
                self._step()
                yield step, self._step_scores()

    def prefill(self) -> int:
        """Prefill and the first token only; returns batch_size."""
        import torch

        with torch.inference_mode():
            self._prefill()
            if self.device.startswith("cuda"):
                torch.cuda.current_stream().synchronize()
        return self.batch_size
