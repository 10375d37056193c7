"""Model sources and fixed-length generation on CPU, for every quantization path."""

from __future__ import annotations

import math

import pytest

from ecosweep.cells import to_settings
from ecosweep.errors import ModelNotFoundError
from ecosweep.workload.generation import FixedLengthGeneration
from ecosweep.workload.models import load_model, pretrained_source

from conftest import compose


def settings(*overrides):
    return to_settings(compose(["hardware=cpu", *overrides]))


@pytest.mark.slow
@pytest.mark.parametrize("quantization,layer", [
    ("fp32", "Linear"), ("bf16", "Linear"), ("nf4", "Linear4bit"), ("nf4_dq", "Linear4bit"),
    ("fp4", "Linear4bit"), ("int8", "Linear8bitLt"), ("int8_pure", "Linear8bitLt"),
])
def test_every_quantization_loads_through_from_pretrained_and_generates_exactly(quantization, layer):
    s = settings(f"quantization={quantization}")
    loaded = load_model(s, "cpu")
    down = loaded.model.model.layers[0].mlp.down_proj
    assert type(down).__name__ == layer
    assert abs(loaded.params_count - 8_128_768) < 1000  # logical count, also for packed 4-bit weights
    assert loaded.source.startswith("random:")  # built in memory, nothing on disk
    w = FixedLengthGeneration(loaded.model, loaded.vocab_size, batch_size=2, input_tokens=12, output_tokens=5,
                              seed=0, device="cpu")
    assert tuple(w.input_ids.shape) == (2, 12)
    assert w.generate() == 10
    assert w.prefill() == 2


def test_prompts_are_deterministic_and_exact():
    s = settings()
    loaded = load_model(s, "cpu")
    a = FixedLengthGeneration(loaded.model, loaded.vocab_size, 3, 7, 2, seed=5, device="cpu")
    b = FixedLengthGeneration(loaded.model, loaded.vocab_size, 3, 7, 2, seed=5, device="cpu")
    c = FixedLengthGeneration(loaded.model, loaded.vocab_size, 3, 7, 2, seed=6, device="cpu")
    assert a.input_ids.equal(b.input_ids) and not a.input_ids.equal(c.input_ids)
    assert int(a.input_ids.min()) >= 100 and int(a.input_ids.max()) < loaded.vocab_size


def test_eos_cannot_end_generation_early():
    """Make EOS the most likely token everywhere: generation must still run to the full length."""
    import torch

    loaded = load_model(settings(), "cpu")
    model = loaded.model
    eos = model.config.eos_token_id
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.weight[eos] = 1.0
        model.lm_head.bias = None
    w = FixedLengthGeneration(model, loaded.vocab_size, 2, 4, 6, seed=0, device="cpu")
    assert w.generate() == 12


def _weights(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_random_weights_are_the_same_for_a_seed_and_differ_for_another():
    """Built in memory, no checkpoint: the same (architecture, dtype, seed) gives bit-identical tensors in
    every load, another seed other tensors; the caller's RNG is left where it was."""
    import torch

    from ecosweep.workload.random_weights import build_random_model

    m = settings().model
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = _weights(build_random_model(m, "float32", 0, "cpu"))
    assert torch.rand(3).equal(before)  # fork_rng: the build consumed none of the caller's random numbers
    again = _weights(build_random_model(m, "float32", 0, "cpu"))
    other = _weights(build_random_model(m, "float32", 1, "cpu"))
    assert first.keys() == again.keys() == other.keys()
    assert all(first[k].equal(again[k]) for k in first)
    linear = [k for k in first if k.endswith("proj.weight")]
    assert linear and not any(first[k].equal(other[k]) for k in linear)
    assert first["model.norm.weight"].eq(1).all()  # the architecture's own init: norms at one


def test_weights_drawn_tensor_by_tensor_are_fixed_by_the_seed_and_load_into_a_working_model():
    """The path of models over several GPUs (or too large for one): each tensor from its own seeded generator,
    so the same seed gives bit-identical tensors, another seed other ones; the architecture's init by module
    kind (Linear at initializer_range, norms at one); and the state dict loads into a model that decodes."""
    import torch

    from ecosweep.workload.placement import PER_TENSOR
    from ecosweep.workload.random_weights import load_random_model, random_state_dict

    m = settings().model
    first, again, other = (random_state_dict(m, "float32", seed, "cpu") for seed in (0, 0, 1))
    assert first.keys() == again.keys() == other.keys() and all(first[k].equal(again[k]) for k in first)
    linear = [k for k in first if k.endswith("proj.weight")]
    assert linear and not any(first[k].equal(other[k]) for k in linear)
    assert not first[linear[0]].equal(first[linear[1]])  # each tensor its own draw
    assert abs(first["model.layers.0.mlp.up_proj.weight"].std().item() - 0.02) < 0.001
    assert first["model.norm.weight"].eq(1).all()
    model = load_random_model(m, "float32", 0, "cpu", None, built_on=PER_TENSOR)
    loaded = model.state_dict()
    assert all(loaded[k].equal(first[k]) for k in first)
    with torch.no_grad():
        logits = model(torch.arange(8).unsqueeze(0)).logits
    assert torch.isfinite(logits).all() and logits.shape[-1] == m.vocab_size
    with pytest.raises(ValueError, match="outlier_features.count=0"):
        load_random_model(m, "float32", 0, "cpu", None, outlier_count=6, built_on=PER_TENSOR)


@pytest.mark.parametrize("quantization", ["fp32", "nf4", "int8_pure"])
def test_weights_drawn_lazily_by_the_loader_are_those_drawn_into_host_memory(quantization, monkeypatch):
    """transformers 5 materialises a passed state dict tensor by tensor (``tensor[...]``): the lazy state dict
    draws each parameter only then, on the cell's device, and the loaded (and quantized) model is bit-identical
    to one loaded from the same tensors drawn into host memory first (the path of other transformers)."""
    from ecosweep.workload import random_weights
    from ecosweep.workload.placement import PER_TENSOR
    from ecosweep.workload.quantization import hf_quantization_config

    s = settings(f"quantization={quantization}")
    m, q = s.model, s.quantization
    lazy, host = (random_weights.lazy_random_state_dict(m, "float32", 0, "cpu"),
                  random_weights.random_state_dict(m, "float32", 0, "cpu"))
    assert lazy.keys() == host.keys() and all(lazy[k][...].equal(host[k]) for k in host)
    assert all(lazy[k].shape == tuple(host[k].shape) and lazy[k].dtype == host[k].dtype for k in host)
    drawn = []
    monkeypatch.setattr(random_weights, "_check_host_memory", lambda needed, name: drawn.append(needed))
    assert random_weights.loader_materialises_lazily()  # transformers 5 here: the default
    loaded_lazily = random_weights.load_random_model(m, q.dtype, 0, "cpu", hf_quantization_config(q),
                                                     built_on=PER_TENSOR).state_dict()
    assert drawn == []  # nothing staged in host memory first
    loaded_from_host = random_weights.load_random_model(m, q.dtype, 0, "cpu", hf_quantization_config(q),
                                                        built_on=PER_TENSOR, lazy=False).state_dict()
    assert len(drawn) == 1 and loaded_lazily.keys() == loaded_from_host.keys()
    assert all(loaded_lazily[k].equal(loaded_from_host[k]) for k in loaded_lazily)


def test_a_state_dict_the_host_cannot_hold_is_refused_as_out_of_memory(monkeypatch):
    import psutil

    from ecosweep.run.worker import is_oom
    from ecosweep.workload.random_weights import random_state_dict

    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("VM", (), {"available": 10**6})())
    with pytest.raises(MemoryError, match="drawn into host memory first .* 0.0 GB available") as err:
        random_state_dict(settings().model, "float32", 0, "cpu")
    assert is_oom(err.value)  # the cell's row says oom


def test_every_precision_of_a_seed_quantizes_the_same_weights():
    """fp32 loads the built tensors as they are; NF4 and pure int8 quantize those same tensors (their
    dequantized weights are the fp32 ones within each format's rounding), and nothing is written to disk."""
    import bitsandbytes.functional as bnbf
    import torch

    from ecosweep.workload.random_weights import build_random_model

    reference = build_random_model(settings().model, "float32", 0, "cpu").model.layers[0].mlp.down_proj.weight
    fp32 = load_model(settings("quantization=fp32"), "cpu")
    assert fp32.source.startswith("random:llama-") and fp32.source.endswith("-float32")
    assert fp32.model.model.layers[0].mlp.down_proj.weight.equal(reference)
    nf4 = load_model(settings("quantization=nf4"), "cpu").model.model.layers[0].mlp.down_proj.weight
    dequantized = bnbf.dequantize_4bit(nf4.data, nf4.quant_state).float()
    assert (dequantized - reference).abs().max() < 0.25 * reference.abs().max()  # 16 levels per 64-block
    assert torch.corrcoef(torch.stack([dequantized.flatten(), reference.flatten()]))[0, 1] > 0.99
    int8 = load_model(settings("quantization=int8_pure"), "cpu").model.model.layers[0].mlp.down_proj
    rows_scaled = int8.weight.data.float() * int8.weight.SCB.float().unsqueeze(1) / 127
    assert (rows_scaled - reference).abs().max() <= reference.abs().max() / 127


def test_pretrained_missing_model_is_a_clear_error_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    s = settings("model=Mistral-7B", "weights=pretrained")
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache and downloads are off"):
        pretrained_source(s)
    s = settings("weights=pretrained", "+model.path=/nonexistent/folder")
    with pytest.raises(ModelNotFoundError, match="not a model folder"):
        pretrained_source(s)


def test_pretrained_local_path_loads_the_folder_a_user_saved(tmp_path):
    """weights=pretrained still reads a checkpoint: here the random model saved with save_pretrained, which
    must load back to the same tensors."""
    from ecosweep.workload.random_weights import build_random_model

    saved = build_random_model(settings().model, "float32", 0, "cpu")
    saved.save_pretrained(tmp_path / "model")
    loaded = load_model(settings("weights=pretrained", f"model.path={tmp_path / 'model'}"), "cpu")
    assert loaded.source == str(tmp_path / "model")
    assert all(v.equal(loaded.model.state_dict()[k]) for k, v in saved.state_dict().items())
    assert FixedLengthGeneration(loaded.model, loaded.vocab_size, 1, 4, 3, 0, "cpu").generate() == 3


def test_cpu_window_stats_are_shares_of_the_host_cpu_time_between_two_readings():
    from ecosweep.measure.host import CpuTimes, cpu_window_stats, read_cpu_times

    stats = cpu_window_stats(CpuTimes(busy=10.0, steal=1.0, total=100.0), CpuTimes(busy=40.0, steal=6.0, total=200.0))
    assert stats["cpu_util_pct"] == pytest.approx(30.0) and stats["cpu_steal_pct"] == pytest.approx(5.0)
    now = read_cpu_times()  # this host's, from psutil
    assert now is not None and 0 <= now.busy <= now.total and now.steal <= now.total
    assert math.isnan(cpu_window_stats(now, now)["cpu_util_pct"])  # no time passed: no share


def test_out_of_memory_is_told_by_type_and_by_torch_s_two_untyped_messages():
    import torch

    from ecosweep.run.worker import is_oom

    assert is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_oom(MemoryError()) and is_oom(RuntimeError("CUDA error: out of memory"))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory"))
    assert not is_oom(RuntimeError("shape mismatch")) and not is_oom(ValueError("out of range"))
