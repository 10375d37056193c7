"""Fixed-length greedy generation on deterministic synthetic prompts.

Every request of every call has exactly ``input_tokens`` prompt tokens and produces
exactly ``output_tokens`` new tokens (``min_new_tokens == max_new_tokens``, so EOS
cannot end a request early); the output length is checked after every call, so a
token count in the results is a count, not an assumption.
"""

from __future__ import annotations

from typing import Any

# Prompt token ids are drawn from this range: above the special ids that tokenizers
# put at the bottom, and below 32000 so they are ordinary tokens in every vocabulary
# the published models use.
_PROMPT_ID_LOW = 100
_PROMPT_ID_HIGH = 32000


class FixedLengthGeneration:
    """One cell's workload: ``batch_size`` requests per ``generate()`` call."""

    def __init__(self, model: Any, vocab_size: int, batch_size: int, input_tokens: int,
                 output_tokens: int, seed: int, device: str):
        import torch
        from transformers import GenerationConfig

        self.model = model
        self.batch_size = batch_size
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        high = min(vocab_size, _PROMPT_ID_HIGH)
        low = min(_PROMPT_ID_LOW, high - 1)
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(low, high, (batch_size, input_tokens), generator=gen)
        self.input_ids = ids.to(device)
        self.attention_mask = torch.ones_like(self.input_ids)
        eos = getattr(model.config, "eos_token_id", None)
        pad = getattr(model.config, "pad_token_id", None)
        if pad is None:
            pad = eos[0] if isinstance(eos, list) else (eos if eos is not None else 0)
        self._full = self._config(GenerationConfig, output_tokens, eos, pad)
        self._prefill = self._config(GenerationConfig, 1, eos, pad)

    @staticmethod
    def _config(cls: Any, new_tokens: int, eos: Any, pad: int) -> Any:
        return cls(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                   num_beams=1, use_cache=True, eos_token_id=eos, pad_token_id=pad)

    def _run(self, config: Any, new_tokens: int) -> int:
        import torch

        with torch.inference_mode():
            out = self.model.generate(input_ids=self.input_ids, attention_mask=self.attention_mask,
                                      generation_config=config)
        produced = out.shape[1] - self.input_tokens
        if produced != new_tokens or out.shape[0] != self.batch_size:
            raise RuntimeError(
                f"generate() returned {tuple(out.shape)}; expected ({self.batch_size}, "
                f"{self.input_tokens + new_tokens}): the fixed-length contract is broken"
            )
        return self.batch_size * new_tokens

    def generate(self) -> int:
        """One full call; returns the new tokens produced (batch_size x output_tokens)."""
        return self._run(self._full, self.output_tokens)

    def prefill(self) -> int:
        """A call that stops after the first new token (prefill + one step); returns batch_size."""
        return self._run(self._prefill, 1)
