"""The fault matrix: what a new user hit, each ending with no row lost and none duplicated.

Covered here: an unwritable output root, a damaged result file, two commands writing one study
folder, Ctrl-C during a study, a report on nothing, a typo in a key, umask. Covered beside these
(tests/test_parallel.py): the driver killed with SIGKILL mid-cell, a cell process that crashes, a
cell that runs out of host memory; (tests/test_mlflow_tracking.py): an MLflow server that is down;
(tests/test_nvml_meter.py): NVML absent.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli

FAST = ["hardware=cpu", "measurement=quick", "repetitions=2", "warmup=0", "input_tokens=8", "output_tokens=4",
        "tracking=none", "ray.progress=plain"]


def assert_store_exact(study_dir: Path, cells: int, repetitions: int = 2) -> pd.DataFrame:
    """Every cell present once with exactly its repetitions, all ok: nothing lost, nothing duplicated."""
    rows = pd.read_parquet(study_dir / "cells")
    assert rows.cell_id.nunique() == cells
    assert (rows.status == "ok").all()
    assert (rows.groupby("cell_id").size() == repetitions).all()
    assert not rows.duplicated(["cell_id", "repetition"]).any()
    return rows


def test_unwritable_output_root_is_refused_before_anything_loads(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for root in (blocker / "outputs", Path("/proc/ecosweep-cannot-be-here")):
        start = time.time()
        r = run_cli([*FAST, f"output_root={root}"], cwd=tmp_path)
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"output_root={root} cannot be" in r.stderr and "Nothing was run" in r.stderr
        assert "Traceback" not in r.stderr and time.time() - start < 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_cpu_cell_too_large_for_this_machine_is_refused(tmp_path, monkeypatch):
    """Random weights are built in memory: a 7B model in fp32 on a CPU with 24 GiB cannot load, and says so
    before Ray starts; on a GPU host (no CPU cells) the same check has nothing to say."""
    import psutil

    from ecosweep.cells import plan_cells
    from ecosweep.errors import ConfigError
    from ecosweep.run.preflight import check_before_running

    from conftest import compose

    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("M", (), {"total": 24 * 2**30})())
    cpu = plan_cells([compose(["model=Mistral-7B", "quantization=fp32", "hardware=cpu", f"output_root={tmp_path / 'out'}"])])
    with pytest.raises(ConfigError, match=r"model=Mistral-7B quantization=fp32 on the CPU needs about 27.0 GiB of "
                                          r"memory .* but this machine has 24.0 GiB; choose a smaller model"):
        check_before_running(cpu, cells_to_measure=1)
    assert not (tmp_path / "out").exists()
    tiny = plan_cells([compose(["quantization=nf4", "hardware=cpu", f"output_root={tmp_path / 'out'}"])])
    check_before_running(tiny, cells_to_measure=1)  # the tiny model fits
    gpu = plan_cells([compose(["model=Mistral-7B", "quantization=fp16", "hardware=h100", f"output_root={tmp_path / 'out'}"])])
    check_before_running(gpu, cells_to_measure=1)


def test_a_typo_in_a_key_gets_did_you_mean_and_a_mistyped_value_its_type(tmp_path):
    r = run_cli(["batchsize=4"], cwd=tmp_path)
    assert r.returncode == 2
    assert "unknown key 'batchsize'" in r.stderr and "Did you mean batch_size?" in r.stderr
    r = run_cli(["ray.one_gpu_pr=cell"], cwd=tmp_path)
    assert r.returncode == 2 and "Did you mean ray.one_gpu_per?" in r.stderr
    r = run_cli(["-m", "batch_size=1,many"], cwd=tmp_path)
    assert r.returncode == 2 and "batch_size='many' is not an integer" in r.stderr and "HYDRA_FULL_ERROR" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_lists_subcommands_groups_and_protocols(tmp_path):
    r = run_cli(["--help"], cwd=tmp_path)
    assert r.returncode == 0
    for needle in ("report PATH", "mlflow-backfill", "--wait", "engine: compiled, eager, graph",
                   "measurement: default, quick, short", "experiment: batch_size_sweep, engine_crossover"):
        assert needle in r.stdout, needle


def test_report_on_nothing_exits_2_and_writes_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_cli(["report", str(tmp_path / "empty")], cwd=tmp_path)
    assert r.returncode == 2 and "no usable results" in r.stderr
    assert list((tmp_path / "empty").iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_result_files_follow_the_umask(tmp_path):
    from ecosweep.results.store import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o600


def test_study_lock_names_its_holder_and_is_freed_by_a_dead_process(tmp_path):
    from ecosweep.results.lock import StudyBusyError, StudyLock

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from ecosweep.results.lock import StudyLock\n"
        "StudyLock(%r).acquire(); print('held', flush=True); time.sleep(60)") % (str(Path.cwd()), str(tmp_path))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StudyBusyError, match=f"being written by process {holder.pid} on "):
            StudyLock(tmp_path).acquire()
    finally:
        holder.kill()  # like kill -9: no clean-up ran
        holder.wait()
    with StudyLock(tmp_path):  # the kernel dropped the dead holder's lock
        assert str(os.getpid()) in (tmp_path / ".ecosweep.lock").read_text()


@pytest.mark.slow
@pytest.mark.integration
def test_damaged_cell_file_is_moved_aside_listed_reported_and_measured_again(tmp_path):
    out = tmp_path / "out"
    args = ["-m", "batch_size=1,2", "study=default", *FAST, f"output_root={out}"]
    assert run_cli(args, cwd=tmp_path).returncode == 0
    cells = sorted((out / "default" / "cells").glob("*.parquet"))
    damaged = cells[0]
    damaged.write_bytes(damaged.read_bytes()[:100])  # a copy cut short

    plan = run_cli([*args, "dry_run=true"], cwd=tmp_path)
    assert plan.returncode == 0 and f"{damaged.stem}  damaged" in plan.stdout

    report = run_cli(["report", str(out / "default"), "--out", str(tmp_path / "report")], cwd=tmp_path)
    assert report.returncode == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert f"Damaged: {damaged}" in text and "measures the cell again" in text

    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{damaged} was damaged" in again.stdout and "measured again" in again.stdout
    assert len(list((out / "default" / "damaged").glob(f"{damaged.stem}.*.parquet"))) == 1
    assert_store_exact(out / "default", cells=2)


@pytest.mark.slow
@pytest.mark.integration
def test_a_second_command_into_a_study_folder_is_refused_or_waits(tmp_path):
    from ecosweep.results.lock import StudyLock

    out = tmp_path / "out"
    args = ["-m", "batch_size=1,2", "study=default", *FAST, f"output_root={out}"]
    lock = StudyLock(out / "default")
    lock.acquire()  # as if another command were writing this study
    try:
        refused = run_cli(args, cwd=tmp_path)
        assert refused.returncode == 2
        assert f"is being written by process {os.getpid()}" in refused.stderr and "--wait" in refused.stderr
        assert not (out / "default" / "cells").exists()
        waiting = subprocess.Popen([sys.executable, "-m", "ecosweep", "--wait", *args], cwd=tmp_path, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        time.sleep(4)
        assert waiting.poll() is None and not (out / "default" / "cells").exists()
    finally:
        lock.release()
    stdout, stderr = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, stdout + stderr
    assert "Waiting for" in stderr
    assert_store_exact(out / "default", cells=2)


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_ends_in_one_line_keeps_finished_cells_and_the_same_command_resumes(tmp_path, mlflow_server):
    out, url = tmp_path / "out", mlflow_server  # the parent run's status, on a live server
    args = ["-m", "batch_size=1,2,3", *FAST, "measurement.warmup_min_s=2", f"output_root={out}", "study=interrupted",
            "tracking=mlflow", f"tracking.uri={url}"]
    proc = subprocess.Popen([sys.executable, "-m", "ecosweep", *args], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    cells = out / "interrupted" / "cells"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(cells.glob("*.parquet")) if cells.exists() else []) < 1:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "Interrupted" in line]
    assert len(lines) == 1 and "run the same command to resume" in lines[0]
    finished = len(list(cells.glob("*.parquet")))
    assert 1 <= finished < 3
    assert_store_exact(out / "interrupted", cells=finished)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name("interrupted")
    parent = client.search_runs([exp.experiment_id], "tags.`ecosweep.role` = 'study'")[0]
    assert parent.info.status == "KILLED"

    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"Skipping {finished} of 3 cells already complete" in again.stdout
    assert_store_exact(out / "interrupted", cells=3)
    parent = client.search_runs([exp.experiment_id], "tags.`ecosweep.role` = 'study'")[0]
    assert parent.info.status == "FINISHED"
