"""ecosweep's compact decoder (``engine.decode_model=ecosweep``) for Llama, Mistral and Qwen2 architectures.

What gpt-fast's ``model.py`` keeps of a decoder, around the checkpoint's own modules: the embedding, the
norms, the MLPs, the attention projections and the output layer are the loaded model's modules, with
whatever quantization they carry (bitsandbytes modules, torchao weights), so the weights are the cell's
weights. ecosweep owns only what runs between them and keeps it on the device as tensors:

* the KV cache: one (batch, kv_heads, max_cache_len, head_dim) key and value buffer per layer, written in
  place at the step's positions (nothing to reset: every position a step reads was written by this call);
* rotary embeddings: cos/sin tables of every cache position, computed once from the model's own inverse
  frequencies and scaling (so Llama 3's scaled RoPE is the model's), indexed by the position tensor;
* masks: ``cache position <= query position``, a comparison of two tensors (causal inside the prompt, the
  written positions in a decode step);
* grouped-query attention on the key/value heads: the query heads that share a key/value head become rows
  of one head (as ``ecosweep_sdpa`` does), so no key/value head is copied.

Nothing inside a step reads a Python value that changes between steps, so a step captures in a CUDA graph
and compiles without guards on the position. With ``fuse_projections`` (16-bit weights only) q, k and v are
one matmul and gate and up another, as gpt-fast fuses them. The token check (:mod:`token_check`) compares
this decoder with ``generate()`` of the transformers model before any cell is measured.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from ecosweep.workload.transformers_decoder import check_inside_window

SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


def _rotary_tables(rotary: Any, max_cache_len: int, dtype: Any, device: str) -> Tuple[Any, Any]:
    """cos and sin (max_cache_len, head_dim) of every position, as transformers' rotary module computes them
    (float32 products of position and inverse frequency, scaled, cast to the model's dtype)."""
    import torch

    rope_type = getattr(rotary, "rope_type", "default")
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ValueError(f"engine.decode_model=ecosweep supports the rotary embeddings {SUPPORTED_ROPE_TYPES}, whose "
                         f"frequencies do not depend on the sequence length; this model's is {rope_type!r}: use "
                         "engine.decode_model=transformers")
    inv_freq = rotary.inv_freq.to(device=device, dtype=torch.float32)
    positions = torch.arange(max_cache_len, device=device, dtype=torch.float32)
    freqs = positions[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    scale = float(getattr(rotary, "attention_scaling", 1.0))
    return (emb.cos() * scale).to(dtype), (emb.sin() * scale).to(dtype)


def _rotate(x: Any, cos: Any, sin: Any) -> Any:
    """transformers' rotate-half rotary embedding; x (batch, heads, tokens, head_dim), cos/sin (tokens, head_dim)."""
    import torch

    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _fused_linear(modules: List[Any]) -> Any:
    """One nn.Linear whose output rows are ``modules``' output rows in order (16-bit weights)."""
    import torch

    weight = torch.cat([m.weight.detach() for m in modules], dim=0)
    has_bias = modules[0].bias is not None
    fused = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=has_bias, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(weight)
        if has_bias:
            fused.bias.copy_(torch.cat([m.bias.detach() for m in modules]))
    return fused.requires_grad_(False)


class _Layer:
    """One decoder layer's modules, its KV buffers and, when fused, its fused projections."""

    def __init__(self, layer: Any, batch_size: int, kv_heads: int, head_dim: int, max_cache_len: int,
                 dtype: Any, device: str, fuse: bool):
        import torch

        attn = layer.self_attn
        self.input_norm, self.post_norm, self.mlp = layer.input_layernorm, layer.post_attention_layernorm, layer.mlp
        self.q, self.k, self.v, self.o = attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj
        self.q_width = attn.q_proj.out_features
        self.kv_width = attn.k_proj.out_features
        self.scaling = float(attn.scaling)
        self.qkv = _fused_linear([self.q, self.k, self.v]) if fuse else None
        self.gate_up = _fused_linear([self.mlp.gate_proj, self.mlp.up_proj]) if fuse else None
        self.act = self.mlp.act_fn
        shape = (batch_size, kv_heads, max_cache_len, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)

    def projections(self, x: Any) -> Tuple[Any, Any, Any]:
        if self.qkv is None:
            return self.q(x), self.k(x), self.v(x)
        return self.qkv(x).split([self.q_width, self.kv_width, self.kv_width], dim=-1)

    def feed_forward(self, x: Any) -> Any:
        if self.gate_up is None:
            return self.mlp(x)
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.mlp.down_proj(self.act(gate) * up)


class EcosweepDecoder:
    """The compact decoder over a loaded transformers model (Llama, Mistral, Qwen2), one device."""

    name = "ecosweep"

    def __init__(self, model: Any, batch_size: int, input_tokens: int, max_cache_len: int, device: str,
                 fuse_projections: bool = False):
        import torch

        config = model.config
        if config.model_type not in ("llama", "mistral", "qwen2"):
            raise ValueError(f"engine.decode_model=ecosweep implements llama, mistral and qwen2, not "
                             f"{config.model_type!r}: use engine.decode_model=transformers")
        check_inside_window(config, max_cache_len, "graph or compiled with decode_model=ecosweep")
        body = model.model
        self.device = device
        self.embed, self.norm, self.lm_head = body.embed_tokens, body.norm, model.lm_head
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.groups = self.heads // self.kv_heads
        self.dtype = body.embed_tokens.weight.dtype
        self.cos, self.sin = _rotary_tables(body.rotary_emb, max_cache_len, self.dtype, device)
        self.kv_positions = torch.arange(max_cache_len, device=device)
        self.prefill_positions = torch.arange(input_tokens, device=device)
        self.layers = [_Layer(layer, batch_size, self.kv_heads, self.head_dim, max_cache_len, self.dtype, device,
                              fuse_projections) for layer in body.layers]

    def _attention(self, layer: _Layer, x: Any, positions: Any, cos: Any, sin: Any, mask: Any) -> Any:
        import torch

        batch, tokens, _ = x.shape
        q, k, v = layer.projections(x)
        q = _rotate(q.view(batch, tokens, self.heads, self.head_dim).transpose(1, 2), cos, sin)
        k = _rotate(k.view(batch, tokens, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
        v = v.view(batch, tokens, self.kv_heads, self.head_dim).transpose(1, 2)
        layer.keys.index_copy_(2, positions, k)
        layer.values.index_copy_(2, positions, v)
        # query head h reads key/value head h // groups: (b, heads, t, d) -> (b, kv_heads, groups x t, d)
        packed = q.reshape(batch, self.kv_heads, self.groups * tokens, self.head_dim)
        out = torch.nn.functional.scaled_dot_product_attention(packed, layer.keys, layer.values, attn_mask=mask,
                                                               scale=layer.scaling)
        out = out.view(batch, self.heads, tokens, self.head_dim).transpose(1, 2).reshape(batch, tokens, -1)
        return layer.o(out)

    def _forward(self, input_ids: Any, positions: Any) -> Any:
        """Logits (batch, 1, vocab) of the last of ``input_ids`` (batch, tokens) at ``positions`` (tokens,)."""
        tokens = input_ids.shape[1]
        cos, sin = self.cos[positions], self.sin[positions]
        visible = self.kv_positions[None, :] <= positions[:, None]  # (tokens, cache length)
        mask = visible.repeat(self.groups, 1)  # the rows of the packed query heads: (groups x tokens, cache length)
        x = self.embed(input_ids)
        for layer in self.layers:
            x = x + self._attention(layer, layer.input_norm(x), positions, cos, sin, mask)
            x = x + layer.feed_forward(layer.post_norm(x))
        return self.lm_head(self.norm(x[:, tokens - 1:, :]))

    def prefill(self, input_ids: Any) -> Any:
        return self._forward(input_ids, self.prefill_positions)

    def step(self, token: Any, position: Any) -> Any:
        return self._forward(token, position.view(1))

    def static_tensors(self) -> List[Any]:
        """Every tensor a step reads or writes in place (CUDA-graph trees need their addresses fixed)."""
        tensors = [self.cos, self.sin, self.kv_positions]
        for layer in self.layers:
            tensors += [layer.keys, layer.values]
        return tensors

    @property
    def fused(self) -> Optional[bool]:
        return self.layers[0].qkv is not None if self.layers else None
