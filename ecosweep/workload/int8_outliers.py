"""LLM.int8()'s real work: how many hidden-state columns its outlier decomposition takes, and outlier
features planted in random weights so that it has some to take.

LLM.int8() (bitsandbytes ``Linear8bitLt`` with ``threshold`` > 0) multiplies in 16 bits every input
column holding a value above the threshold (6.0) and the rest in int8. Trained models from ~6.7B
parameters up have such *outlier features*: a handful of fixed hidden dimensions, large in every layer
(Dettmers et al., "LLM.int8(): 8-bit Matrix Multiplication for Transformers at Scale", NeurIPS 2022,
section 4: at 6.7B about 150,000 outlier values per 2,048-token sequence, in only ~6 hidden dimensions,
in every layer). Random weights have no such features in the hidden states; at 7B width their MLP inner
activations (the down projection's input) do pass 6 in a few hundred columns per token (28 columns per
int8 matmul on average for Mistral-7B on an H100, all of them in down_proj), which trained models do
not show. :func:`plant_outlier_features` scales a few fixed hidden dimensions of every decoder layer's
input norms, which is where trained models carry them, so that the inputs of the attention and MLP
projections hold values far above 6 in those dimensions, and compensates in the weights that read
them (and tames the MLP's inner activations), so the model computes what it computed before and the
decomposition takes the planted dimensions only.

Counting runs one ``generate()`` call with forward hooks before the energy windows (hooks would perturb
a measured call); the count is the rows' ``int8_decomposed_cols_mean`` and friends.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

# Decoder-layer norms whose output feeds the attention (q, k, v) and MLP (gate, up) projections.
_INPUT_NORMS = ("input_layernorm", "post_attention_layernorm")


@dataclass(frozen=True)
class DecompositionCount:
    """Columns LLM.int8() multiplied in 16 bits, over every int8 matmul of one generate() call."""

    int8_decomposed_cols_mean: float  # mean decomposed input columns per int8 matmul
    int8_decomposed_cols_max: int  # the most in one matmul
    int8_decomposed_matmul_share: float  # share of int8 matmuls that decomposed at least one column
    int8_matmul_calls_count: int  # int8 matmuls counted (layers x steps)

    def columns(self) -> Dict[str, Any]:
        return asdict(self)


def _decomposing_layers(model: Any) -> List[Any]:
    return [m for m in model.modules() if type(m).__name__ == "Linear8bitLt"
            and float(getattr(m.state, "threshold", 0.0) or 0.0) > 0.0]


def count_decomposed_columns(model: Any, run_once: Callable[[], Any]) -> DecompositionCount:
    """Run ``run_once`` (a generate() call) with a hook on every LLM.int8() layer reading how many input
    columns the call decomposed (``state.idx``, set by bitsandbytes on every forward)."""
    counts: List[int] = []

    def hook(module: Any, _inputs: Any, _output: Any) -> None:
        idx = getattr(module.state, "idx", None)
        counts.append(int(idx.numel()) if idx is not None else 0)

    handles = [layer.register_forward_hook(hook) for layer in _decomposing_layers(model)]
    try:
        run_once()
    finally:
        for handle in handles:
            handle.remove()
    if not counts:
        return DecompositionCount(0.0, 0, 0.0, 0)
    return DecompositionCount(sum(counts) / len(counts), max(counts), sum(c > 0 for c in counts) / len(counts),
                              len(counts))


def outlier_dims(hidden_size: int, count: int, seed: int) -> List[int]:
    """``count`` fixed hidden dimensions, the same for a given seed."""
    import torch

    gen = torch.Generator().manual_seed(10_000 + seed)
    return sorted(torch.randperm(hidden_size, generator=gen)[:count].tolist())


def _linear(parent: Any, name: str) -> Optional[Any]:
    module = getattr(parent, name, None)
    return module if module is not None and getattr(module, "weight", None) is not None else None


def _consumers(block: Any, names: Sequence[str]) -> List[Any]:
    return [m for m in (_linear(block, n) for n in names) if m is not None]


def plant_outlier_features(model: Any, count: int, scale: float, seed: int) -> List[int]:
    """Plant ``count`` outlier features of size ~``scale`` (in place) without changing what the model
    computes; returns the dimensions.

    Trained models carry their outlier features in the hidden states that feed the attention (q/k/v) and
    MLP expansion (gate/up) projections, and their weights are adapted to them. Here, in every decoder
    layer: the two input norms' weights are multiplied by ``scale`` in those dimensions (normalised states
    have unit RMS, so the dimensions then carry values of about ``scale``), and the matching input columns
    of the projections that read them are divided by ``scale`` — in exact arithmetic the model's function
    is unchanged, so fp16 cells measure the same workload as plain random weights while int8 activations
    see the outliers. Random initialisation at 7B width also makes the MLP's inner activations
    (silu(gate)·up, the down projection's input) exceed LLM.int8()'s threshold in hundreds of columns,
    which trained models do not; up is scaled by ``_mlp_inner_factor`` and down by its inverse (again
    function-preserving), so that the decomposition takes the planted dimensions and nothing else.
    Architectures with separate q/k/v and gate/up projections (Llama, Mistral, Qwen2) or fused qkv_proj /
    gate_up_proj (Phi-3) are supported; others raise ValueError."""
    import torch

    hidden = int(model.config.hidden_size)
    dims = outlier_dims(hidden, count, seed)
    layers = [m for m in model.modules() if all(hasattr(m, n) for n in ("self_attn", "mlp", *_INPUT_NORMS))]
    if not layers:
        raise ValueError(f"cannot plant outlier features in {type(model).__name__}: no decoder layers with "
                         f"self_attn, mlp and {' and '.join(_INPUT_NORMS)} found")
    inner = _mlp_inner_factor(model.config)
    with torch.no_grad():
        for layer in layers:
            attention = _consumers(layer.self_attn, ("q_proj", "k_proj", "v_proj", "qkv_proj"))
            expansion = _consumers(layer.mlp, ("gate_proj", "up_proj", "gate_up_proj"))
            down = _linear(layer.mlp, "down_proj")
            if not attention or not expansion or down is None:
                raise ValueError(f"cannot plant outlier features in {type(model).__name__}: its layers lack "
                                 "q/k/v (or qkv_proj), gate/up (or gate_up_proj) and down_proj projections")
            for norm, readers in ((layer.input_layernorm, attention), (layer.post_attention_layernorm, expansion)):
                norm.weight[dims] *= scale
                for linear in readers:
                    linear.weight[:, dims] /= scale
            _scale_up_half(layer.mlp, inner)
            down.weight.mul_(1.0 / inner)
    return dims


def _mlp_inner_factor(config: Any) -> float:
    """The factor for the MLP's inner activations: gate and up outputs of random weights have a standard
    deviation of about initializer_range·sqrt(hidden_size) each (unit-RMS inputs), their product about its
    square. Scaled to 0.25, a column reaches 6 only where a product of two standard normals passes 24, which
    has a probability below 1e-10 per value: none in practice."""
    sd = float(getattr(config, "initializer_range", 0.02)) * math.sqrt(int(config.hidden_size))
    return min(1.0, 0.25 / (sd * sd))


def _scale_up_half(mlp: Any, factor: float) -> None:
    up = _linear(mlp, "up_proj")
    if up is not None:
        up.weight.mul_(factor)
        if getattr(up, "bias", None) is not None:
            up.bias.mul_(factor)
        return
    fused = _linear(mlp, "gate_up_proj")  # Phi-3: rows [0, I) gate, [I, 2I) up
    half = fused.weight.shape[0] // 2
    fused.weight[half:] *= factor
    if getattr(fused, "bias", None) is not None:
        fused.bias[half:] *= factor
