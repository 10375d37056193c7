"""Model sources: random weights built in memory from an architecture (``random_weights``), or
pretrained weights from a local folder or the Hugging Face cache. Either way the model goes through
``from_pretrained(..., quantization_config=...)``, so every precision is made the way a user with
real weights makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecosweep.config.compat import bytes_per_element
from ecosweep.config.schema import StudyConfig
from ecosweep.errors import ModelNotFoundError
from ecosweep.workload import attention as attention_impl
from ecosweep.workload.placement import PER_TENSOR, build_device, gpu_count, placement_kwargs
from ecosweep.workload.quantization import hf_quantization_config, torch_dtype
from ecosweep.workload.random_weights import build_random_model, load_random_model, random_weights_id


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    source: str  # "random:<architecture hash>-<dtype>", a local folder or a hub id
    params_count: int
    vocab_size: int


def pretrained_source(s: StudyConfig) -> str:
    """The local folder or hub id to load; raises ModelNotFoundError when it is not available."""
    m = s.model
    if m.path:
        path = Path(m.path).expanduser()
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"model.path={m.path!r} is not a model folder (no config.json there). "
                "Point it at a folder saved with save_pretrained, or use weights=random."
            )
        return str(path)
    if s.allow_download:
        return m.hub_id  # type: ignore[return-value]
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(m.hub_id, "config.json")
    if not isinstance(found, str):
        raise ModelNotFoundError(
            f"model {m.hub_id!r} (model={m.name}) is not in the local Hugging Face cache and "
            "downloads are off. Set allow_download=true to fetch it, model.path=/a/local/folder "
            "to use a copy you have, or weights=random to build it from its architecture."
        )
    return m.hub_id  # type: ignore[return-value]


def _random_build(s: StudyConfig, device: str) -> str:
    """Where the cell's random weights are built (``placement.build_device``)."""
    return build_device(device, gpu_count(s, device), s.model.params_b * 1e9 * bytes_per_element(s.quantization.dtype))


def load_model(s: StudyConfig, device: str) -> LoadedModel:
    """Load the cell's model on ``device`` ("cpu" or "cuda:0"), or across the cell's GPUs (cuda:0 ..
    cuda:N-1, ``ray.gpus_per_cell=N``), with its quantization and the engine's attention implementation
    (the checkpoint's default when the engine names none)."""
    q = s.quantization
    attention = {}
    if s.engine.attn_implementation is not None:
        if s.engine.attn_implementation == attention_impl.NAME:
            attention_impl.register()
        attention = {"attn_implementation": s.engine.attn_implementation}
    gpus = gpu_count(s, device)
    if s.weights == "random":
        o = s.outlier_features
        built_on = _random_build(s, device)
        source = random_weights_id(s.model, q.dtype, s.seed, o.count, o.scale, built_on == PER_TENSOR)
        model = load_random_model(s.model, q.dtype, s.seed, device, hf_quantization_config(q),
                o.count, o.scale, gpus, built_on,
                                  **attention)
    else:
        source = pretrained_source(s)
        model = _from_checkpoint(s, source, device, q.dtype, hf_quantization_config(q), gpus, **attention)
    model.eval()
    return LoadedModel(model, source, _logical_params(model), int(model.config.vocab_size))


def _from_checkpoint(s: StudyConfig, source: str, device: str, dtype: str, quantization_config: Any = None,
                     gpus: int = 1, **kwargs: Any) -> Any:
    """``from_pretrained`` of a local folder or a cached hub model on one device or across ``gpus`` GPUs
    (downloads only when allowed)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype(dtype),
            quantization_config=quantization_config,
                                                local_files_only=not s.allow_download,
                                                **placement_kwargs(device, gpus), **kwargs)


def load_reference_model(s: StudyConfig, device: str, dtype: str) -> Any:
    """The cell's model unquantized in ``dtype``, with the cell's weights: for random weights the tensors the
    cell quantizes (built in the cell's dtype, then cast), for pretrained ones the same checkpoint."""
    gpus = gpu_count(s, device)
    if s.weights == "random":

        o = s.outlier_features
        built_on = _random_build(s, device)
        if built_on != PER_TENSOR:
            model = build_random_model(s.model, s.quantization.dtype, s.seed, device, o.count, o.scale)
            model = model.to(torch_dtype(dtype))
        else:  # drawn tensor by tensor, then placed like the cell's own model
            model = load_random_model(s.model, s.quantization.dtype, s.seed, device, None, o.count, o.scale, gpus,
                                      built_on, load_dtype=dtype)
    else:
        model = _from_checkpoint(s, pretrained_source(s), device, dtype, gpus=gpus)
    return model.eval()


def _logical_params(model: Any) -> int:
    """Parameter count, each 4-bit packed weight counted at its logical shape, not its bytes."""
    total = 0
    for p in model.parameters():
        quant_state = getattr(p, "quant_state", None)
        total += int(quant_state.shape.numel()) if quant_state is not None else p.numel()
    return total
