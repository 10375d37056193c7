"""Every YAML in conf/ composes and validates; the model configs match their published sizes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ecosweep.cells import plan_cells, to_settings
from ecosweep.config.validate import validate_study
from ecosweep.errors import ConfigError

from conftest import CONF_DIR, REPO, compose

GROUPS = ["model", "quantization", "engine", "scenario", "hardware", "measurement", "tracking"]
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "model_architectures.csv"


def options(group: str):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_and_validates(group, option):
    settings = to_settings(compose([f"{group}={option}"]))
    assert validate_study(settings) == []
    assert getattr(settings, group) is not None
    if option == "ao_int4_weight_only":  # tinygemm is CUDA-only: on a CPU profile refused, saying so
        problems = validate_study(to_settings(compose([f"{group}={option}", "hardware=cpu"])))
        assert len(problems) == 1 and "runs on CUDA GPUs only" in problems[0]


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_validates(experiment):
    cfg = compose([f"+experiment={experiment}"])
    assert validate_study(to_settings(cfg)) == []
    assert cfg.study == experiment


def test_the_groups_the_issue_names_exist():
    assert {"fp32", "fp16", "bf16", "nf4", "nf4_dq", "fp4", "int8", "int8_pure"} <= set(options("quantization"))
    assert {"auto", "cpu", "h100", "a800", "rtx4090d", "rtx5090"} <= set(options("hardware"))
    assert "tiny-llama" in options("model") and "smoke" in options("experiment")


def test_int8_thresholds_and_explicit_4bit_compute_dtype():
    int8 = to_settings(compose(["quantization=int8"])).quantization
    pure = to_settings(compose(["quantization=int8_pure"])).quantization
    assert (int8.llm_int8_threshold, pure.llm_int8_threshold) == (6.0, 0.0)
    for name in ("nf4", "nf4_dq", "fp4"):
        q = to_settings(compose([f"quantization={name}"])).quantization
        assert q.bnb_4bit_compute_dtype in ("float16", "bfloat16", "float32")
    assert to_settings(compose(["quantization=nf4_dq"])).quantization.bnb_4bit_use_double_quant is True


def test_hardware_profiles_carry_datasheet_figures():
    for name in ("h100", "a800", "rtx4090d", "rtx5090"):
        h = to_settings(compose([f"hardware={name}"])).hardware
        assert h.device == "cuda"
        assert h.peak_mem_bandwidth_gb_s > 500 and h.tdp_w > 100 and h.peak_fp16_tflops > 50


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared reference tables not beside the checkout")
def test_model_configs_match_the_reference_architectures():
    rows = list(csv.DictReader(REFERENCE.open()))
    assert rows
    for r in rows:
        m = to_settings(compose([f"model={r['name']}"])).model
        assert m.hub_id == r["hub_id"] and m.model_type == r["model_type"]
        assert m.hidden_size == int(r["hidden_size"]) and m.num_hidden_layers == int(r["num_hidden_layers"])
        assert m.vocab_size == int(r["vocab_size"])
        assert m.tie_word_embeddings == (r["tie_word_embeddings"] == "true")


@pytest.mark.parametrize("name", [n for n in options("model")])
def test_model_parameter_count_matches_nominal(name):
    """Instantiate on the meta device (no memory) and count: within 1 % of the published size."""
    import torch
    from transformers import AutoModelForCausalLM

    from ecosweep.workload.random_weights import hf_config

    m = to_settings(compose([f"model={name}"])).model
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config(m))
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / 1e9 - m.params_b) / m.params_b < 0.01, (count, m.params_b)


@pytest.mark.parametrize("override,needle", [
    ("batch_size=0", "batch_size=0 is out of range: it must be an integer >= 1"),
    ("input_tokens=0", "input_tokens=0 is out of range"),
    ("repetitions=0", "repetitions=0 is out of range"),
    ("weights=imagined", "weights='imagined' is not a valid choice"),
    ("measurement.meter=geiger", "measurement.meter='geiger' is not a valid choice"),
    ("quantization.llm_int8_threshold=-1", "llm_int8_threshold"),
    ("ray.progress=fancy", "ray.progress='fancy' is not a valid choice"),
    ("ray.one_gpu_per=node", "ray.one_gpu_per='node' is not a valid choice"),
    ("ray.gpus_per_cell=0.5", "ray.gpus_per_cell=0.5 is not supported: a cell holds whole GPUs"),
    ("ray.gpus_per_cell=-1", "ray.gpus_per_cell=-1 is not supported"),
    ("study=a/b", "not a valid study name"),
])
def test_bad_values_are_named_with_their_valid_range(override, needle):
    with pytest.raises(ConfigError) as err:
        plan_cells([compose([override])])
    assert needle in str(err.value)
    assert "Nothing was run" in str(err.value)


@pytest.mark.parametrize("setting,bad", [("weights", "imagined"), ("measurement.meter", "geiger"),
                                         ("ray.progress", "fancy"), ("ray.one_gpu_per", "node"),
                                         ("engine.kind", "turbo"), ("engine.attn_implementation", "flash"),
                                         ("hardware.device", "tpu")])
def test_a_bad_choice_is_refused_with_every_valid_one_and_its_help(setting, bad):
    from ecosweep.config.schema import CHOICES_BY_SETTING

    with pytest.raises(ConfigError) as err:
        plan_cells([compose([f"{setting}={bad}"])])
    message = str(err.value)
    assert f"{setting}={bad!r} is not a valid choice; choose one of: " in message
    for choice in CHOICES_BY_SETTING[setting]:
        assert f"{choice.value} — {choice.help}" in message
        assert choice.help  # every choice says what it does


def test_the_settings_table_lists_a_choice_settings_choices():
    from ecosweep.config.schema import OneGpuPer
    from ecosweep.config.suggest import settings_table

    table = settings_table([], "ray.one_gpu_per")
    for choice in OneGpuPer:
        assert f"      {choice.value}: {choice.help}" in table


def test_a_quantization_the_hardware_cannot_run_is_rejected():
    cfg = compose(["quantization=bf16", "hardware=h100", "hardware.compute_capability=7.5"])
    with pytest.raises(ConfigError, match="needs CUDA compute capability >= 8.0"):
        plan_cells([cfg])


def test_tokens_beyond_the_context_are_rejected():
    with pytest.raises(ConfigError, match="exceeds model.max_position_embeddings=2048"):
        plan_cells([compose(["input_tokens=2000", "output_tokens=100"])])


def test_all_problems_of_a_sweep_are_reported_together():
    with pytest.raises(ConfigError) as err:
        plan_cells([compose(["batch_size=0"]), compose(["output_tokens=0"])])
    assert len(err.value.problems) == 2


def test_a_sweep_over_experiments_is_refused_with_one_command_per_experiment():
    """`-m +experiment=a,b` would run each experiment as one cell of its defaults, its own grid not expanded."""
    from ecosweep.config.suggest import command_line_problems

    (problem,) = command_line_problems(["-m", "+experiment=smoke,nf4_crossover", "dry_run=true"])
    assert problem.startswith("+experiment=smoke,nf4_crossover sweeps over experiments")
    assert "python -m ecosweep +experiment=smoke; python -m ecosweep +experiment=nf4_crossover." in problem
    assert command_line_problems(["+experiment=glob(*)"])[0].endswith("python -m ecosweep +experiment=NAME.")
    assert command_line_problems(["+experiment=int8_ablation", "-m", "batch_size=1,2"]) == []


def test_a_value_its_field_cannot_take_is_named_with_its_type_and_the_fields_help():
    from hydra.errors import ConfigCompositionException

    from ecosweep.config.suggest import command_line_problems, field_help

    (problem,) = command_line_problems(["batch_size=many"])
    assert problem.startswith("batch_size='many' is not an integer") and "(requests per generate() call)" in problem
    (problem,) = command_line_problems(["-m", "batch_size=1,two,4"])
    assert "'two'" in problem and "'1'" not in problem and "'4'" not in problem
    assert "takes a number or null" in command_line_problems(["ray.gpus_per_cell=x"])[0]
    assert "true or false" in command_line_problems(["profile=maybe"])[0]
    assert command_line_problems(["ray.gpus_per_cell=null", "profile=true", "measurement.min_window_s=2.5",
                                  "batch_size=${oc.env:BS}", "quantization=nf4", "hydra.sweeper.params.batch_size=1,2",
                                  "+experiment=smoke", "seed=7"]) == []
    assert field_help("measurement.min_window_s") == "each repetition repeats generate() until its window is this long"
    assert field_help("profile").startswith("true: one more call") and field_help("profile").endswith("(profile_* columns)")
    with pytest.raises(ConfigCompositionException, match="batch_size=many"):  # the schema itself, past the CLI
        compose(["batch_size=many"])


def test_every_setting_has_help_text():
    """Each leaf setting of the schema is explained where users read it: a comment beside it in conf/config.yaml
    or in its group's files (the text errors quote, ``suggest.field_help``)."""
    from ecosweep.config.suggest import field_help, leaf_settings

    settings = leaf_settings()
    assert len(settings) > 80 and "measurement.min_window_s" in settings
    assert [s for s in settings if not field_help(s)] == []


def test_the_readme_config_group_table_lists_every_option_in_conf():
    """The README's table of config groups names exactly the options conf/ holds (a new option is documented)."""
    import re

    text = (REPO / "README.md").read_text()
    table = text.split("| group | options |", 1)[1].split("\n\n", 1)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| (.*) \|$", table, re.M)}
    assert set(rows) == set(GROUPS) | {"experiment"}
    for group, cell in rows.items():
        named = {n for n in re.findall(r"`([A-Za-z0-9_.\-]+)`", cell) if not n.startswith(("generate", "torch"))}
        assert set(options(group)) <= named, (group, sorted(set(options(group)) - named))
        assert named - set(options(group)) <= {"generate"}, (group, sorted(named - set(options(group))))
