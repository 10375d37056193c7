"""LLM.int8()'s real work: how many hidden-state columns its outlier decomposition takes, and outlier
features planted in random weights so that it has some to take.

LLM.int8() (bitsandbytes ``Linear8bitLt`` with ``threshold`` > 0) multiplies in 16 bits every input
column holding a value above the threshold (6.0) and the rest in int8. Trained models from ~6.7B
parameters up have such *outlier features*: a handful of fixed hidden dimensions, large in every layer
(Dettmers et al., "LLM.int8(): 8-bit Matrix Multiplication for Transformers at Scale", NeurIPS 2022,
section 4: at 6.7B about 150,000 outlier values per 2,048-token sequence, in only ~6 hidden dimensions,
in every layer). Random weights have none, so the decomposition extracts nothing and an int8 cell on
random weights measures the int8 kernels alone. :func:`plant_outlier_features` scales a few fixed hidden
dimensions of every decoder layer's input norms, which is where trained models carry them, so that the
inputs of the attention and MLP projections hold values far above 6 in those dimensions.

Counting runs one ``generate()`` call with forward hooks before the energy windows (hooks would perturb
a measured call); the count is the rows' ``int8_decomposed_cols_mean`` and friends.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List

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


def plant_outlier_features(model: Any, count: int, scale: float, seed: int) -> List[int]:
    """Multiply ``count`` hidden dimensions of every decoder layer's input norms by ``scale`` (in place);
    returns the dimensions. Normalised hidden states have unit RMS, so those dimensions then carry values
    of about ``scale`` into the projections that follow."""
    import torch

    dims = outlier_dims(int(model.config.hidden_size), count, seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] in _INPUT_NORMS and getattr(module, "weight", None) is not None:
                module.weight[dims] *= scale
    return dims
