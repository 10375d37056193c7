"""What a configuration can run, decided from the settings alone (no model, no device, no torch): GPUs per cell,
bytes per weight, what torchao and the compiled engines need, and the recommended compile options. Validation
(before anything loads), the planner, the worker's device check and the analysis all ask here, so each rule
is written once.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Dict, Optional

from ecosweep.config.schema import QuantizationConfig

# How int8_outliers plants outlier features (part of a planted cell's id: the weights differ between versions).
# 1: the norms scaled alone (until 2026-11-27); 2: compensated in the projections that read them, MLP tamed.
PLANTING_VERSION = 2


def requested_gpus(s: Any) -> Optional[float]:
    """GPUs the cell asks for: ``ray.gpus_by_quantization[<its quantization>]``, else ``ray.gpus_per_cell``
    (None: the default, one for a CUDA cell and none for a CPU cell)."""
    by_quantization = s.ray.gpus_by_quantization or {}
    if s.quantization.name in by_quantization:
        return float(by_quantization[s.quantization.name])
    return None if s.ray.gpus_per_cell is None else float(s.ray.gpus_per_cell)


# Bytes of one unquantized value in each dtype.
BYTES_PER_ELEMENT = {"float32": 4, "float16": 2, "bfloat16": 2}
# Bytes of one quantized weight as stored (scales and block constants left out).
_QUANTIZED_BYTES = {"bnb_8bit": 1.0, "bnb_4bit": 0.5}
_TORCHAO_BYTES = {"int8_weight_only": 1.0, "int8_dynamic": 1.0, "fp8_weight_only": 1.0, "fp8": 1.0,
                  "int4_weight_only": 0.5}


def bytes_per_element(dtype: str) -> int:
    """Bytes of one unquantized weight in ``dtype``."""
    return BYTES_PER_ELEMENT[dtype]


def weight_bytes_per_parameter(method: str, dtype: str, torchao_type: Optional[str] = None) -> float:
    """Bytes one weight takes as stored by its quantization (an unknown one: 2, a 16-bit weight)."""
    if method == "torchao":
        return _TORCHAO_BYTES.get(torchao_type or "", 2.0)
    return _QUANTIZED_BYTES.get(method, float(BYTES_PER_ELEMENT.get(dtype, 2)))


# torchao precisions whose fast kernels need torch.compile: without it (engine eager or graph) each call
# takes torchao's generic path (dequantize the weight, or quantize activations, in separate kernels).
TORCHAO_NEEDS_COMPILE = {"int8_weight_only", "int8_dynamic", "fp8_weight_only"}
TORCHAO_CUDA_ONLY = {"fp8", "int4_weight_only"}


def torchao_problem(q: QuantizationConfig, device: str) -> Optional[str]:
    """Why a torchao precision cannot run here (``device``: "cpu" or "cuda"; compute capability is checked
    through ``min_compute_capability``), or None: torchao missing, a CUDA-only precision on a CPU, int4's
    kernel package missing."""
    if importlib.util.find_spec("torchao") is None:
        return (f"quantization={q.name} needs torchao, which is not installed: pip install -e '.[torchao]' "
                "(torchao 0.18), or choose a bitsandbytes precision (nf4, int8, int8_pure)")
    if q.torchao_type in TORCHAO_CUDA_ONLY and device == "cpu":
        return (f"quantization={q.name} (torchao {q.torchao_type}) runs on CUDA GPUs only; on a CPU use "
                "ao_int8_weight_only, ao_int8_dynamic or ao_fp8_weight_only")
    if q.torchao_type == "int4_weight_only" and q.dtype != "bfloat16":
        return (f"quantization={q.name} (torchao int4 weight-only, tinygemm kernels) needs bfloat16 activations, "
                f"not quantization.dtype={q.dtype}: set quantization.dtype=bfloat16")
    return None


def recommended_inductor_options(q: QuantizationConfig) -> Dict[str, Any]:
    """The inductor options the quantization's backend recommends for compiled decode: torchao's
    ``recommended_inductor_config_setter`` (torchao.quantization.utils) as options, without the two that change no
    kernel (fx_graph_cache is on by default; unique kernel names only rename). Empty for other backends."""
    if q.method != "torchao":
        return {}
    return {"coordinate_descent_tuning": True, "coordinate_descent_check_all_directions": True,
            "force_fuse_int_mm_with_mul": True}


# torch._int_mm on CUDA (cuBLAS) multiplies only matrices of more than this many rows.
INT_MM_MAX_REFUSED_ROWS = 16


def compiled_int_mm_problem(q: QuantizationConfig, engine_kind: str, batch_size: int, device: str) -> Optional[str]:
    """Why torchao's int8 dynamic precision cannot decode under ``engine_kind`` at ``batch_size`` on ``device``
    ("cpu" or "cuda"), or None. Compiled, its linear layers call torch._int_mm with batch_size rows per decode
    step, which CUDA refuses for 16 rows or fewer; eager torchao catches that refusal and falls back to a float
    matmul, compiled code does not (measured on H100, torch 2.11, torchao 0.18: every such cell failed with
    "self.size(0) needs to be greater than 16", under transformers' compiled generate(), now engine=hf_static; the
    compiled engine emits the same torch._int_mm). On a CPU no CUDA matmul is involved."""
    if not (q.method == "torchao" and q.torchao_type == "int8_dynamic" and engine_kind in ("compiled", "hf_static")
            and device == "cuda" and batch_size <= INT_MM_MAX_REFUSED_ROWS):
        return None
    return (f"quantization={q.name} (torchao int8 dynamic) with a compiled engine ({engine_kind}) at "
            f"batch_size={batch_size} cannot "
            "decode on a CUDA GPU: each decode step multiplies batch_size rows, and the int8 matmul torch.compile "
            f"emits for it (torch._int_mm) needs more than {INT_MM_MAX_REFUSED_ROWS} rows. Use batch_size >= "
            f"{INT_MM_MAX_REFUSED_ROWS + 1}, engine=eager or engine=graph (torchao falls back to a float matmul: rows "
            "say quant_fallback=true), or quantization=ao_int8_weight_only")
