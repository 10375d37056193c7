"""The compiled engine and ecosweep's compact decoder on CPU: inductor compiles the loop's step (gcc here), the
greedy tokens equal generate()'s, the token check runs through the compiled step, a second workload of the
same shapes compiles from inductor's cache, no compile reaches an energy window, ids of the engines measured
before stay, refusals come before anything loads, and cells of the old compiled engine read as hf_static."""

from __future__ import annotations

import json
import time

import pytest

from ecosweep.cells import to_settings
from ecosweep.config.validate import validate_study

from conftest import REPO, compose


def settings(*overrides):
    return to_settings(compose(["hardware=cpu", *overrides]))


@pytest.fixture(scope="module")
def tiny():
    from ecosweep.workload.models import load_model

    s = settings("engine=compiled")
    return s, load_model(s, "cpu")


def workload_pair(s, loaded, bs=2, inp=10, out=8, engine=None):
    from ecosweep.workload.engines import build_workload
    from ecosweep.workload.generation import FixedLengthGeneration

    shape = dict(model=loaded.model, vocab_size=loaded.vocab_size, batch_size=bs, input_tokens=inp,
                 output_tokens=out, seed=3, device="cpu")
    return build_workload(engine or s.engine, **shape, quantization=s.quantization), FixedLengthGeneration(**shape)


# -- what stored cells of the old compiled engine say -------------------------------------------------

def test_cells_of_the_old_compiled_engine_read_as_hf_static():
    from ecosweep.results.store import read_results

    rows = read_results([REPO / "experiments/int8_alternatives/h100x4_2026-11-27/int8_alternatives"]).to_pandas()
    assert "compiled" not in set(rows.engine)
    old = rows[rows.engine == "hf_static"]
    assert len(old) > 0 and set(old.engine_kind) == {"hf_static"}
    assert set(old.engine_effective.dropna()) <= {"hf_static_compiled", "eager_static_cache"}
    assert "hf_static_compiled" in set(old.engine_effective)
    assert set(rows[rows.engine == "eager"].engine_kind) == {"eager"}


# -- refusals before anything loads ----------------------------------------------------------------

@pytest.mark.parametrize("overrides,expected", [
    (["engine=compiled", "quantization=int8"], "cannot run quantization=int8"),
    (["engine=compiled", "engine.compile.cudagraphs=sometimes"], "engine.compile.cudagraphs='sometimes'"),
    (["engine=compiled", "+engine.compile.inductor_options.no_such_option=1"], "no_such_option"),
    (["engine=graph", "engine.kind=compiled"], "has no engine.compile settings"),
    (["engine=eager", "engine.decode_model=ecosweep"], "needs an engine that runs ecosweep's decode loop"),
    (["engine=compiled", "engine.fuse_projections=true"], "needs engine.decode_model=ecosweep"),
    (["engine=compiled", "engine.decode_model=ecosweep", "engine.fuse_projections=true", "quantization=nf4"],
     "fuses 16-bit weights"),
    (["engine=compiled", "engine.decode_model=ecosweep", "model=Phi-3-mini"], "not model=Phi-3-mini"),
    (["engine=compiled", "engine.decode_model=gpt2"], "engine.decode_model='gpt2'"),
])
def test_what_the_compiled_engine_cannot_run_is_refused_naming_the_value(overrides, expected):
    problems = validate_study(settings(*overrides))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("overrides", [["engine=hf_static", "quantization=int8"],
                                       ["engine=compiled", "engine.compile.cudagraphs=none", "quantization=int8"],
                                       ["engine=compiled", "quantization=nf4"], ["engine=compiled", "quantization=int8_pure"],
                                       ["engine=compiled", "engine.decode_model=ecosweep", "engine.fuse_projections=true"],
                                       ["engine=graph", "engine.decode_model=ecosweep"]])
def test_what_the_engines_can_run_is_accepted(overrides):
    assert validate_study(settings(*overrides)) == []


def test_a_bad_compile_setting_on_the_command_line_exits_2_before_anything_loads(tmp_path):
    from conftest import run_cli

    r = run_cli(["engine=compiled", "engine.compile.cudagraphs=sometimes", f"output_root={tmp_path / 'out'}"],
                cwd=tmp_path)
    assert r.returncode == 2 and "engine.compile.cudagraphs='sometimes'" in r.stderr
    assert "inductor — " in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


# -- the compiled loop -----------------------------------------------------------------------------

@pytest.mark.slow
def test_the_compiled_loop_decodes_generates_tokens_and_is_checked_through_its_compiled_step(tiny):
    from ecosweep.workload.token_check import check_tokens, tolerance_for

    s, loaded = tiny
    compiled, reference = workload_pair(s, loaded)
    assert compiled.engine_effective == "unknown"
    compiled.prepare()
    facts = compiled.compile_facts
    assert compiled.engine_effective == "compiled_uncaptured"  # a CPU has no CUDA graphs
    assert facts["compile_s"] > 0 and facts["compile_frames_count"] >= 1 and facts["compile_graph_breaks_count"] == 0
    assert facts["compile_cache"] in ("hit", "miss", "partial")
    options = json.loads(facts["compile_options"])
    assert options["coordinate_descent_tuning"] is True and options["triton.cudagraphs"] is False
    events = compiled.compile_events()
    check = check_tokens(compiled, reference, tolerance_for("float32", "none"))
    assert check.tokens_equal and check.agreement == 1.0 and check.passed
    assert compiled.compile_events() == events  # the check ran the compiled step: nothing compiled again
    assert compiled.generate() == 2 * 8 and compiled.last_tokens.equal(reference.last_tokens)
    assert compiled.recompiles() == 0

    again, _ = workload_pair(s, loaded)  # a second cell of the same shapes on this host
    again.prepare()
    assert again.compile_facts["compile_cache"] == "hit"


def slow_inductor(delay_s):
    """inductor, after sleeping ``delay_s``: a compile slow enough to show in any window it fell into."""
    def backend(gm, example_inputs):
        from torch._inductor.compile_fx import compile_fx

        time.sleep(delay_s)
        return compile_fx(gm, example_inputs)
    return backend


class _FlipsAGuardInItsPrefillWindow:
    """The compiled workload, except that its first prefill() (the first window's) changes a value the compiled
    step's guards read, so the next decode step, inside the energy window, recompiles."""

    def __init__(self, inner):
        self.inner = inner
        self.flipped = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def prefill(self):
        if not self.flipped:
            self.inner.decoder._bool_mask = not self.inner.decoder._bool_mask
            self.flipped = True
        return self.inner.prefill()


@pytest.mark.slow
def test_a_slow_compile_is_paid_before_the_windows_and_a_recompile_inside_one_is_refused(tiny, monkeypatch):
    from ecosweep.config.schema import MeasurementConfig
    from ecosweep.measure.meters.base import NullMeter
    from ecosweep.measure.protocol import CellProtocol, CompileInWindowError
    from ecosweep.workload import compiled_decode

    delay_s = 1.5
    monkeypatch.setattr(compiled_decode, "COMPILE_BACKEND", slow_inductor(delay_s))
    s, loaded = tiny
    quick = MeasurementConfig(name="t", meter="none", min_window_s=0.0, prefill_min_window_s=0.0, warmup_min_s=0.0,
                              max_repetitions=3, target_ci_pct=0.0, idle_settle_s=0.0, idle_window_s=0.01)
    compiled, _ = workload_pair(s, loaded, bs=1, inp=6, out=5)
    compiled.prepare()
    assert compiled.compile_facts["compile_s"] >= delay_s
    result = CellProtocol(compiled, NullMeter(), quick, repetitions=3, warmup=1).run({})
    assert len(result.rows) == 3 and all(r["seconds"] < delay_s for r in result.rows)
    assert result.phases_s["warmup_s"] < delay_s and compiled.recompiles() == 0

    with pytest.raises(CompileInWindowError, match="inside the energy window of repetition 0"):
        CellProtocol(_FlipsAGuardInItsPrefillWindow(compiled), NullMeter(), quick, repetitions=3, warmup=1).run({})


# -- ecosweep's compact decoder ----------------------------------------------------------------------

def tiny_config_model(model_type, **extra):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(model_type, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
                               max_position_embeddings=256, **extra)
    return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.mark.slow
@pytest.mark.parametrize("model_type,fuse", [("llama", False), ("llama", True), ("qwen2", False), ("qwen2", True),
                                             ("mistral", False)])
def test_the_ecosweep_decoder_decodes_what_generate_decodes(model_type, fuse):
    """Llama, Qwen2 (biases on q, k, v) and Mistral, with and without fused projections, float32: generate()'s
    tokens exactly, logits within rounding, teacher-forced through the decoder's own cache."""
    from ecosweep.config.schema import EngineConfig
    from ecosweep.workload.engines import build_workload
    from ecosweep.workload.generation import FixedLengthGeneration
    from ecosweep.workload.token_check import check_tokens

    model = tiny_config_model(model_type)
    engine = EngineConfig(name="graph", kind="graph", decode_model="ecosweep", fuse_projections=fuse)
    shape = dict(model=model, vocab_size=512, batch_size=3, input_tokens=9, output_tokens=12, seed=5, device="cpu")
    loop, reference = build_workload(engine, **shape), FixedLengthGeneration(**shape)
    assert loop.decode_model == "ecosweep" and loop.decoder.fused is fuse
    check = check_tokens(loop, reference, 1e-3)
    assert check.tokens_equal and check.agreement == 1.0 and check.logit_diff_sd < 1e-4, check


@pytest.mark.slow
def test_the_ecosweep_decoder_with_its_mask_off_by_one_fails_the_token_check():
    from ecosweep.config.schema import EngineConfig
    from ecosweep.workload.engines import build_workload
    from ecosweep.workload.generation import FixedLengthGeneration
    from ecosweep.workload.token_check import check_tokens

    model = tiny_config_model("llama")
    engine = EngineConfig(name="graph", kind="graph", decode_model="ecosweep")
    shape = dict(model=model, vocab_size=512, batch_size=2, input_tokens=9, output_tokens=10, seed=5, device="cpu")
    loop = build_workload(engine, **shape)
    loop.decoder.kv_positions = loop.decoder.kv_positions + 1  # hides each position's own key
    assert not check_tokens(loop, FixedLengthGeneration(**shape), 1e-3).passed


@pytest.mark.slow
def test_the_ecosweep_decoder_compiles_whole_and_decodes_what_generate_decodes(tiny):
    from ecosweep.workload.token_check import check_tokens, tolerance_for

    s, loaded = tiny
    s = settings("engine=compiled", "engine.decode_model=ecosweep")
    compiled, reference = workload_pair(s, loaded, bs=2, inp=7, out=6)
    compiled.prepare()
    assert compiled.compile_facts["compile_graph_breaks_count"] == 0 and compiled.decode_model == "ecosweep"
    check = check_tokens(compiled, reference, tolerance_for("float32", "none"))
    assert check.tokens_equal and check.passed
