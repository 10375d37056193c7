"""The ``graph`` engine: fixed-length greedy decode, one CUDA graph replay per token.

Each call: reset the static KV cache's write positions, prefill the prompts (uncaptured: its
shapes differ from a decode step's), take the first token, then replay one captured decode step
per further token. The step reads the last token and its position from static tensors, writes
the next token into the output buffer and advances the position, all on the device, so the host
only launches one graph per token and never waits inside a call (it waits once at the end, as a
server does when it hands the tokens back). The graph is captured once per cell, after a few
decode steps on a side stream (lazy initialisation, kernel autotuning). On a CPU the same step
runs uncaptured: the loop, cache and masks are the same code, which is what the CPU tests check
against ``generate()``.

Greedy decoding matches ``generate(do_sample=False, min_new_tokens=max_new_tokens)``: logits in
float32, end-of-sequence ids suppressed (so every request runs to its full length), arg-max.
"""

from __future__ import annotations

import inspect
from typing import Any, List

from ecosweep.workload.generation import eos_token_ids, synthetic_prompts


def _cache_keyword(model: Any) -> str:
    """transformers renamed ``past_key_values`` to ``cache`` (5.2x keeps the old name as an alias)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def static_cache(model_config: Any, max_cache_len: int) -> Any:
    """A StaticCache of full-attention layers, each ``max_cache_len`` positions long.

    transformers gives a model with a sliding window (Mistral, Phi-3) sliding-window cache layers,
    which keep their fill level in a Python int and roll the cache once it is full: host state that
    a CUDA graph freezes at capture. When the whole cell (prompt + new tokens) fits in the window,
    sliding-window attention is full attention, so the cache is built as full-attention layers;
    a longer cell is refused.
    """
    import copy

    from transformers import StaticCache

    config = copy.deepcopy(model_config.get_text_config(decoder=True)
                           if hasattr(model_config, "get_text_config") else model_config)
    window = getattr(config, "sliding_window", None)
    if window is not None and max_cache_len > window:
        raise ValueError(
            f"engine=graph needs the whole sequence ({max_cache_len} tokens) inside the model's sliding window "
            f"({window} tokens): shorten input_tokens + output_tokens or use engine=eager")
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        other = sorted(set(layer_types) - {"full_attention", "sliding_attention"})
        if other:
            raise ValueError(f"engine=graph supports full and sliding-window attention layers, not {other}; "
                             "use engine=eager for this architecture")
        config.layer_types = ["full_attention"] * len(layer_types)
    config.sliding_window = None
    return StaticCache(config=config, max_cache_len=max_cache_len)


class GraphDecodeGeneration:
    """One cell's workload under the ``graph`` engine (same interface as FixedLengthGeneration)."""

    def __init__(self, model: Any, vocab_size: int, batch_size: int, input_tokens: int, output_tokens: int,
                 seed: int, device: str, capture: bool, capture_warmup_steps: int = 3):
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
        self.cache = static_cache(model.config, self.max_cache_len)
        self._cache_kw = _cache_keyword(model)
        self._bool_mask = model.config._attn_implementation != "eager"
        dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        self._mask_dtype = dtype if dtype.is_floating_point else torch.float16
        with torch.inference_mode():
            self.tokens = torch.zeros(batch_size, output_tokens, dtype=torch.long, device=device)
            self.next_token = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
            self.position = torch.zeros(1, 1, dtype=torch.long, device=device)  # position of next_token
            self.write_index = torch.zeros(1, dtype=torch.long, device=device)  # its column in tokens
            self.kv_positions = torch.arange(self.max_cache_len, device=device).view(1, 1, 1, -1)
            eos: List[int] = [e for e in eos_token_ids(model) if 0 <= e < vocab_size]
            self.eos = torch.tensor(eos, dtype=torch.long, device=device) if eos else None
        self._prefill_positions = torch.arange(input_tokens, device=device).unsqueeze(0)
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
        self.cache.reset()  # in place (graph addresses stay); clearing costs < 0.1 % of a call
        out = self.model(input_ids=self.input_ids, position_ids=self._prefill_positions, use_cache=True,
                         logits_to_keep=1, **{self._cache_kw: self.cache})
        first = self._greedy(out.logits)
        self.tokens[:, 0] = first
        self.next_token.copy_(first.unsqueeze(1))
        self.position.fill_(self.input_tokens)
        self.write_index.fill_(1)

    def _decode_step(self) -> None:
        """One token for every request; device-side only (no host synchronisation), so capturable."""
        import torch

        visible = self.kv_positions <= self.position  # (1, 1, 1, cache length): written positions
        if not self._bool_mask:  # eager attention adds its mask to the scores
            visible = torch.zeros(visible.shape, dtype=self._mask_dtype, device=self.device).masked_fill_(
                ~visible, torch.finfo(self._mask_dtype).min)
        out = self.model(input_ids=self.next_token, position_ids=self.position, attention_mask=visible,
                         use_cache=True, logits_to_keep=1, **{self._cache_kw: self.cache})
        nxt = self._greedy(out.logits).unsqueeze(1)
        self.next_token.copy_(nxt)
        self.tokens.index_copy_(1, self.write_index, nxt)
        self.position.add_(1)
        self.write_index.add_(1)

    # -- capture ------------------------------------------------------------------------------
    def _capture(self) -> None:
        import torch

        self._prefill()  # allocates the static cache
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.capture_warmup_steps):
                self.position.fill_(self.input_tokens)  # each warm-up step is the first decode step again
                self.write_index.fill_(1)
                self._decode_step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._decode_step()
        self.graph = graph
        self._graph_scores = self.last_scores  # where every replay writes its scores

    # -- the workload interface ---------------------------------------------------------------
    def generate(self) -> int:
        """One full call; returns the new tokens produced (batch_size x output_tokens)."""
        import torch

        with torch.inference_mode():
            if self.capture and self.graph is None and self.output_tokens > 1:
                self._capture()
            self._prefill()
            for _ in range(self.output_tokens - 1):
                if self.graph is not None:
                    self.graph.replay()
                else:
                    self._decode_step()
            if self.device.startswith("cuda"):
                torch.cuda.current_stream().synchronize()  # the tokens are ready, as a server hands them back
        self.last_tokens = self.tokens
        return self.batch_size * self.output_tokens

    def teacher_forced_scores(self, tokens: Any) -> Any:
        """Scores of every step when each step is fed ``tokens`` (batch, output_tokens) instead of its own
        choice: yields (step, scores) for steps 0 .. output_tokens - 1, through the captured graph when
        there is one (the code that is measured)."""
        import torch

        with torch.inference_mode():
            if self.capture and self.graph is None and self.output_tokens > 1:
                self._capture()
            self._prefill()
            yield 0, self.last_scores
            for step in range(1, self.output_tokens):
                self.next_token.copy_(tokens[:, step - 1:step].to(self.next_token.device))
                if self.graph is not None:
                    self.graph.replay()
                    yield step, self._graph_scores  # (the uncaptured prefill re-pointed last_scores)
                else:
                    self._decode_step()
                    yield step, self.last_scores

    def prefill(self) -> int:
        """Prefill and the first token only; returns batch_size."""
        import torch

        with torch.inference_mode():
            self._prefill()
            if self.device.startswith("cuda"):
                torch.cuda.current_stream().synchronize()
        return self.batch_size
