"""LLM.int8()'s decomposition counted, and outlier features planted so that it has work to do."""

from __future__ import annotations

import pytest

from conftest import compose
from ecosweep.config.validate import validate_study
from ecosweep.planner import cell_id, to_settings
from ecosweep.workload.generation import FixedLengthGeneration
from ecosweep.workload.int8_outliers import count_decomposed_columns, outlier_dims
from ecosweep.workload.models import load_model


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
    projections, which read the norms' outputs, decompose exactly those 6 columns in every call."""
    s = settings("outlier_features.count=6")
    planted = count(s)
    assert planted.int8_decomposed_cols_max >= 6
    # 5 of the 7 projections per layer read a planted norm: at least 5/7 of the matmuls decompose
    assert planted.int8_decomposed_matmul_share >= 5 / 7 - 1e-9
    assert 6 * 5 / 7 <= planted.int8_decomposed_cols_mean <= 12
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
    from ecosweep.cell_runner import execute_cell
    from ecosweep.planner import plan_cells

    cell = plan_cells([compose(["hardware=cpu", "quantization=int8", "measurement=quick", "repetitions=2",
                                "warmup=1", "input_tokens=8", "output_tokens=4", "outlier_features.count=6"])])[0]
    outcome = execute_cell(cell)
    assert outcome.status == "ok", outcome.error
    assert all(r["int8_decomposed_cols_max"] >= 6 and r["outlier_features_count"] == 6 for r in outcome.rows)
    assert outcome.phases_s["int8_count_s"] > 0
