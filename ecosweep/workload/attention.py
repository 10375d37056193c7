"""``ecosweep_sdpa``: PyTorch SDPA that decodes grouped-query models on their key/value heads.

Over a static KV cache every decode step needs an attention mask (the cache is longer than what
has been written). transformers' ``sdpa`` (5.17) then cannot use SDPA's grouped-query mode, which
CUDA kernels support only without a mask, and copies every key/value head once per query head
(``repeat_kv``) over the whole cache, layer by layer, token by token: for Mistral-7B at batch 64
that is 4x the KV cache written and read again per step. Here a single query token is reshaped so
that the query heads sharing a key/value head become rows of one head,
``(batch, heads, 1, dim) -> (batch, kv_heads, heads_per_kv, dim)``, and attend to the cache as it
is; the mask, shared by all heads, broadcasts. Everything else (prefill, models without grouped
heads, no mask) goes to transformers' own ``sdpa`` unchanged. Later transformers releases do the
same reshaping in their own ``sdpa`` ("pack_gqa").
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

NAME = "ecosweep_sdpa"


def sdpa_grouped_decode(module: Any, query: Any, key: Any, value: Any, attention_mask: Optional[Any],
                        dropout: float = 0.0, scaling: Optional[float] = None, is_causal: Optional[bool] = None,
                        **kwargs: Any) -> Tuple[Any, None]:
    """Same contract as ``transformers.integrations.sdpa_attention.sdpa_attention_forward``:
    query ``(batch, heads, q_len, dim)``, key/value ``(batch, kv_heads, kv_len, dim)``; returns
    ``(batch, q_len, heads, dim)``."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, q_len, dim = query.shape
    if q_len != 1 or groups == 1 or attention_mask is None or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    # query head h uses key/value head h // groups (transformers' repeat_kv order)
    packed = query.reshape(batch, heads // groups, groups, dim)
    out = torch.nn.functional.scaled_dot_product_attention(packed, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def register() -> None:
    """Make ``attn_implementation="ecosweep_sdpa"`` known to transformers (idempotent): the attention
    function, and sdpa's boolean masks for it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, sdpa_grouped_decode)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
