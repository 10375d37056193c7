"""Random weights built in memory, where the cell runs: no checkpoint on disk.

A model's random weights are a function of (architecture, dtype, seed, device type): the
architecture's own initialisation (``from_config``, transformers' ``_init_weights``) run on the
cell's device after ``torch.manual_seed(seed)``, with the process's RNG state put back afterwards.
The same cell measured twice therefore gets bit-identical weights, and so does every precision of
one model (NF4, int8 and fp16 cells quantize the same 16-bit tensors). These are the weights the
checkpoint path before 2026-11-27 saved and read back, so cells measured then are the same workload.

Quantized models are made the way a checkpoint is loaded — ``from_pretrained`` with the 16-bit
state dict in place of the files — so bitsandbytes quantizes each tensor on the device exactly as
it would from disk, and rows report the same quantizer. The 16-bit reference lives only until
then: one 16-bit copy of the model must fit on the device next to the quantized one.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Dict

from ecosweep.config.schema import ModelConfig

_ARCH_KEYS = (
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "vocab_size", "tie_word_embeddings", "max_position_embeddings",
)


def architecture(m: ModelConfig) -> Dict[str, Any]:
    arch = {k: getattr(m, k) for k in _ARCH_KEYS}
    if arch["max_position_embeddings"] is None:
        del arch["max_position_embeddings"]
    return arch


def hf_config(m: ModelConfig) -> Any:
    """A transformers config for the architecture (no weights, no network)."""
    from transformers import AutoConfig

    arch = architecture(m)
    return AutoConfig.for_model(arch.pop("model_type"), **arch)


def random_weights_id(m: ModelConfig, dtype: str, seed: int, outlier_count: int = 0, outlier_scale: float = 1.0,
                      cpu_built_for_gpu: bool = False) -> str:
    """A short name for one set of random weights, recorded as the rows' ``weights_source``; planted outlier
    features are part of it (they change the weights), and so is ``@cpu`` for a GPU cell whose weights the
    CPU's random generator built (they differ from GPU-built ones)."""
    blob = json.dumps({"arch": architecture(m), "dtype": dtype, "seed": seed}, sort_keys=True)
    planted = f"+outliers{outlier_count}x{outlier_scale:g}" if outlier_count > 0 else ""
    built = "@cpu" if cpu_built_for_gpu else ""
    return f"random:{m.model_type}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}-{dtype}{planted}{built}"


def build_random_model(m: ModelConfig, dtype: str, seed: int, device: str, outlier_count: int = 0,
                       outlier_scale: float = 1.0) -> Any:
    """The unquantized model with random weights on ``device`` ("cpu", "cuda:0"), in ``dtype``; with
    ``outlier_count`` > 0, that many hidden dimensions planted as outlier features (``int8_outliers``).

    Leaves the caller's RNG state (CPU and the device's) as it found it."""
    import torch
    from transformers import AutoModelForCausalLM

    from ecosweep.workload.quantization import torch_dtype

    devices = [torch.device(device)] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(hf_config(m), dtype=torch_dtype(dtype))
    if outlier_count > 0:
        from ecosweep.workload.int8_outliers import plant_outlier_features

        plant_outlier_features(model, outlier_count, outlier_scale, seed)
    return model.eval()


def load_random_model(m: ModelConfig, dtype: str, seed: int, device: str, quantization_config: Any,
                      outlier_count: int = 0, outlier_scale: float = 1.0, gpu_count: int = 1, built_on: str = "",
                      load_dtype: str = "", **from_pretrained_kwargs: Any) -> Any:
    """The cell's model: random 16-bit (or fp32) weights built on ``built_on`` (default ``device``; see
    ``placement.build_device``), then loaded through ``from_pretrained`` with ``quantization_config`` (None:
    unquantized) in ``load_dtype`` (default ``dtype``) onto ``device``, or across ``gpu_count`` GPUs."""
    import torch

    from ecosweep.workload.placement import placement_kwargs
    from ecosweep.workload.quantization import torch_dtype

    reference = build_random_model(m, dtype, seed, built_on or device, outlier_count, outlier_scale)
    try:
        model = type(reference).from_pretrained(
            None, config=copy.deepcopy(reference.config), state_dict=reference.state_dict(),
            dtype=torch_dtype(load_dtype or dtype), quantization_config=quantization_config,
            **placement_kwargs(device, gpu_count), **from_pretrained_kwargs)
    finally:
        del reference
        if device.startswith("cuda"):
            torch.cuda.empty_cache()  # the 16-bit copy's memory, before the cell measures its own
    return model
