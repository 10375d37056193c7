"""Bad input ends the command with one clear message, no traceback, and nothing written."""

from __future__ import annotations

import pytest

from conftest import run_cli


def test_out_of_range_batch_size(tmp_path):
    out = tmp_path / "outputs"
    r = run_cli(["batch_size=0", f"output_root={out}"], cwd=tmp_path)
    assert r.returncode == 2
    assert "batch_size=0 is out of range: it must be an integer >= 1" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_unknown_quantization_names_the_choices(tmp_path):
    out = tmp_path / "outputs"
    r = run_cli(["quantization=int9", f"output_root={out}"], cwd=tmp_path)
    assert r.returncode != 0
    text = r.stdout + r.stderr
    assert r.returncode == 2 and "quantization='int9' is not an option of the quantization group" in text
    for choice in ("fp16", "bf16", "nf4", "int8", "int8_pure"):
        assert choice in text
    assert "Traceback" not in text
    assert not out.exists()


def test_a_bad_cell_in_a_sweep_stops_the_whole_sweep_before_it_runs(tmp_path):
    out = tmp_path / "outputs"
    r = run_cli(["-m", "batch_size=1,0", "hardware=cpu", f"output_root={out}"], cwd=tmp_path)
    assert r.returncode == 2
    assert "batch_size=0 is out of range" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()



@pytest.mark.parametrize("experiment,cells,needle", [
    ("smoke", 8, "tiny-llama/int8_pure/bs2/in32/out16"),
    ("nf4_crossover", 12, "Qwen2-7B/nf4/bs1/in128/out128"),
    ("int8_paradox", 12, "Phi-3-mini/int8/bs1/in128/out128"),
    ("int8_ablation", 12, "Yi-1.5-6B/int8_pure/bs1/in128/out128"),
    ("batch_size_sweep", 7, "Mistral-7B/int8_pure/bs64/in256/out256"),
])
def test_each_study_is_one_command_and_plans_its_grid(tmp_path, experiment, cells, needle):
    out = tmp_path / "outputs"
    r = run_cli([f"+experiment={experiment}", "dry_run=true", f"output_root={out}"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{cells} cell(s); dry run: nothing was run." in r.stdout
    assert needle in r.stdout and r.stdout.count(" todo ") == cells
    assert not (out / experiment / "cells").exists()


def test_settings_lists_each_setting_with_its_value_after_the_overrides_and_its_help(capsys):
    from ecosweep.cli import main

    with pytest.raises(SystemExit) as done:
        main(["settings", "measurement.", "measurement=short"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "measurement.min_window_s = 3.0\n    each repetition repeats generate() until its window is this long" in out
    assert "batch_size" not in out and "measurement.cooldown_temp_c = null" in out
    with pytest.raises(SystemExit) as done:
        main(["settings", "batch_size=x"])
    assert done.value.code == 2 and "batch_size='x' is not an integer" in capsys.readouterr().err

