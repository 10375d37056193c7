"""What kernel path a quantized cell actually took, so that a slow fallback is never reported as a
precision's cost without saying so.

A quantized linear layer is recognised by what it holds: bitsandbytes replaces the module (``Linear4bit``,
``Linear8bitLt``), torchao the weight (a tensor subclass such as ``Int8Tensor`` or ``Float8Tensor``).
torchao's int8 weight-only, int8 dynamic and fp8 weight-only layers reach their fast kernels only through
``torch.compile`` (``config.compat.TORCHAO_NEEDS_COMPILE``); decoded by eager ``generate()`` or a CUDA graph
without compiling, every call takes torchao's generic path, and the rows say ``quant_fallback=true``.
torchao fp8 (dynamic activation) takes its fast ``_scaled_mm`` kernel on any engine, so it is no fallback, but
under eager ``generate()`` its per-layer activation quantization is launched kernel by kernel: the report warns
("Launch-bound") that such a cell measures launch overhead more than fp8.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ecosweep.config.compat import TORCHAO_NEEDS_COMPILE
from ecosweep.config.schema import QuantizationConfig

# engine_effective values of a decode that ran torch.compile'd code
COMPILED_EFFECTIVE = ("compiled", "compiled_uncaptured", "hf_static_compiled")


def quantized_weight_type(model: Any) -> Optional[str]:
    """The class of the first quantized linear layer's module (bitsandbytes) or weight (torchao); None when
    no layer is quantized."""
    for module in model.modules():
        kind = type(module).__name__
        if kind in ("Linear4bit", "Linear8bitLt"):
            return kind
        weight = getattr(module, "weight", None)
        if weight is not None and type(weight).__name__ not in ("Parameter", "Tensor", "Params4bit", "Int8Params"):
            return type(weight).__name__
    return None


def kernel_path(q: QuantizationConfig, weight_type: Optional[str], engine_effective: Optional[str]) -> Dict[str, Any]:
    """Row columns: ``quant_kernel_path`` (backend, the quantized layer's type, compiled or not) and
    ``quant_fallback`` (True where the backend's fast kernels need torch.compile and the cell did not compile;
    null for unquantized cells)."""
    if q.backend == "none":
        return {"quant_kernel_path": None, "quant_fallback": None}
    compiled = engine_effective in COMPILED_EFFECTIVE
    path = f"{q.backend} {weight_type or 'unknown'}, {'compiled' if compiled else 'not compiled'}"
    fallback = q.backend == "torchao" and q.torchao_type in TORCHAO_NEEDS_COMPILE and not compiled
    return {"quant_kernel_path": path, "quant_fallback": fallback}
