"""Map a quantization config onto torch dtypes and the transformers quantization config of its backend
(bitsandbytes or torchao). What a precision needs to run is :mod:`ecosweep.config.compat`'s."""

from __future__ import annotations

from typing import Any, Optional

from ecosweep.config.schema import QuantizationConfig


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def bnb_config(q: QuantizationConfig) -> Optional[Any]:
    """A transformers BitsAndBytesConfig for quantized cells, None for plain dtypes."""
    if q.method == "none":
        return None
    from transformers import BitsAndBytesConfig

    if q.method == "bnb_4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=q.bnb_4bit_quant_type,
            bnb_4bit_compute_dtype=torch_dtype(q.bnb_4bit_compute_dtype),
            bnb_4bit_use_double_quant=q.bnb_4bit_use_double_quant,
        )
    if q.method == "bnb_8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=float(q.llm_int8_threshold))
    raise ValueError(f"unknown quantization method {q.method!r}")


def torchao_config(torchao_type: str) -> Any:
    """The torchao AOBaseConfig for a precision (see ``schema.TORCHAO_TYPES``)."""
    from torchao import quantization as ao

    if torchao_type == "int8_weight_only":
        return ao.Int8WeightOnlyConfig()
    if torchao_type == "int8_dynamic":
        return ao.Int8DynamicActivationInt8WeightConfig()
    if torchao_type == "fp8_weight_only":
        return ao.Float8WeightOnlyConfig()
    if torchao_type == "fp8":
        return ao.Float8DynamicActivationFloat8WeightConfig(granularity=ao.PerRow())
    if torchao_type == "int4_weight_only":
        # tinygemm (aten._weight_int4pack_mm, in core PyTorch; bfloat16 activations): torchao's default "plain"
        # packing needs the fbgemm-gpu-genai kernel package instead
        return ao.Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d")
    raise ValueError(f"unknown torchao_type {torchao_type!r}")


def hf_quantization_config(q: QuantizationConfig) -> Optional[Any]:
    """The ``quantization_config`` for ``from_pretrained``: bitsandbytes', torchao's, or None (plain dtypes)."""
    if q.method == "torchao":
        from transformers import TorchAoConfig

        return TorchAoConfig(quant_type=torchao_config(q.torchao_type))
    return bnb_config(q)
