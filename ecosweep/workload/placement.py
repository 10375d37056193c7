"""Where a cell's model lives: one device, or layer by layer across the N GPUs the cell holds.

Ray gives a cell's actor its GPUs as ``CUDA_VISIBLE_DEVICES``, so they are cuda:0 .. cuda:N-1 in the
cell's process. A cell of one GPU loads everything on its device; a cell of N > 1 GPUs has transformers
(accelerate) place whole decoder layers across all N with ``device_map="balanced"`` — every GPU gets a
share, where ``"auto"`` would fill cuda:0 first and leave GPUs the cell holds and meters idle — and
no layer offloaded to the CPU (a model that does not fit its N GPUs fails with out-of-memory).
"""

from __future__ import annotations

from typing import Any, Dict

from ecosweep.config.compat import requested_gpus


def gpu_count(s: Any, device: str) -> int:
    """GPUs the cell's model is placed across: what it asks for on a CUDA device (default 1), else 0."""
    if not device.startswith("cuda"):
        return 0
    return max(1, int(requested_gpus(s) or 1))


def placement_kwargs(device: str, gpu_count: int) -> Dict[str, Any]:
    """``from_pretrained`` keyword arguments that put the model on ``device`` or across ``gpu_count`` GPUs."""
    if gpu_count <= 1 or not device.startswith("cuda"):
        return {"device_map": {"": device}}
    import torch

    return {"device_map": "balanced",
            "max_memory": {index: torch.cuda.mem_get_info(index)[0] for index in range(gpu_count)}}


PER_TENSOR = "per_tensor"  # random weights drawn tensor by tensor as the loader asks (or into host memory), placed


def build_device(device: str, gpu_count: int, weight_bytes_16bit: float) -> str:
    """Where random weights are built before they are placed: the cell's own GPU when its 16-bit copy fits
    in 80 % of that GPU's free memory and the cell holds one GPU, else PER_TENSOR: drawn tensor by tensor
    (``random_weights.lazy_random_state_dict`` or ``random_state_dict``; a model over several GPUs, or one
    quantized onto a GPU its 16-bit copy would not fit). Those are other tensors than a whole-model build of
    the same seed; rows say which (weights_source ends in ``@pertensor``)."""
    if not device.startswith("cuda"):
        return device
    if gpu_count > 1:
        return PER_TENSOR
    import torch

    return device if weight_bytes_16bit <= 0.8 * torch.cuda.mem_get_info(torch.device(device))[0] else PER_TENSOR
