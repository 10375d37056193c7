"""Fixed-length greedy generation on deterministic synthetic prompts, by transformers' ``generate()``.

Every request of every call has exactly ``input_tokens`` prompt tokens and produces
exactly ``output_tokens`` new tokens (``min_new_tokens == max_new_tokens``, so EOS
cannot end a request early); the output length is checked after every call, so a
token count in the results is a count, not an assumption.

This is the ``eager`` engine (and, with a static cache, the ``compiled`` one); the
``graph`` engine lives in :mod:`ecosweep.workload.graph_decode`.
"""

from __future__ import annotations

import copy
from typing import Any, List, Optional, Tuple

# Prompt token ids are drawn from this range: above the special ids that tokenizers
# put at the bottom, and below 32000 so they are ordinary tokens in every vocabulary
# the published models use.
_PROMPT_ID_LOW = 100
_PROMPT_ID_HIGH = 32000


def synthetic_prompts(vocab_size: int, batch_size: int, input_tokens: int, seed: int, device: str) -> Any:
    """``batch_size`` prompts of exactly ``input_tokens`` ordinary token ids, the same for a given seed."""
    import torch

    high = min(vocab_size, _PROMPT_ID_HIGH)
    low = min(_PROMPT_ID_LOW, high - 1)
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, (batch_size, input_tokens), generator=gen).to(device)


def eos_token_ids(model: Any) -> List[int]:
    """The end-of-sequence ids generate() suppresses until min_new_tokens (empty when the model has none)."""
    eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]


class FixedLengthGeneration:
    """One cell's workload under ``generate()``: ``batch_size`` requests per call.

    ``cache_implementation="static"`` gives transformers' static-cache path, which compiles the
    decode step where transformers' own criteria allow it (the ``compiled`` engine).
    """

    engine_effective = "eager"

    def __init__(self, model: Any, vocab_size: int, batch_size: int, input_tokens: int,
                 output_tokens: int, seed: int, device: str, cache_implementation: Optional[str] = None):
        import torch
        from transformers import GenerationConfig

        self.model = model
        self.batch_size = batch_size
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.input_ids = synthetic_prompts(vocab_size, batch_size, input_tokens, seed, device)
        self.attention_mask = torch.ones_like(self.input_ids)
        eos = getattr(model.config, "eos_token_id", None)
        pad = getattr(model.config, "pad_token_id", None)
        if pad is None:
            pad = eos[0] if isinstance(eos, list) else (eos if eos is not None else 0)
        extra = {"cache_implementation": cache_implementation} if cache_implementation else {}
        self._full = self._config(GenerationConfig, output_tokens, eos, pad, extra)
        self._prefill = self._config(GenerationConfig, 1, eos, pad, extra)
        self.last_tokens: Any = None  # (batch_size, output_tokens) new tokens of the last full call

    @staticmethod
    def _config(cls: Any, new_tokens: int, eos: Any, pad: int, extra: dict) -> Any:
        return cls(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                   num_beams=1, use_cache=True, eos_token_id=eos, pad_token_id=pad, **extra)

    def _run(self, config: Any, new_tokens: int) -> Any:
        import torch

        with torch.inference_mode():
            out = self.model.generate(input_ids=self.input_ids, attention_mask=self.attention_mask,
                                      generation_config=config)
        return self._check_length(out, new_tokens)

    def _check_length(self, out: Any, new_tokens: int) -> Any:
        produced = out.shape[1] - self.input_tokens
        if produced != new_tokens or out.shape[0] != self.batch_size:
            raise RuntimeError(
                f"generate() returned {tuple(out.shape)}; expected ({self.batch_size}, "
                f"{self.input_tokens + new_tokens}): the fixed-length contract is broken"
            )
        return out[:, self.input_tokens:]

    def generate(self) -> int:
        """One full call; returns the new tokens produced (batch_size x output_tokens)."""
        self.last_tokens = self._run(self._full, self.output_tokens)
        return self.batch_size * self.output_tokens

    def generate_with_scores(self) -> Tuple[Any, List[Any]]:
        """One full call that also returns each step's logits as generate() saw them: (new tokens
        (batch, output_tokens), [float32 (batch, vocab)] * output_tokens). For checking other engines;
        never inside a measurement window."""
        import torch

        config = copy.deepcopy(self._full)
        config.output_logits = True
        config.return_dict_in_generate = True
        with torch.inference_mode():
            out = self.model.generate(input_ids=self.input_ids, attention_mask=self.attention_mask,
                                      generation_config=config)
        self.last_tokens = self._check_length(out.sequences, self.output_tokens)
        return self.last_tokens, [step.float() for step in out.logits]

    def prefill(self) -> int:
        """A call that stops after the first new token (prefill + one step); returns batch_size."""
        self._run(self._prefill, 1)
        return self.batch_size
