"""What a newcomer meets first (#35): sweeps refused as cleanly as single runs — an output root that cannot be
created or written, a command-wide setting swept — unknown group options and settings named with the closest
ones, and the report's own refusals and warnings on the console. Every refusal: exit 2, one paragraph, no
traceback, nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import REPO, run_cli

UNWRITABLE = "/proc/ecosweep-cannot-create"  # its parent exists; nothing can be created under /proc
READ_ONLY = "/proc/self"  # exists, and no file can be written in it


def refused_cleanly(r, needle):
    text = r.stdout + r.stderr
    assert r.returncode == 2, text[-2000:]
    assert needle in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in text and "HYDRA_FULL_ERROR" not in text
    assert "Nothing was run and no results were written." in r.stderr


@pytest.mark.parametrize("args", [
    ["+experiment=smoke", f"output_root={UNWRITABLE}"],
    ["-m", "batch_size=1,2", f"output_root={UNWRITABLE}"],
    ["-m", "batch_size=1,2", f"output_root={READ_ONLY}"],
    ["-m", "batch_size=1,2", "hardware=cpu", f"output_root={READ_ONLY}", "tracking=none"],
], ids=["experiment-unwritable", "sweep-unwritable", "sweep-read-only", "sweep-read-only-no-tracking"])
def test_a_sweep_into_a_root_it_cannot_write_is_refused_before_hydra_writes(tmp_path, args):
    r = run_cli(args, cwd=tmp_path)
    refused_cleanly(r, "output_root=")
    assert "cannot be" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_dry_run_sweep_writes_nothing_even_where_it_could_not(tmp_path):
    r = run_cli(["-m", "batch_size=1,2", f"output_root={UNWRITABLE}", "dry_run=true"], cwd=tmp_path)
    assert r.returncode == 0 and "2 cell(s); dry run: nothing was run." in r.stdout, r.stderr[-2000:]
    out = tmp_path / "out"
    r = run_cli(["-m", "batch_size=1,2", f"output_root={out}", "dry_run=true"], cwd=tmp_path)
    assert r.returncode == 0 and not out.exists()  # not even Hydra's _hydra/multirun.yaml


@pytest.mark.parametrize("sweep,setting", [("dry_run=true,false", "dry_run"), ("dry_run=false,true", "dry_run"),
                                           ("tracking=mlflow,none", "tracking"),
                                           ("ray.progress=plain,off", "ray.progress")])
def test_sweeping_a_command_wide_setting_is_refused_with_its_values(tmp_path, sweep, setting):
    out = tmp_path / "out"
    r = run_cli(["-m", sweep, "hardware=cpu", f"output_root={out}"], cwd=tmp_path)
    refused_cleanly(r, f"{setting} takes one value per command")
    assert not out.exists()


def test_an_unknown_group_option_is_named_with_the_closest_and_exits_2(tmp_path):
    for args, needle in ((["model=Mistral7B"], "Did you mean Mistral-7B?"),
                         (["-m", "quantization=fp16,nf5"], "quantization='nf5' is not an option"),
                         (["+experiment=smok"], "Did you mean smoke?")):
        r = run_cli([*args, f"output_root={tmp_path / 'out'}"], cwd=tmp_path)
        refused_cleanly(r, needle)
    assert not (tmp_path / "out").exists()


def test_settings_with_a_prefix_nothing_starts_with_says_so_and_suggests(capsys):
    from ecosweep.cli import main

    with pytest.raises(SystemExit) as done:
        main(["settings", "measurment."])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "no setting starts with 'measurment.'" in err and "Did you mean measurement." in err


def copy_smoke_study(smoke_study, tmp_path) -> Path:
    study = tmp_path / "smoke"
    _, outputs, _ = smoke_study
    shutil.copytree(outputs / "smoke", study, ignore=shutil.ignore_patterns("report", ".ecosweep.lock"))
    return study


@pytest.mark.slow
@pytest.mark.integration
def test_report_into_a_folder_it_cannot_write_names_out_in_one_line(smoke_study, tmp_path):
    study = copy_smoke_study(smoke_study, tmp_path)
    r = run_cli(["report", str(study), "--out", READ_ONLY + "/report"], cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    assert "--out=" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.integration
def test_report_over_a_damaged_file_warns_on_the_console_too(smoke_study, tmp_path):
    study = copy_smoke_study(smoke_study, tmp_path)
    victim = sorted((study / "cells").glob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    r = run_cli(["report", str(study), "--out", str(tmp_path / "report")], cwd=tmp_path)
    assert r.returncode == 0
    assert f"WARNING: {victim}" in r.stderr and "left out of the report" in r.stderr
    assert "Damaged:" in (tmp_path / "report" / "report.md").read_text()


def test_the_cluster_recipe_in_the_readme_activates_the_environment_before_any_ray_command():
    from test_parallel import readme_cluster_recipe

    lines = readme_cluster_recipe()
    first_ray = next(i for i, line in enumerate(lines) if line.startswith("ray ") or " ray " in line)
    activate = next(i for i, line in enumerate(lines) if "source .venv/bin/activate" in line)
    assert activate < first_ray, lines


def test_the_readme_quick_start_activates_the_environment_for_the_recipes_that_follow():
    text = (REPO / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("## Running studies", 1)[0]
    assert "source .venv/bin/activate" in quick
