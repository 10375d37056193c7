"""The decoder of the graph and compiled engines by default (``engine.decode_model=transformers``): the
checkpoint's own modules (``model.forward``) over a StaticCache of full-attention layers sized to the cell."""

from __future__ import annotations

import copy
import inspect
from typing import Any, List


def _cache_keyword(model: Any) -> str:
    """transformers renamed ``past_key_values`` to ``cache`` (5.2x keeps the old name as an alias)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def check_inside_window(model_config: Any, max_cache_len: int, engine: str = "graph") -> None:
    """Raise where a cell (prompt + new tokens) does not fit the model's sliding window: inside it,
    sliding-window attention is full attention, which is what the loop's caches implement."""
    config = model_config.get_text_config(decoder=True) if hasattr(model_config, "get_text_config") else model_config
    window = getattr(config, "sliding_window", None)
    if window is not None and max_cache_len > window:
        raise ValueError(
            f"engine={engine} needs the whole sequence ({max_cache_len} tokens) inside the model's sliding window "
            f"({window} tokens): shorten input_tokens + output_tokens or use engine=eager")


def static_cache(model_config: Any, max_cache_len: int) -> Any:
    """A StaticCache of full-attention layers, each ``max_cache_len`` positions long.

    transformers gives a model with a sliding window (Mistral, Phi-3) sliding-window cache layers,
    which keep their fill level in a Python int and roll the cache once it is full: host state that
    a CUDA graph freezes at capture. When the whole cell (prompt + new tokens) fits in the window,
    sliding-window attention is full attention, so the cache is built as full-attention layers;
    a longer cell is refused.
    """
    from transformers import StaticCache

    check_inside_window(model_config, max_cache_len)
    config = copy.deepcopy(model_config.get_text_config(decoder=True)
                           if hasattr(model_config, "get_text_config") else model_config)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        other = sorted(set(layer_types) - {"full_attention", "sliding_attention"})
        if other:
            raise ValueError(f"engine=graph supports full and sliding-window attention layers, not {other}; "
                             "use engine=eager for this architecture")
        config.layer_types = ["full_attention"] * len(layer_types)
    config.sliding_window = None
    return StaticCache(config=config, max_cache_len=max_cache_len)


class TransformersDecoder:
    """The checkpoint's own modules (``model.forward``) over a StaticCache sized to the cell."""

    name = "transformers"

    def __init__(self, model: Any, input_tokens: int, max_cache_len: int, device: str):
        import torch

        self.model = model
        self.device = device
        self.cache = static_cache(model.config, max_cache_len)
        self._cache_kw = _cache_keyword(model)
        self._bool_mask = model.config._attn_implementation != "eager"
        dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        self._mask_dtype = dtype if dtype.is_floating_point else torch.float16
        self.kv_positions = torch.arange(max_cache_len, device=device).view(1, 1, 1, -1)
        self._prefill_positions = torch.arange(input_tokens, device=device).unsqueeze(0)

    def prefill(self, input_ids: Any) -> Any:
        """Logits (batch, 1, vocab) of the prompts' last position, the cache filled from position 0."""
        self.cache.reset()  # in place (graph addresses stay); clearing costs < 0.1 % of a call
        return self.model(input_ids=input_ids, position_ids=self._prefill_positions, use_cache=True,
                          logits_to_keep=1, **{self._cache_kw: self.cache}).logits

    def step(self, token: Any, position: Any) -> Any:
        """Logits (batch, 1, vocab) of ``token`` (batch, 1) at ``position`` (1, 1); device-side only."""
        import torch

        visible = self.kv_positions <= position  # (1, 1, 1, cache length): written positions
        if not self._bool_mask:  # eager attention adds its mask to the scores
            visible = torch.zeros(visible.shape, dtype=self._mask_dtype, device=self.device).masked_fill_(
                ~visible, torch.finfo(self._mask_dtype).min)
        return self.model(input_ids=token, position_ids=position, attention_mask=visible, use_cache=True,
                          logits_to_keep=1, **{self._cache_kw: self.cache}).logits

    def static_tensors(self) -> List[Any]:
        """Tensors the step reads or writes in place, besides the cache's own (StaticCache marks those)."""
        return [self.kv_positions]
