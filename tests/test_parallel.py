"""Parallel sweeps on Ray (CPU, logical GPUs): concurrency, fault isolation, resume, clusters."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, free_port, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SMALL = ["study=default", "hardware=cpu", "measurement=quick", "repetitions=2", "input_tokens=8", "output_tokens=4",
         "tracking=none", "ray.progress=plain"]


def timings(study_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((study_dir / "timings").glob("*.json"))]


def overlaps(a: dict, b: dict) -> bool:
    return a["actor_started_unix_s"] < b["finished_unix_s"] and b["actor_started_unix_s"] < a["finished_unix_s"]


def test_two_logical_gpus_run_two_cells_at_a_time_one_per_gpu(tmp_path):
    out = tmp_path / "outputs"
    r = run_cli(["-m", "batch_size=1,2,4,8", *SMALL, "ray.num_gpus=2", "ray.num_cpus=2", "ray.gpus_per_cell=1",
                 f"output_root={out}"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    t = timings(out / "default")
    assert len(t) == 4
    assert {x["cuda_visible_devices"] for x in t} == {"0", "1"}
    pairs = [(a, b) for a, b in combinations(t, 2) if overlaps(a, b)]
    assert pairs, "no two cells ran at the same time"
    assert all(a["cuda_visible_devices"] != b["cuda_visible_devices"] for a, b in pairs)  # never two on one GPU
    for moment in [x["actor_started_unix_s"] + 1e-3 for x in t]:
        assert sum(x["actor_started_unix_s"] <= moment < x["finished_unix_s"] for x in t) <= 2
    df = pd.read_parquet(out / "default" / "cells")
    assert set(df.cuda_visible_devices) == {"0", "1"} and (df.status == "ok").all()


def test_comparison_lanes_keep_each_comparison_on_one_gpu_each_cell_in_its_own_process(tmp_path):
    out = tmp_path / "outputs"
    r = run_cli(["-m", *SMALL, "input_tokens=8,16", "quantization=fp32,bf16", "ray.num_gpus=2", "ray.num_cpus=2",
                 "ray.gpus_per_cell=1", "ray.one_gpu_per=comparison", "ray.prepare_next_process=true",
                 f"output_root={out}"], cwd=tmp_path,
                # the lanes' first cells meet before they go on: a loaded 2-core host may start the second lane's
                # process only after the first lane's tiny cells ended, which is slow, not serial
                env_extra={"ECOSWEEP_TESTING_BARRIER": f"{tmp_path / 'barrier'}:2"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    t = timings(out / "default")
    assert len(t) == 4 and {x["status"] for x in t} == {"ok"}
    lanes = {}
    for x in t:
        lanes.setdefault(x["label"].split("/in")[1], []).append(x)
    for cells in lanes.values():  # fp32 and bf16 of one prompt length: one GPU, one after the other
        assert len({x["cuda_visible_devices"] for x in cells}) == 1
        assert not overlaps(*cells)
    assert {lanes["8/out4"][0]["cuda_visible_devices"], lanes["16/out4"][0]["cuda_visible_devices"]} == {"0", "1"}
    assert any(overlaps(a, b) for a in lanes["8/out4"] for b in lanes["16/out4"])  # the two lanes in parallel
    assert len({x["process_id"] for x in t}) == 4  # a fresh process per cell
    df = pd.read_parquet(out / "default" / "cells")
    assert (df.actor_earlier_lanes_count == 0).all()  # an actor per lane (ray.reuse_actors off)
    assert (df.groupby("input_tokens").cuda_visible_devices.nunique() == 1).all()
    # each lane's second process imported while the first cell ran, and was ready before that cell's windows
    for _, lane in df.sort_values("timestamp_utc").groupby("input_tokens"):
        first, second = (g for _, g in lane.groupby("cell_id", sort=False))
        assert not first.process_prepared.any() and second.process_prepared.all()
        assert second.process_ready_unix_s.iloc[0] <= first.timestamp_utc.min().timestamp()


def test_a_crashing_cell_in_a_lane_is_retried_and_its_lane_goes_on(tmp_path):
    out = tmp_path / "outputs"
    r = run_cli(["-m", "quantization=fp32,bf16,fp16", *SMALL, "ray.num_gpus=1", "ray.num_cpus=2", "ray.gpus_per_cell=1",
                 "ray.one_gpu_per=study", "ray.actor_retries=1", f"output_root={out}"], cwd=tmp_path,
                env_extra={"ECOSWEEP_TESTING_CRASH_CELL": "/bf16/"})
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    df = pd.read_parquet(out / "default" / "cells")
    status = df.groupby("quantization").status.first().to_dict()
    assert status == {"fp32": "ok", "bf16": "failed", "fp16": "ok"}
    error = df[df.quantization == "bf16"].error.iloc[0]
    assert error.startswith("cell process died 2 time(s) (retries: 1): CellProcessDied:") and "code 17" in error
    assert r.stdout.count("retry  ") == 1 and "1 cell(s) failed" in r.stdout


def test_crashes_and_oom_become_rows_and_the_other_cells_finish(tmp_path):
    out = tmp_path / "outputs"
    r = run_cli(["-m", "batch_size=1,2", "model.intermediate_size=1024,100000000000", *SMALL, "ray.actor_retries=1",
                 f"output_root={out}"], cwd=tmp_path, env_extra={"ECOSWEEP_TESTING_CRASH_CELL": "/bs2/"})
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    df = pd.read_parquet(out / "default" / "cells")
    by = df.groupby("cell_id").agg(status=("status", "first"), bs=("batch_size", "first"), n=("status", "size"),
                                   error=("error", "first"))
    assert sorted(by.status) == ["failed", "failed", "ok", "oom"]
    ok = by[by.status == "ok"]
    assert ok.bs.tolist() == [1] and ok.n.tolist() == [2]
    crashed = by[by.status == "failed"]
    assert (crashed.bs == 2).all() and crashed.error.str.contains("actor died 2 time").all()
    assert by[by.status == "oom"].error.str.contains("allocate memory").all()
    assert "3 cell(s) failed" in r.stdout and r.stdout.count("retry  ") == 2


def running(procs) -> list:
    """The command lines of those of ``procs`` still running (a zombie has ended)."""
    import psutil

    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(proc.cmdline())[:120] or proc.name())
        except psutil.Error:
            pass
    return alive


def test_killed_driver_resumes_without_losing_or_duplicating_rows_and_leaves_no_ray_behind(tmp_path):
    import psutil

    out = tmp_path / "outputs"
    args = [sys.executable, "-m", "ecosweep", "-m", "batch_size=1,2,3,4", *SMALL, f"output_root={out}"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    cells = out / "default" / "cells"
    started = []
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len(list(cells.glob("*.parquet")) if cells.exists() else []) < 2:
            time.sleep(0.2)
        started = psutil.Process(proc.pid).children(recursive=True)  # Ray's processes, its agents, the cells
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 of the driver alone
        proc.wait()
        deadline = time.time() + 20
        while time.time() < deadline and running(started):
            time.sleep(0.5)
        assert not running(started), f"still running 20 s after the driver was killed: {running(started)}"
    finally:
        for p in started:
            try:
                p.kill()
            except psutil.Error:
                pass
    done_before = len(list(cells.glob("*.parquet")))
    assert 2 <= done_before < 4
    r = run_cli(args[3:], cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"Skipping {done_before} of 4 cells already complete" in r.stdout
    df = pd.read_parquet(cells)
    assert df.cell_id.nunique() == 4 and len(df) == 8
    assert not df.duplicated(["cell_id", "repetition"]).any()


RECIPE_START, RECIPE_END = "# an existing cluster (cluster recipe)", "# (end of the cluster recipe)"


def readme_cluster_recipe() -> list:
    """The README's cluster recipe: its command lines in order (continuations joined, comments dropped)."""
    text = (REPO / "README.md").read_text()
    block = text.split(RECIPE_START, 1)[1].split(RECIPE_END, 1)[0]
    lines, pending = [], ""
    for raw in block.splitlines()[1:]:
        line = raw.split("  #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = (pending + line.strip()).strip()
        pending = ""
        if line:
            lines.append(line)
    return lines


def stop_ray_on_port(port: int) -> None:
    """End the Ray processes of the cluster whose GCS listens on ``port`` (only that cluster: never
    `ray stop`, which ends every Ray on the machine)."""
    import psutil

    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if f":{port} " in cmdline + " " and ("gcs-address" in cmdline or "gcs_address" in cmdline) \
                or f"--gcs_server_port={port}" in cmdline:
            mine.append(proc)
    for proc in mine:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(mine, timeout=10)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture
def recipe_cluster(tmp_path):
    """The README's cluster recipe, run as written with a head and a worker on this machine: HEAD is
    127.0.0.1, the ports are free ones, the output root and the home folder (where the token goes) are the
    test's, each `ray start` gets this machine's small share of CPUs and one logical GPU, and the worker its own
    temporary folder (as the README says two nodes on one machine need)."""
    port, dash = free_port(), free_port()
    out = tmp_path / "outputs"
    activate = Path(sys.executable).parent / "activate"
    lines = [line.replace("HEAD", "127.0.0.1").replace("6379", str(port)).replace("8265", str(dash))
             .replace("/shared/ecosweep", str(out)).replace("source .venv/bin/activate", f"source {activate}")
             for line in readme_cluster_recipe()]
    assert [i for i, line in enumerate(lines) if line.startswith("ray start")] == [3, 4], lines
    # each node's dashboard agent on a port of its own: Ray's default (52365) is taken whenever another Ray runs on
    # this machine (another test's local Ray), and a head whose agent cannot bind accepts no job
    lines[3] += f" --num-cpus=2 --num-gpus=1 --disable-usage-stats --dashboard-agent-listen-port={free_port()}"
    # two nodes on one machine need their own temporary folders (README): Ray's runtime-env agent of each node
    # removes and unpacks the job's working_dir again in its node's folder
    worker_tmp = tempfile.mkdtemp(prefix="ray-w", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    lines[4] += (f" --num-cpus=1 --num-gpus=1 --disable-usage-stats --temp-dir={worker_tmp}"
                 f" --dashboard-agent-listen-port={free_port()}")
    setup, submit = lines[:5], lines[5]
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    wait = (f'for i in $(seq 60); do RAY_ADDRESS=http://127.0.0.1:{dash} timeout 60 ray job submit -- true '
            '>/dev/null 2>&1 && break; sleep 2; done')
    log = tmp_path / "recipe-setup.log"
    try:  # output to a file: `ray start` leaves daemons holding whatever pipes it was given
        with open(log, "w") as sink:
            r = subprocess.run(["bash", "-euc", "\n".join([*setup, wait])], cwd=REPO, env=env, text=True,
                               stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=300)
        assert r.returncode == 0, log.read_text()[-3000:]
        yield env, lines, submit, out, f"http://127.0.0.1:{dash}"
    finally:
        stop_ray_on_port(port)
        shutil.rmtree(worker_tmp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.integration
def test_the_readme_cluster_recipe_runs_as_written_three_jobs_in_a_row(tmp_path, recipe_cluster):
    env, lines, submit, out, dashboard = recipe_cluster
    env_lines = lines[:2]  # the environment every shell of the recipe starts with
    small = "hardware=auto ray.gpus_per_cell=1 measurement=quick repetitions=2 input_tokens=8 output_tokens=4 " \
            "ray.progress=plain"
    outputs = []
    for study in ("recipe_a", "recipe_b", "recipe_c"):  # the first measures its 4 cells, the others copy them
        r = subprocess.run(["bash", "-euc", "\n".join([*env_lines, f"{submit} {small} study={study}"])],
                           cwd=REPO, env=env, text=True, capture_output=True, timeout=600)
        outputs.append(r.stdout + r.stderr)
        assert r.returncode == 0, outputs[-1][-3000:]
        assert "unavailable" not in outputs[-1] and "ImportError" not in outputs[-1], outputs[-1][-3000:]
        df = pd.read_parquet(out / study / "cells")  # on the driver's absolute root, not in Ray's copy
        assert df.cell_id.nunique() == 4 and (df.status == "ok").all()
        assert df.ray_node_id.nunique() == 2  # both nodes ran cells (one GPU-exclusive resource each)
    assert "Reusing 4 of 4 cells that recipe_a" in outputs[1] and "Reusing 4 of 4" in outputs[2]
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    for study in ("recipe_a", "recipe_b", "recipe_c"):
        experiment = client.get_experiment_by_name(study)
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == 5 and {r.info.status for r in runs} == {"FINISHED"}  # the parent and its 4 cells

    stranger = {k: v for k, v in env.items() if k != "HOME"}  # no token: another user's shell
    stranger["HOME"] = str(tmp_path / "nobody")
    refused = subprocess.run(["bash", "-euc", "\n".join([*env_lines, f"RAY_ADDRESS={dashboard} ray job submit -- true"])],
                             cwd=REPO, env=stranger, text=True, capture_output=True, timeout=120)
    assert refused.returncode != 0 and "token" in (refused.stdout + refused.stderr).lower()

    relative = subprocess.run(["bash", "-euc", "\n".join([*env_lines, submit.replace(str(out), "outputs") + " " + small])],
                              cwd=REPO, env=env, text=True, capture_output=True, timeout=300)
    assert relative.returncode != 0
    assert "output_root='outputs' is relative" in relative.stdout + relative.stderr


def test_a_custom_resource_the_cluster_lacks_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "outputs"
    r = run_cli([*SMALL, "+ray.resources.ecosweep_exclusive=1", f"output_root={out}"], cwd=tmp_path)
    assert r.returncode == 2
    assert "ray.resources asks for ecosweep_exclusive=1 per cell but the cluster offers 0" in r.stderr
    assert not (out / "default" / "cells").exists()
