"""LLM.int8()'s decomposition counted, and outlier features planted so that it has work to do."""

from __future__ import annotations

import pytest

from ecosweep.cells import cell_id, to_settings
from ecosweep.config.validate import validate_study
from ecosweep.workload.generation import FixedLengthGeneration
from ecosweep.workload.int8_outliers import count_decomposed_columns, outlier_dims, plant_outlier_features
from ecosweep.workload.models import load_model

from conftest import compose


def settings(*overrides):
    return to_settings(compose(["hardware=cpu", "quantization=int8", "input_tokens=16", "output_tokens=4",
                                "batch_size=2", *overrides]))


def count(s):
    loaded = load_model(s, "cpu")
    work = FixedLengthGeneration(loaded.model, loaded.vocab_size, s.batch_size, s.input_tokens, s.output_tokens,
                                 s.seed, "cpu")
    return count_decomposed_columns(loaded.model, work.generate)


def test_random_weights_give_llm_int8_nothing_to_decompose():
    plain = count(settings())
    # 4 layers x 7 projections x (1 prefill + 3 decode steps) int8 matmuls, none with a value above 6.0
    assert plain.int8_matmul_calls_count == 4 * 7 * 4
    assert plain.int8_decomposed_cols_mean == 0.0 and plain.int8_decomposed_matmul_share == 0.0


def test_planted_outlier_features_are_decomposed_in_the_cited_number_of_dimensions():
    """6 planted dimensions at ~20 (Dettmers et al. 2022: ~6 dimensions at 6.7B): the q/k/v and gate/up
    projections, which read the norms' outputs, decompose exactly those 6 columns in every call, and the
    o and down projections nothing. A planted dimension carries 20 x a unit-normal value, so in a decode step
    of 2 sequences it passes 6 with probability ~0.94: fewer than 6 columns in some calls."""
    s = settings("outlier_features.count=6")
    planted = count(s)
    assert planted.int8_decomposed_cols_max == 6
    assert planted.int8_decomposed_matmul_share == pytest.approx(5 / 7)  # 5 of the 7 projections per layer
    assert 0.85 * 6 * 5 / 7 <= planted.int8_decomposed_cols_mean <= 6 * 5 / 7
    model = load_model(s, "cpu").model
    q_proj = model.model.layers[0].self_attn.q_proj
    FixedLengthGeneration(model, 8192, 2, 16, 2, 0, "cpu").generate()
    assert sorted(q_proj.state.idx.tolist()) == outlier_dims(256, 6, 0)  # exactly the planted dimensions


def test_planted_outliers_enter_the_cell_id_and_are_refused_for_pretrained_weights():
    plain, planted = settings(), settings("outlier_features.count=6")
    assert cell_id(plain) != cell_id(planted)
    assert load_model(planted, "cpu").source == load_model(plain, "cpu").source + "+outliers6x20"  # weights_source
    assert cell_id(settings("outlier_features.count=0", "outlier_features.scale=3")) == cell_id(plain)
    problems = validate_study(settings("outlier_features.count=6", "weights=pretrained"))
    assert any("plants outliers in random weights only" in p for p in problems)
    assert any("exceeds model.hidden_size=256" in p for p in validate_study(settings("outlier_features.count=300")))


@pytest.mark.slow
def test_rows_of_an_llm_int8_cell_carry_the_count(tmp_path):
    from ecosweep.cells import plan_cells
    from ecosweep.run.worker import execute_cell

    cell = plan_cells([compose(["hardware=cpu", "quantization=int8", "measurement=quick", "repetitions=2",
                                "warmup=1", "input_tokens=8", "output_tokens=4", "outlier_features.count=6"])])[0]
    outcome = execute_cell(cell)
    assert outcome.status == "ok", outcome.error
    assert all(r["int8_decomposed_cols_max"] >= 6 and r["outlier_features_count"] == 6 for r in outcome.rows)
    assert outcome.phases_s["int8_count_s"] > 0


def _hf_model(initializer_range: float):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("llama", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=4, vocab_size=512,
                                  initializer_range=initializer_range)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def test_planting_leaves_the_models_function_unchanged():
    """The norms' planted dimensions are divided out again in the projections that read them (and the MLP's
    inner scaling in down_proj): in float32 the logits are those of the plain random weights."""
    import torch

    plain, planted = _hf_model(0.02), _hf_model(0.02)
    plant_outlier_features(planted, 6, 20.0, 0)
    assert planted.model.layers[0].input_layernorm.weight.max().item() == pytest.approx(20.0)
    ids = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(planted(ids).logits, plain(ids).logits, atol=1e-4, rtol=0)


def test_planting_confines_the_decomposition_to_the_planted_dimensions():
    """Random weights as wide as a 7B model (here: a large initializer_range on a small one) push the MLP's
    inner activations past 6 in many down_proj columns; planted weights tame them, so the decomposition
    takes the planted dimensions and nothing else."""
    import torch
    from transformers import BitsAndBytesConfig

    def decomposed_by_projection(model):
        int8 = type(model).from_pretrained(
            None, config=model.config, state_dict=model.state_dict(), dtype=torch.float32, device_map={"": "cpu"},
            quantization_config=BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0))
        seen = {}
        for name, module in int8.named_modules():
            if type(module).__name__ == "Linear8bitLt":
                module.register_forward_hook(lambda m, i, o, n=name.rsplit(".", 1)[-1]: seen.setdefault(  # noqa: B008
                    n, set()).update(m.state.idx.tolist() if m.state.idx is not None else []))
        with torch.no_grad():
            int8(torch.randint(0, 512, (1, 16), generator=torch.Generator().manual_seed(2)))
        return seen

    hot = _hf_model(0.1)  # gate/up outputs with sd ~1.6: their products pass 6 often
    assert len(decomposed_by_projection(hot)["down_proj"]) > 10
    dims = plant_outlier_features(hot, 6, 20.0, 0)
    seen = decomposed_by_projection(hot)
    assert seen["down_proj"] == set()
    assert all(seen[p] == set(dims) for p in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"))
