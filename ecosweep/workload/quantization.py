"""Map a quantization config onto torch dtypes and a bitsandbytes config."""

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


def bytes_per_element(dtype: str) -> int:
    """Bytes of one unquantized weight in ``dtype``."""
    return {"float32": 4, "float16": 2, "bfloat16": 2}[dtype]
