"""Parallel sweeps on Ray (CPU, logical GPUs): concurrency, fault isolation, resume, clusters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, free_port, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SMALL = ["hardware=cpu", "measurement=quick", "repetitions=2", "input_tokens=8", "output_tokens=4", "tracking=none",
         "ray.progress=plain"]


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
                 "ray.gpus_per_cell=1", "ray.one_gpu_per=comparison", f"output_root={out}"], cwd=tmp_path)
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
    assert (df.groupby("input_tokens").cuda_visible_devices.nunique() == 1).all()


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


def test_killed_driver_resumes_without_losing_or_duplicating_rows(tmp_path):
    out = tmp_path / "outputs"
    args = [sys.executable, "-m", "ecosweep", "-m", "batch_size=1,2,3,4", *SMALL, f"output_root={out}"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    cells = out / "default" / "cells"
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len(list(cells.glob("*.parquet")) if cells.exists() else []) < 2:
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 of the driver alone
        proc.wait()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # then the Ray processes it left behind
        except ProcessLookupError:
            pass
    done_before = len(list(cells.glob("*.parquet")))
    assert 2 <= done_before < 4
    r = run_cli(args[3:], cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"Skipping {done_before} of 4 cells already complete" in r.stdout
    df = pd.read_parquet(cells)
    assert df.cell_id.nunique() == 4 and len(df) == 8
    assert not df.duplicated(["cell_id", "repetition"]).any()


@pytest.fixture
def loopback_cluster(tmp_path):
    """A head and a second node on this machine, each with one logical GPU, and the job server."""
    # as the README's recipe: token authentication on every node and in the submitting shell, and the
    # project's environment first on the PATH when `ray start` runs (the job's `python` is that one)
    import secrets

    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    port, dash = free_port(), free_port()
    exclusive = '--resources={"ecosweep_exclusive": 1}'
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=1", "--include-dashboard=true",
                    f"--dashboard-port={dash}", "--disable-usage-stats", exclusive], env=env, check=True,
                   capture_output=True)
    try:
        subprocess.run([ray, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--num-gpus=1",
                        "--disable-usage-stats", exclusive], env=env, check=True, capture_output=True)
        address = f"http://127.0.0.1:{dash}"
        deadline = time.time() + 120
        while time.time() < deadline:  # the job agent comes up some seconds after `ray start` returns
            probe = subprocess.run([ray, "job", "submit", "--address", address, "--", "true"], env=env,
                                   capture_output=True, text=True)
            if probe.returncode == 0:
                break
            time.sleep(2)
        else:
            pytest.fail("the Ray job server did not come up: " + probe.stderr[-500:])
        yield env, ray, address
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)


def test_ray_job_submit_to_a_two_node_cluster(tmp_path, loopback_cluster):
    env, ray, dashboard = loopback_cluster
    out = tmp_path / "outputs"
    submit = [ray, "job", "submit", "--address", dashboard, "--working-dir", str(REPO), "--", "python", "-m", "ecosweep"]
    r = subprocess.run([*submit, "-m", "batch_size=1,2", *SMALL, "ray.gpus_per_cell=1",
                        "+ray.resources.ecosweep_exclusive=1", f"output_root={out}"],
                       env=env, text=True, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    df = pd.read_parquet(out / "default" / "cells")  # on the driver's absolute root, not in Ray's copy
    assert df.cell_id.nunique() == 2 and (df.status == "ok").all()
    assert df.ray_node_id.nunique() == 2  # both nodes ran cells (one GPU-exclusive resource each)
    t = timings(out / "default")
    assert any(overlaps(a, b) for a, b in combinations(t, 2))

    stranger = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
    refused = subprocess.run([ray, "job", "submit", "--address", dashboard, "--", "true"], env=stranger, text=True,
                             capture_output=True, timeout=120)
    assert refused.returncode != 0 and "token" in (refused.stdout + refused.stderr).lower()

    relative = subprocess.run([*submit, *SMALL, "output_root=outputs"], env=env, text=True, capture_output=True,
                              timeout=300)
    assert relative.returncode != 0
    assert "output_root='outputs' is relative" in relative.stdout + relative.stderr


def test_a_custom_resource_the_cluster_lacks_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "outputs"
    r = run_cli([*SMALL, "+ray.resources.ecosweep_exclusive=1", f"output_root={out}"], cwd=tmp_path)
    assert r.returncode == 2
    assert "ray.resources asks for ecosweep_exclusive=1 per cell but the cluster offers 0" in r.stderr
    assert not (out / "default" / "cells").exists()
