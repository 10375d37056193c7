"""Model sources: random weights built from an architecture, or pretrained checkpoints.

Random weights are materialised once per (architecture, dtype, seed) as a safetensors
checkpoint in the model cache, and every cell - quantized or not - then loads that
checkpoint with ``from_pretrained(..., quantization_config=...)``, the same path a
user with real weights takes. Concurrent builders (two actors on two GPUs asking for
the same checkpoint) are serialised by a file lock; the checkpoint is built in a
temporary folder and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

from ecosweep.config.schema import ModelConfig, StudyConfig
from ecosweep.errors import ModelNotFoundError
from ecosweep.workload import attention as attention_impl
from ecosweep.workload.quantization import bnb_config, torch_dtype

_ARCH_KEYS = (
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "vocab_size", "tie_word_embeddings", "max_position_embeddings",
)
_COMPLETE_MARKER = "ECOSWEEP_COMPLETE"


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    source: str  # checkpoint folder or hub id
    params_count: int
    vocab_size: int


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


def random_checkpoint_key(m: ModelConfig, dtype: str, seed: int) -> str:
    blob = json.dumps({"arch": architecture(m), "dtype": dtype, "seed": seed}, sort_keys=True)
    return f"{m.model_type}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}-{dtype}"


def is_random_checkpoint_built(cache_dir: str, key: str) -> bool:
    """Whether the model cache holds the complete checkpoint ``key``."""
    return (Path(cache_dir).expanduser() / key / _COMPLETE_MARKER).exists()


def ensure_random_checkpoint(m: ModelConfig, dtype: str, seed: int, cache_dir: str, build_device: str) -> Path:
    """Return the cached random-weight checkpoint folder, building it once if missing.

    ``build_device`` is where the weights are initialised ("cuda" is much faster for
    7B models); the saved tensors are the same format either way.
    """
    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    key = random_checkpoint_key(m, dtype, seed)
    final = cache / key
    if (final / _COMPLETE_MARKER).exists():
        return final
    with open(cache / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # blocks while another process builds it
        try:
            if (final / _COMPLETE_MARKER).exists():
                return final
            _build_random_checkpoint(m, dtype, seed, cache, final, build_device)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return final


def _build_random_checkpoint(m: ModelConfig, dtype: str, seed: int, cache: Path, final: Path, device: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{final.name}."))
    try:
        torch.manual_seed(seed)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(hf_config(m), dtype=torch_dtype(dtype))
        model.save_pretrained(tmp, safe_serialization=True)
        del model
        (tmp / "ecosweep_model.json").write_text(
            json.dumps({"model": dataclasses.asdict(m), "dtype": dtype, "seed": seed, "weights": "random"}, indent=1)
        )
        (tmp / _COMPLETE_MARKER).write_text("")
        if final.exists():  # an incomplete leftover of a killed build
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


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


def load_model(s: StudyConfig, device: str) -> LoadedModel:
    """Load the cell's model on ``device`` ("cpu" or "cuda:0") with its quantization and the
    engine's attention implementation (the checkpoint's default when the engine names none)."""
    from transformers import AutoModelForCausalLM

    q = s.quantization
    if s.weights == "random":
        source = str(ensure_random_checkpoint(s.model, q.dtype, s.seed, s.model_cache, device))
        local_only = True
    else:
        source = pretrained_source(s)
        local_only = not s.allow_download
    attention = {}
    if s.engine.attn_implementation is not None:
        if s.engine.attn_implementation == attention_impl.NAME:
            attention_impl.register()
        attention = {"attn_implementation": s.engine.attn_implementation}
    model = AutoModelForCausalLM.from_pretrained(
        source,
        dtype=torch_dtype(q.dtype),
        quantization_config=bnb_config(q),
        device_map={"": device},
        local_files_only=local_only,
        **attention,
    )
    model.eval()
    return LoadedModel(model, source, _logical_params(model), int(model.config.vocab_size))


def _logical_params(model: Any) -> int:
    """Parameter count, each 4-bit packed weight counted at its logical shape, not its bytes."""
    total = 0
    for p in model.parameters():
        quant_state = getattr(p, "quant_state", None)
        total += int(quant_state.shape.numel()) if quant_state is not None else p.numel()
    return total
