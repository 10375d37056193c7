"""ecosweep's compact decoder over a KV cache of *slots*, one per request a server holds at once
(``serving.server=ecosweep``).

The fixed-batch decoder (:class:`ecosweep.workload.decode_model.EcosweepDecoder`) moves every row of its batch
through the same positions. A server's requests join and leave at different times, so here each slot has its
own position:

* ``prefill_into(input_ids, slots)``: a group of prompts of one length, attended causally among themselves (a
  prompt needs nothing from the cache), their keys and values written into the cache rows of ``slots`` at
  positions 0 .. T-1. A slot's earlier occupant needs no clearing: a query at position p reads only positions
  <= p, and the new request has written every one of them.
* ``step(rows)``: one decode token for slots 0 .. rows-1 at their own positions (``self.positions``), its keys
  and values written at those positions, each slot's mask ``cache position <= its position``. The token and
  position buffers are the decoder's own tensors, so a step reads no Python value that changes between steps
  and captures in a CUDA graph (one per ``rows``; the server keeps its requests in the lowest slots).

The weights, norms and projections are the loaded model's modules, with whatever quantization they carry,
exactly as in the fixed-batch decoder (whose layers, rotary tables and rotation this module reuses).
"""

from __future__ import annotations

from typing import Any, List

from ecosweep.workload.decode_model import EcosweepDecoder, _Layer, _rotate


class SlotDecoder(EcosweepDecoder):
    """The compact decoder with a per-slot position: ``slots`` requests of at most ``max_cache_len`` tokens."""

    name = "ecosweep_slots"

    def __init__(self, model: Any, slots: int, max_cache_len: int, device: str):
        import torch

        super().__init__(model, slots, 1, max_cache_len, device)
        self.slots = slots
        self.max_cache_len = max_cache_len
        with torch.inference_mode():
            self.rows = torch.arange(slots, device=device)
            self.tokens = torch.zeros(slots, 1, dtype=torch.long, device=device)  # each slot's next input token
            self.positions = torch.zeros(slots, dtype=torch.long, device=device)  # ... and its position

    def kv_cache_bytes(self) -> int:
        """Bytes of the key and value buffers of every layer (slots x kv heads x max_cache_len x head dim)."""
        return sum(layer.keys.numel() * layer.keys.element_size() * 2 for layer in self.layers)

    # --- prefill: prompts of one length into their slots ---------------------------------------------------
    def _prefill_attention(self, layer: _Layer, x: Any, slots: Any, positions: Any, cos: Any, sin: Any,
                           mask: Any) -> Any:
        import torch

        batch, tokens, _ = x.shape
        q, k, v = layer.projections(x)
        q = _rotate(q.view(batch, tokens, self.heads, self.head_dim).transpose(1, 2), cos, sin)
        k = _rotate(k.view(batch, tokens, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
        v = v.view(batch, tokens, self.kv_heads, self.head_dim).transpose(1, 2)
        # rows ``slots``, positions 0 .. T-1: the indexed shape is (batch, tokens, kv_heads, head_dim)
        layer.keys[slots[:, None], :, positions[None, :]] = k.transpose(1, 2)
        layer.values[slots[:, None], :, positions[None, :]] = v.transpose(1, 2)
        packed = q.reshape(batch, self.kv_heads, self.groups * tokens, self.head_dim)
        out = torch.nn.functional.scaled_dot_product_attention(packed, k, v, attn_mask=mask, scale=layer.scaling)
        out = out.view(batch, self.heads, tokens, self.head_dim).transpose(1, 2).reshape(batch, tokens, -1)
        return layer.o(out)

    def prefill_into(self, input_ids: Any, slots: Any) -> Any:
        """Logits (group, 1, vocab) of the last prompt token of each of ``input_ids`` (group, T), whose keys and
        values land in cache rows ``slots`` (group,). The slots' positions become T."""
        import torch

        tokens = input_ids.shape[1]
        if tokens > self.max_cache_len:
            raise ValueError(f"a prompt of {tokens} tokens does not fit the slots' cache of {self.max_cache_len}")
        positions = torch.arange(tokens, device=input_ids.device)
        cos, sin = self.cos[positions], self.sin[positions]
        causal = positions[None, :] <= positions[:, None]
        mask = causal.repeat(self.groups, 1)
        x = self.embed(input_ids)
        for layer in self.layers:
            x = x + self._prefill_attention(layer, layer.input_norm(x), slots, positions, cos, sin, mask)
            x = x + layer.feed_forward(layer.post_norm(x))
        self.positions.index_fill_(0, slots, tokens)
        return self.lm_head(self.norm(x[:, tokens - 1:, :]))

    # --- decode: one token for the first ``rows`` slots --------------------------------------------------
    def _step_attention(self, layer: _Layer, x: Any, rows: int, cos: Any, sin: Any, mask: Any) -> Any:
        import torch

        positions = self.positions[:rows]
        q, k, v = layer.projections(x)
        q = _rotate(q.view(rows, 1, self.heads, self.head_dim).transpose(1, 2), cos, sin)
        k = _rotate(k.view(rows, 1, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
        v = v.view(rows, 1, self.kv_heads, self.head_dim).transpose(1, 2)
        keys, values = layer.keys[:rows], layer.values[:rows]
        # row r at its own position: the indexed shape is (rows, kv_heads, head_dim)
        keys[self.rows[:rows], :, positions] = k[:, :, 0, :]
        values[self.rows[:rows], :, positions] = v[:, :, 0, :]
        packed = q.reshape(rows, self.kv_heads, self.groups, self.head_dim)
        out = torch.nn.functional.scaled_dot_product_attention(packed, keys, values, attn_mask=mask,
                                                               scale=layer.scaling)
        return layer.o(out.reshape(rows, 1, -1))

    def step(self, rows: int) -> Any:  # type: ignore[override]
        """Logits (rows, 1, vocab) of slots 0 .. rows-1 fed ``self.tokens`` at ``self.positions``; the positions
        advance by one. Device-side only, so capturable."""
        positions = self.positions[:rows]
        cos, sin = self.cos[positions][:, None, None, :], self.sin[positions][:, None, None, :]
        mask = (self.kv_positions[None, :] <= positions[:, None])[:, None, None, :]  # (rows, 1, 1, cache length)
        x = self.embed(self.tokens[:rows])
        for layer in self.layers:
            x = x + self._step_attention(layer, layer.input_norm(x), rows, cos, sin, mask)
            x = x + layer.feed_forward(layer.post_norm(x))
        positions.add_(1)
        return self.lm_head(self.norm(x))

    def static_tensors(self) -> List[Any]:
        return super().static_tensors() + [self.rows, self.tokens, self.positions]
