"""Random weights built in memory, where the cell runs: no checkpoint on disk.

A model's random weights are a function of (architecture, dtype, seed, device type): the
architecture's own initialisation (``from_config``, transformers' ``_init_weights``) run on the
cell's device after ``torch.manual_seed(seed)``, with the process's RNG state put back afterwards.
The same cell measured twice therefore gets bit-identical weights, and so does every precision of
one model (NF4, int8 and fp16 cells quantize the same 16-bit tensors). These are the weights the
checkpoint path before 2026-11-27 saved and read back, so cells measured then are the same workload.

A model that is placed across several GPUs, or quantized onto a GPU its 16-bit copy would not fit, is
drawn tensor by tensor instead: each tensor from its own seeded generator on the cell's first GPU. Where
transformers' loader materialises checkpoint tensors one by one (``tensor[...]``, transformers 5), each is
drawn only then and goes straight to its GPU (:func:`lazy_random_state_dict`: no copy of the model in host
memory); otherwise all are drawn into host memory first (:func:`random_state_dict`). Both give the same
tensors.

Quantized models are made the way a checkpoint is loaded — ``from_pretrained`` with the 16-bit
state dict in place of the files — so bitsandbytes quantizes each tensor on the device exactly as
it would from disk, and rows report the same quantizer. The 16-bit reference lives only until
then: one 16-bit copy of the model must fit on the device next to the quantized one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from contextlib import nullcontext
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ecosweep.config.schema import ModelConfig
from ecosweep.workload.int8_in_place import int8_quantized_in_place
from ecosweep.workload.int8_outliers import plant_outlier_features
from ecosweep.workload.placement import PER_TENSOR, placement_kwargs
from ecosweep.workload.quantization import torch_dtype

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
                      per_tensor: bool = False) -> str:
    """A short name for one set of random weights, recorded as the rows' ``weights_source``; planted outlier
    features are part of it (they change the weights), and so is ``@pertensor`` for weights drawn tensor by
    tensor (:func:`random_state_dict`: cells over several GPUs, or too large for one; other tensors)."""
    blob = json.dumps({"arch": architecture(m), "dtype": dtype, "seed": seed}, sort_keys=True)
    planted = f"+outliers{outlier_count}x{outlier_scale:g}" if outlier_count > 0 else ""
    built = "@pertensor" if per_tensor else ""
    return f"random:{m.model_type}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}-{dtype}{planted}{built}"


def build_random_model(m: ModelConfig, dtype: str, seed: int, device: str, outlier_count: int = 0,
                       outlier_scale: float = 1.0) -> Any:
    """The unquantized model with random weights on ``device`` ("cpu", "cuda:0"), in ``dtype``; with
    ``outlier_count`` > 0, that many hidden dimensions planted as outlier features (``int8_outliers``).

    Leaves the caller's RNG state (CPU and the device's) as it found it."""
    import torch
    from transformers import AutoModelForCausalLM


    devices = [torch.device(device)] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(hf_config(m), dtype=torch_dtype(dtype))
    if outlier_count > 0:

        plant_outlier_features(model, outlier_count, outlier_scale, seed)
    return model.eval()


def _tensor_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") >> 1


def _check_host_memory(needed_bytes: int, model_name: str) -> None:
    """Raise MemoryError (the cell's row says oom) before drawing a state dict the host cannot hold."""
    import psutil

    available = psutil.virtual_memory().available
    if needed_bytes > 0.95 * available:
        raise MemoryError(f"out of memory: {model_name}'s random weights are drawn into host memory first "
                          f"({needed_bytes / 1e9:.1f} GB) but this host has {available / 1e9:.1f} GB available; use a "
                          "host with more RAM (a 70B model in 16 bits needs ~150 GB) or fewer cells at once")


def _parameter_draws(m: ModelConfig, dtype: str) -> Iterator[Tuple[str, Tuple[int, ...], Any, str, float]]:
    """(name, shape, torch dtype, how it is initialised, std) of every parameter of the architecture, from a
    skeleton on the meta device: Linear and Embedding weights normal(0, initializer_range), norm weights one,
    biases zero (the architecture's own initialisation, by module kind)."""
    import torch
    from transformers import AutoModelForCausalLM


    config = hf_config(m)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, dtype=torch_dtype(dtype))
    std = float(getattr(config, "initializer_range", 0.02))
    for module_name, module in skeleton.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            name = f"{module_name}.{param_name}" if module_name else param_name
            if param_name == "bias":
                kind = "zero"
            elif isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                kind = "normal"
            elif "norm" in type(module).__name__.lower():
                kind = "one"
            else:
                raise ValueError(f"cannot initialise {name} of {type(module).__name__} tensor by tensor: only "
                                 "Linear, Embedding and norm modules are known")
            yield name, tuple(param.shape), param.dtype, kind, std


def _draw(name: str, shape: Tuple[int, ...], dtype: Any, kind: str, std: float, seed: int, device: str) -> Any:
    """One parameter's tensor on ``device``, from its own generator seeded by (seed, name): thread-safe, and the
    same numbers whichever order or thread draws it."""
    import torch

    tensor = torch.empty(shape, dtype=dtype, device=device)
    if kind == "zero":
        return tensor.zero_()
    if kind == "one":
        return tensor.fill_(1.0)
    generator = torch.Generator(device=device).manual_seed(_tensor_seed(seed, name))
    return tensor.normal_(0.0, std, generator=generator)


def random_state_dict(m: ModelConfig, dtype: str, seed: int, generate_on: str) -> Dict[str, Any]:
    """Random weights tensor by tensor, for models built away from the cell's device (across several GPUs,
    or quantized onto a GPU their 16-bit copy would not fit): each tensor drawn on ``generate_on`` from its
    own generator, seeded by (seed, tensor name), and kept in host memory (``_parameter_draws`` gives the
    initialisation). The same (architecture, dtype, seed) gives bit-identical tensors wherever they are
    placed, without ever holding the model on one device; not the tensors of :func:`build_random_model`,
    whose single generator runs through the model in order."""
    draws = list(_parameter_draws(m, dtype))
    _check_host_memory(sum(math.prod(shape) * t.itemsize for _, shape, t, _, _ in draws), m.name)
    return {name: _draw(name, shape, t, kind, std, seed, generate_on).to("cpu")
            for name, shape, t, kind, std in draws}


class LazyRandomTensor:
    """A parameter of :func:`lazy_random_state_dict`: drawn on ``device`` only when transformers' loader
    materialises it (``tensor[...]``, as it does a safetensors slice), then moved by the loader to where the
    parameter goes. Carries ``shape`` and ``dtype`` like the tensor it stands for."""

    def __init__(self, name: str, shape: Tuple[int, ...], dtype: Any, kind: str, std: float, seed: int,
                 device: str):
        self.name, self.shape, self.dtype, self.kind, self.std, self.seed, self.device = (
            name, shape, dtype, kind, std, seed, device)

    def __getitem__(self, index: Any) -> Any:
        tensor = _draw(self.name, self.shape, self.dtype, self.kind, self.std, self.seed, self.device)
        return tensor if index is Ellipsis else tensor[index]

    def get_shape(self) -> List[int]:
        return list(self.shape)

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point


def lazy_random_state_dict(m: ModelConfig, dtype: str, seed: int, generate_on: str) -> Dict[str, LazyRandomTensor]:
    """The tensors of :func:`random_state_dict`, each drawn only when the loader asks for it: nothing is held in
    host memory, and each lands on its GPU without a round trip through the host."""
    return {name: LazyRandomTensor(name, shape, t, kind, std, seed, generate_on)
            for name, shape, t, kind, std in _parameter_draws(m, dtype)}


def loader_materialises_lazily() -> bool:
    """Whether this transformers loads a passed state dict tensor by tensor through ``tensor[...]`` (its
    checkpoint-slice path, transformers 5), so that :func:`lazy_random_state_dict` can be passed."""
    try:
        from transformers import core_model_loading
    except ImportError:
        return False
    return hasattr(core_model_loading, "spawn_materialize")


def load_random_model(m: ModelConfig, dtype: str, seed: int, device: str, quantization_config: Any,
                      outlier_count: int = 0, outlier_scale: float = 1.0, gpu_count: int = 1, built_on: str = "",
                      load_dtype: str = "", lazy: Optional[bool] = None, **from_pretrained_kwargs: Any) -> Any:
    """The cell's model: random 16-bit (or fp32) weights built on ``device`` (or, with ``built_on`` PER_TENSOR,
    see ``placement.build_device``, tensor by tensor: drawn as the loader asks for each with ``lazy`` — default:
    where transformers' loader allows it — else into host memory first), then loaded through ``from_pretrained``
    with ``quantization_config`` (None: unquantized) in ``load_dtype`` (default ``dtype``) onto ``device``, or
    across ``gpu_count`` GPUs."""
    import torch
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING


    if built_on != PER_TENSOR:
        reference = build_random_model(m, dtype, seed, device, outlier_count, outlier_scale)
        model_class, config, state = type(reference), copy.deepcopy(reference.config), reference.state_dict()
    else:
        if outlier_count > 0:
            raise ValueError("outlier_features.count > 0 plants outliers in a model built on one GPU; this cell's "
                             "model is built tensor by tensor (several GPUs, or too large for one): set "
                             "outlier_features.count=0 or ray.gpus_per_cell=1 on a GPU its 16-bit copy fits")
        config = hf_config(m)
        model_class, reference = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)], None
        lazy = loader_materialises_lazily() if lazy is None else lazy
        drawn = lazy_random_state_dict if lazy else random_state_dict
        state = drawn(m, dtype, seed, device)
    # LLM.int8() weights drawn on a GPU are quantized there, not sent to the host and back (int8_in_place)
    in_place = int8_quantized_in_place() if getattr(quantization_config, "load_in_8bit", False) else nullcontext()
    try:
        with in_place:
            model = model_class.from_pretrained(
                None, config=config, state_dict=state, dtype=torch_dtype(load_dtype or dtype),
                quantization_config=quantization_config, **placement_kwargs(device, gpu_count),
                **from_pretrained_kwargs)
    finally:
        del reference, state
        if device.startswith("cuda"):
            torch.cuda.empty_cache()  # the 16-bit copy's memory, before the cell measures its own
    return model
