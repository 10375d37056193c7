"""The engine axis on CPU: lanes, validation, the graph loop against generate(), the token check,
what ran (engine_effective), ecosweep_sdpa against transformers' sdpa, lanes and the report by engine."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ecosweep.cells import plan_cells, to_settings
from ecosweep.config.validate import validate_study
from ecosweep.lanes import lane_key

from conftest import compose


def settings(*overrides):
    return to_settings(compose(["hardware=cpu", *overrides]))


# -- lanes ------------------------------------------------------------------------------------------

def test_lanes_keep_engines_together_and_precision_lanes_split_batch_sizes():
    def grid(mode):
        return plan_cells([compose(["hardware=h100", f"engine={e}", f"quantization={q}", f"batch_size={b}",
                                    f"ray.one_gpu_per={mode}"])
                           for e in ("eager", "graph") for q in ("fp16", "nf4") for b in (1, 16)])

    comparison = {lane_key(c) for c in grid("comparison")}
    precision = {}
    for c in grid("precision"):
        precision.setdefault(lane_key(c), set()).add((c.settings.engine.name, c.settings.quantization.name,
                                                      c.settings.batch_size))
    assert len(comparison) == 1  # engines, precisions and batch sizes of one model on one GPU
    assert len(precision) == 2  # one lane per batch size, each holding both engines and both precisions
    for members in precision.values():
        assert len(members) == 4 and len({b for _, _, b in members}) == 1


# -- validation -----------------------------------------------------------------------------------

def test_llm_int8_under_graph_is_refused_with_the_reason_and_what_to_use():
    problems = validate_study(settings("engine=graph", "quantization=int8"))
    assert len(problems) == 1
    text = problems[0]
    assert "engine=graph" in text and "quantization=int8" in text and "6.0" in text
    assert "engine=eager" in text and "int8_pure" in text


@pytest.mark.parametrize("overrides", [["engine=graph", "quantization=int8_pure"], ["engine=graph", "quantization=nf4"],
                                       ["engine=eager", "quantization=int8"], ["engine=hf_static", "quantization=int8"],
                                       ["engine=graph", "quantization=bf16"], ["engine=graph", "quantization=fp4"]])
def test_engines_accept_what_they_can_run(overrides):
    assert validate_study(settings(*overrides)) == []


def test_bad_engine_values_name_the_choices():
    problems = validate_study(settings("engine.kind=turbo", "engine.attn_implementation=flash", "engine.capture_warmup_steps=-1"))
    assert any("engine.kind='turbo'" in p and all(f"{k} — " in p for k in ("eager", "graph", "compiled"))
               for p in problems)
    assert any("engine.attn_implementation='flash'" in p and "ecosweep_sdpa" in p and p.endswith(", or null for the checkpoint's default.")
               for p in problems)
    assert any("engine.capture_warmup_steps=-1" in p for p in problems)


def test_a_sweep_with_int8_under_graph_fails_before_anything_runs(tmp_path):
    from conftest import run_cli

    r = run_cli(["+experiment=int8_ablation", "engine=graph", f"output_root={tmp_path / 'out'}"], cwd=tmp_path)
    assert r.returncode == 2
    assert "cannot run quantization=int8" in r.stderr and "Nothing was run" in r.stderr
    assert not (tmp_path / "out").exists()


# -- the graph loop and the token check -----------------------------------------------------------

def workloads(model, vocab, engine, bs, inp, out):
    from ecosweep.workload.engines import build_workload
    from ecosweep.workload.generation import FixedLengthGeneration

    shape = dict(model=model, vocab_size=vocab, batch_size=bs, input_tokens=inp, output_tokens=out, seed=3, device="cpu")
    return build_workload(engine, **shape), FixedLengthGeneration(**shape)


@pytest.mark.slow
@pytest.mark.parametrize("bs,inp,out", [(1, 12, 9), (3, 7, 16)])
def test_uncaptured_graph_loop_gives_generates_tokens_exactly_in_float32(bs, inp, out):
    from ecosweep.workload.models import load_model
    from ecosweep.workload.token_check import check_tokens, tolerance_for

    s = settings("engine=graph")
    loaded = load_model(s, "cpu")
    graph, reference = workloads(loaded.model, loaded.vocab_size, s.engine, bs, inp, out)
    assert graph.engine_effective == "graph_uncaptured"
    assert graph.generate() == bs * out
    reference.generate()
    assert graph.last_tokens.equal(reference.last_tokens)  # free-running, token for token
    check = check_tokens(graph, reference, tolerance_for("float32", "none"))
    assert check.tokens_equal and check.agreement == 1.0 and check.logit_diff_sd < 1e-4 and check.passed
    assert check.choices == bs * out


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["bf16", "nf4", "int8_pure"])
def test_graph_loop_agrees_with_generate_within_rounding_for_16bit_and_quantized(quantization):
    from ecosweep.workload.models import load_model
    from ecosweep.workload.token_check import tolerance_for, verify_tokens

    s = settings("engine=graph", f"quantization={quantization}")
    loaded = load_model(s, "cpu")
    graph, reference = workloads(loaded.model, loaded.vocab_size, s.engine, 2, 10, 12)
    check = verify_tokens(graph, reference, "graph", tolerance_for(s.quantization.dtype, s.quantization.method))
    assert check.agreement >= 0.9 and check.logit_diff_sd < 0.15


@pytest.mark.slow
@pytest.mark.parametrize("broken", ["mask_one_position_off", "cache_not_reset"])
def test_token_check_fails_a_loop_that_computes_something_else(broken, monkeypatch):
    from ecosweep.workload.models import load_model
    from ecosweep.workload.token_check import TokenMismatchError, tolerance_for, verify_tokens

    s = settings("engine=graph")
    loaded = load_model(s, "cpu")
    graph, reference = workloads(loaded.model, loaded.vocab_size, s.engine, 2, 10, 12)
    if broken == "mask_one_position_off":
        graph.decoder.kv_positions = graph.decoder.kv_positions + 1  # hides the newest key from every decode step
        with pytest.raises(TokenMismatchError, match="does not decode what generate\\(\\) decodes"):
            verify_tokens(graph, reference, "graph", tolerance_for("float32", "none"))
    else:  # the second call (the teacher-forced one) writes past the first: on a CPU torch refuses the index
        monkeypatch.setattr(graph.decoder.cache, "reset", lambda: None)
        with pytest.raises(IndexError, match="out of bounds"):
            verify_tokens(graph, reference, "graph", tolerance_for("float32", "none"))


@pytest.mark.slow
def test_one_teacher_forced_pass_gives_the_free_running_comparison_a_whole_call_would(monkeypatch):
    """The check runs no free-running call of the engine (a prefill, then generate()'s tokens fed step by step);
    for an engine that decodes something else, the first differing token it reports is where the engine's own
    free-running call first differs from generate()'s."""
    from ecosweep.workload.models import load_model
    from ecosweep.workload.token_check import _first_difference, check_tokens, generate_reference

    s = settings("engine=graph")
    loaded = load_model(s, "cpu")
    graph, reference = workloads(loaded.model, loaded.vocab_size, s.engine, 3, 10, 12)
    graph.decoder.kv_positions = graph.decoder.kv_positions + 1  # hides the newest key: other tokens
    graph.generate()
    own = graph.last_tokens.clone()
    ref = generate_reference(reference)
    expected = _first_difference(ref.tokens, own)
    assert expected is not None
    calls = []
    monkeypatch.setattr(graph, "generate", lambda: calls.append("generate"))
    check = check_tokens(graph, reference, 1e-3, ref)
    assert calls == [] and not check.tokens_equal and check.first_mismatch_step == expected


def tiny_mistral(sliding_window=4096):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ecosweep.workload import attention

    attention.register()
    torch.manual_seed(0)
    cfg = AutoConfig.for_model("mistral", hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
                               max_position_embeddings=256, sliding_window=sliding_window)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="ecosweep_sdpa").eval()


@pytest.mark.slow
def test_sliding_window_models_decode_over_a_full_attention_cache():
    """transformers' sliding-window cache layers keep their fill level on the host, which a CUDA graph
    freezes (on an H100 every Mistral cell decoded garbage until the cache was built full-attention)."""
    from ecosweep.config.schema import EngineConfig
    from ecosweep.workload.token_check import check_tokens

    model = tiny_mistral()
    graph, reference = workloads(model, 512, EngineConfig(name="graph", kind="graph"), 2, 10, 8)
    assert {type(layer).__name__ for layer in graph.decoder.cache.layers} == {"StaticLayer"}
    check = check_tokens(graph, reference, 1e-3)
    assert check.passed and check.agreement == 1.0


@pytest.mark.slow
def test_a_cell_longer_than_the_sliding_window_is_refused():
    from ecosweep.config.schema import EngineConfig

    model = tiny_mistral(sliding_window=16)
    with pytest.raises(ValueError, match="sliding window \\(16 tokens\\)"):
        workloads(model, 512, EngineConfig(name="graph", kind="graph"), 1, 12, 8)


def test_ecosweep_sdpa_equals_transformers_sdpa_on_a_masked_decode_step():
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv

    from ecosweep.workload.attention import sdpa_grouped_decode

    class Module:
        num_key_value_groups = 4

    torch.manual_seed(0)
    q = torch.randn(3, 8, 1, 16)
    k, v = torch.randn(3, 2, 10, 16), torch.randn(3, 2, 10, 16)
    mask = (torch.arange(10) <= 6).view(1, 1, 1, 10).expand(3, 1, 1, 10)
    got, _ = sdpa_grouped_decode(Module(), q, k, v, mask, scaling=0.25)
    ref = torch.nn.functional.scaled_dot_product_attention(q, repeat_kv(k, 4), repeat_kv(v, 4), attn_mask=mask,
                                                           scale=0.25).transpose(1, 2)
    assert got.shape == (3, 1, 8, 16)
    assert torch.allclose(got, ref, atol=1e-6)
    masked_out = sdpa_grouped_decode(Module(), q, k.clone().index_fill_(2, torch.tensor([8, 9]), 1e4), v, mask,
                                     scaling=0.25)[0]
    assert torch.allclose(masked_out, got, atol=1e-6)  # hidden positions do not leak in


@pytest.mark.slow
def test_hf_static_on_cpu_records_that_transformers_ran_it_eager():
    from ecosweep.workload.engines import engine_facts
    from ecosweep.workload.models import load_model

    s = settings("engine=hf_static")
    loaded = load_model(s, "cpu")
    compiled, _ = workloads(loaded.model, loaded.vocab_size, s.engine, 1, 6, 4)
    assert compiled.engine_effective == "unknown"
    compiled.generate()
    facts = engine_facts(compiled, s.engine)
    assert facts["engine_effective"] == "eager_static_cache" and facts["engine_kind"] == "hf_static"
    assert "not on cpu" in facts["engine_note"] and facts["attn_implementation"] == "sdpa"


# -- rows from a study ----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.integration
def test_rows_say_which_engine_ran_and_how_its_tokens_compared(tmp_path):
    from ecosweep.results.store import read_results

    from conftest import run_cli

    out = tmp_path / "out"
    r = run_cli(["-m", "engine=eager,graph", "measurement=quick", "repetitions=2", "warmup=1", "input_tokens=8",
                 "output_tokens=6", "tracking=none", f"output_root={out}", "study=engines"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = read_results([out / "engines"]).to_pandas().set_index("engine")
    assert (rows.status == "ok").all() and len(rows) == 4
    graph, eager = rows.loc["graph"], rows.loc["eager"]
    assert set(graph.engine_effective) == {"graph_uncaptured"} and set(graph.attn_implementation) == {"ecosweep_sdpa"}
    assert graph.engine_tokens_equal.all() and (graph.engine_token_agreement_share == 1.0).all()
    assert (graph.engine_logit_diff_sd < 1e-4).all()
    assert set(eager.engine_effective) == {"eager"} and set(eager.attn_implementation) == {"sdpa"}
    assert eager.engine_tokens_equal.isna().all() and eager.engine_token_agreement_share.isna().all()
    timings = list((out / "engines" / "timings").glob("*.json"))
    import json

    phases = [json.loads(p.read_text()) for p in timings]
    assert sum(p["token_check_s"] > 0 for p in phases) == 1  # the graph cell only


# -- the report by engine -------------------------------------------------------------------------

def configs_two_engines():
    """fp16 and nf4 under eager and graph at batch 1 and 16: NF4 costs more under eager and saves under
    graph at batch 1; at batch 16 it costs more under both."""
    rows = []
    means = {("eager", 1, "fp16"): 6000, ("eager", 1, "nf4"): 6600, ("graph", 1, "fp16"): 3000, ("graph", 1, "nf4"): 2400,
             ("eager", 16, "fp16"): 430, ("eager", 16, "nf4"): 600, ("graph", 16, "fp16"): 250, ("graph", 16, "nf4"): 300}
    for (engine, bs, q), mean in means.items():
        rows.append({"hardware": "H", "model": "m", "quantization": q, "engine": engine, "batch_size": bs,
                     "input_tokens": 8, "output_tokens": 8, "weights": "random", "params_b_nominal": 7.0,
                     "energy_j_per_1k_tok_mean": float(mean), "energy_j_per_1k_tok_sd": mean * 0.01,
                     "energy_j_per_1k_tok_n": 5, "tok_s_mean": 1e5 / mean, "raw": True,
                     "engine_effective": "eager" if engine == "eager" else "graph"})
    return pd.DataFrame(rows)


def test_precisions_are_compared_within_each_engine_and_engines_within_each_precision():
    from ecosweep.analysis import comparisons

    configs = configs_two_engines()
    comp = comparisons.comparisons(configs).set_index(["engine", "batch_size"])
    assert comp.loc[("eager", 1)].delta_pct == pytest.approx(10.0)
    assert comp.loc[("graph", 1)].delta_pct == pytest.approx(-20.0)
    assert comp.loc[("graph", 16)].delta_pct == pytest.approx(20.0)
    engines = comparisons.engine_comparisons(configs).set_index(["quantization", "batch_size"])
    assert engines.loc[("fp16", 1)].delta_pct == pytest.approx(-50.0)
    assert engines.loc[("nf4", 16)].delta_pct == pytest.approx(-50.0)
    assert set(engines.engine) == {"graph"} and set(engines.baseline_engine) == {"eager"}
    findings = comparisons.engine_sign_findings(comparisons.comparisons(configs))
    bs1 = next(f for f in findings if "batch 1 " in f)
    bs16 = next(f for f in findings if "batch 16 " in f)
    assert "flips sign" in bs1 and "costs more under eager" in bs1 and "saves under graph" in bs1
    assert "keeps its sign" in bs16


def test_sign_finding_names_the_engines_where_an_effect_is_significant():
    """An effect significant under one engine only says which ("saves under graph only"); one significant
    under none says so — not "keeps its sign" and not a sentence that reads as a double negative."""
    from ecosweep.analysis import comparisons

    configs = configs_two_engines()
    eager_fp16 = (configs.quantization == "fp16") & (configs.engine == "eager") & (configs.batch_size == 1)
    eager_nf4 = (configs.quantization == "nf4") & (configs.engine == "eager") & (configs.batch_size == 1)
    noisy = configs.copy()
    noisy.loc[eager_fp16 | eager_nf4, "energy_j_per_1k_tok_sd"] = 3000.0  # eager's +10 % inside the noise
    bs1 = next(f for f in comparisons.engine_sign_findings(comparisons.comparisons(noisy)) if "batch 1 " in f)
    assert ": saves under graph only: no significant change under eager" in bs1
    noisy.loc[noisy.batch_size == 1, "energy_j_per_1k_tok_sd"] = 3000.0
    bs1 = next(f for f in comparisons.engine_sign_findings(comparisons.comparisons(noisy)) if "batch 1 " in f)
    assert ": no significant change under any engine: " in bs1


def test_each_precision_meets_fp16_at_the_engine_that_suits_each():
    """NF4 is best under graph at batch 1 (2,400 J) and fp16 too (3,000 J): -20 %. A precision measured under
    one engine only (int8, eager: 9,000 J) meets fp16 at fp16's best (graph), not at eager's 6,000 J."""
    from ecosweep.analysis import comparisons

    configs = configs_two_engines()
    int8 = configs[(configs.quantization == "fp16") & (configs.engine == "eager") & (configs.batch_size == 1)]
    configs = pd.concat([configs, int8.assign(quantization="int8", energy_j_per_1k_tok_mean=9000.0,
                                              energy_j_per_1k_tok_sd=90.0)], ignore_index=True)
    best = comparisons.best_engine_comparisons(configs).set_index(["quantization", "batch_size"])
    nf4 = best.loc[("nf4", 1)]
    assert (nf4.engine, nf4.baseline_engine, nf4.engines_measured) == ("graph", "graph", "eager,graph")
    assert nf4.delta_pct == pytest.approx(-20.0) and nf4.p < 0.001
    assert best.loc[("nf4", 16)].engine == "graph" and best.loc[("nf4", 16)].delta_pct == pytest.approx(20.0)
    only_eager = best.loc[("int8", 1)]
    assert (only_eager.engine, only_eager.baseline_engine) == ("eager", "graph")
    assert only_eager.delta_pct == pytest.approx(200.0)
    # one engine in the whole table: nothing to choose, no table
    assert comparisons.best_engine_comparisons(configs[configs.engine == "eager"]).empty
    # cells without energy (measurement.meter=none) are not picked, and a precision with none is left out
    unmetered = configs.copy()
    unmetered.loc[unmetered.quantization == "int8", "energy_j_per_1k_tok_mean"] = float("nan")
    unmetered.loc[(unmetered.quantization == "nf4") & (unmetered.engine == "graph"), "energy_j_per_1k_tok_mean"] = float("nan")
    best = comparisons.best_engine_comparisons(unmetered).set_index(["quantization", "batch_size"])
    assert "int8" not in best.index.get_level_values(0) and best.loc[("nf4", 1)].engine == "eager"


def test_report_has_engine_sections_and_the_delta_vs_batch_figure(tmp_path):
    from ecosweep.analysis import comparisons, figures

    configs = configs_two_engines()
    comp = comparisons.comparisons(configs)
    paths = figures.delta_vs_batch(comp, tmp_path)
    assert {p.name for p in paths} == {"delta_vs_batch_H_m.png", "delta_vs_batch_H_m.pdf"}
    paths = figures.energy_by_model(configs.assign(energy_j_per_1k_tok_ci_low=math.nan,
                                                   energy_j_per_1k_tok_ci_high=math.nan), comp, tmp_path)
    assert {p.stem for p in paths} == {"energy_j_per_1k_tok_by_model_H_bs1", "energy_j_per_1k_tok_by_model_H_bs16"}


def test_a_cell_that_ran_another_engine_than_asked_is_warned_about():
    from ecosweep.analysis import caveats

    configs = configs_two_engines()
    configs.loc[(configs.engine == "graph") & (configs.quantization == "nf4"), "engine"] = "compiled"
    configs.loc[configs.engine == "compiled", "engine_effective"] = "eager_static_cache"
    warnings = caveats.warnings_for(configs)
    flagged = [w for w in warnings if w.startswith("Engine:")]
    assert len(flagged) == 2 and all("asked for engine=compiled but ran eager_static_cache" in w for w in flagged)


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["fp32", "int8_pure"])
def test_past_rounding_the_engine_is_judged_against_generates_own_kernel_to_kernel_spread(quantization):
    """With no rounding allowed at all, a correct loop still passes (it differs from generate() about as much as
    generate() with eager attention differs from generate() with sdpa), and a loop with its mask one position
    off does not."""
    from ecosweep.workload.models import load_model
    from ecosweep.workload.token_check import check_tokens

    s = settings("engine=graph", f"quantization={quantization}")
    loaded = load_model(s, "cpu")
    graph, reference = workloads(loaded.model, loaded.vocab_size, s.engine, 2, 10, 12)
    check = check_tokens(graph, reference, tolerance_sd=0.0)
    assert check.floor_sd is not None and check.floor_sd > 0 and check.passed
    assert check.logit_diff_sd <= 2 * check.floor_sd and check.columns()["engine_logit_floor_sd"] == check.floor_sd
    assert loaded.model.config._attn_implementation == "ecosweep_sdpa"  # put back after the eager comparison
    broken, reference = workloads(loaded.model, loaded.vocab_size, s.engine, 2, 10, 12)
    broken.decoder.kv_positions = broken.decoder.kv_positions + 1
    check = check_tokens(broken, reference, tolerance_sd=0.0)
    assert not check.passed and check.logit_diff_sd > 5 * check.floor_sd
