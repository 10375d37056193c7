"""Model sources and fixed-length generation on CPU, for every quantization path."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from conftest import compose
from ecosweep.errors import ModelNotFoundError
from ecosweep.planner import to_settings
from ecosweep.workload.generation import FixedLengthGeneration
from ecosweep.workload.models import ensure_random_checkpoint, load_model, pretrained_source


def settings(*overrides):
    return to_settings(compose(["hardware=cpu", *overrides]))


@pytest.mark.slow
@pytest.mark.parametrize("quantization,layer", [
    ("fp32", "Linear"), ("bf16", "Linear"), ("nf4", "Linear4bit"), ("nf4_dq", "Linear4bit"),
    ("fp4", "Linear4bit"), ("int8", "Linear8bitLt"), ("int8_pure", "Linear8bitLt"),
])
def test_every_quantization_loads_through_from_pretrained_and_generates_exactly(model_cache, quantization, layer):
    s = settings(f"quantization={quantization}")
    loaded = load_model(s, "cpu")
    down = loaded.model.model.layers[0].mlp.down_proj
    assert type(down).__name__ == layer
    assert abs(loaded.params_count - 8_128_768) < 1000  # logical count, also for packed 4-bit weights
    assert Path(loaded.source).parent == model_cache
    w = FixedLengthGeneration(loaded.model, loaded.vocab_size, batch_size=2, input_tokens=12, output_tokens=5,
                              seed=0, device="cpu")
    assert tuple(w.input_ids.shape) == (2, 12)
    assert w.generate() == 10
    assert w.prefill() == 2


def test_prompts_are_deterministic_and_exact(model_cache):
    s = settings()
    loaded = load_model(s, "cpu")
    a = FixedLengthGeneration(loaded.model, loaded.vocab_size, 3, 7, 2, seed=5, device="cpu")
    b = FixedLengthGeneration(loaded.model, loaded.vocab_size, 3, 7, 2, seed=5, device="cpu")
    c = FixedLengthGeneration(loaded.model, loaded.vocab_size, 3, 7, 2, seed=6, device="cpu")
    assert a.input_ids.equal(b.input_ids) and not a.input_ids.equal(c.input_ids)
    assert int(a.input_ids.min()) >= 100 and int(a.input_ids.max()) < loaded.vocab_size


def test_eos_cannot_end_generation_early(model_cache):
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


def _build(args):
    m, cache = args
    return str(ensure_random_checkpoint(m, "float32", 0, cache, "cpu"))


def test_random_checkpoint_is_built_once_when_two_processes_ask_together(tmp_path):
    m = settings().model
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        paths = pool.map(_build, [(m, str(tmp_path))] * 2)
    assert paths[0] == paths[1]
    entries = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert entries == [Path(paths[0]).name]  # one checkpoint, no leftovers
    assert (Path(paths[0]) / "model.safetensors").exists()


def test_checkpoint_key_follows_architecture_and_dtype(tmp_path):
    from ecosweep.workload.models import random_checkpoint_key

    m = settings().model
    other = settings("model=TinyLlama-1.1B").model
    assert random_checkpoint_key(m, "float16", 0) != random_checkpoint_key(m, "float32", 0)
    assert random_checkpoint_key(m, "float16", 0) != random_checkpoint_key(other, "float16", 0)


def test_pretrained_missing_model_is_a_clear_error_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    s = settings("model=Mistral-7B", "weights=pretrained")
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache and downloads are off"):
        pretrained_source(s)
    s = settings("weights=pretrained", "+model.path=/nonexistent/folder")
    with pytest.raises(ModelNotFoundError, match="not a model folder"):
        pretrained_source(s)


def test_pretrained_local_path_loads(model_cache, tmp_path):
    random_dir = ensure_random_checkpoint(settings().model, "float32", 0, str(model_cache), "cpu")
    s = settings("weights=pretrained", f"model.path={random_dir}")
    loaded = load_model(s, "cpu")
    assert loaded.source == str(random_dir)
    assert FixedLengthGeneration(loaded.model, loaded.vocab_size, 1, 4, 3, 0, "cpu").generate() == 3
