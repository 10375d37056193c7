"""MLflow mirrors the Parquet results: parent + child runs, backfill idempotence, a real server."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest

from conftest import free_port, run_cli, start_mlflow_server, stop_mlflow_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_smoke_study_appears_as_parent_and_one_child_per_cell(smoke_study):
    from mlflow.tracking import MlflowClient

    work, out, r = smoke_study
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    uri = f"sqlite:///{out}/mlflow.db"
    assert f"mlflow ui --backend-store-uri {uri}" in r.stdout
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [x for x in runs if x.data.tags.get("ecosweep.role") == "study"]
    children = [x for x in runs if x.data.tags.get("ecosweep.role") == "cell"]
    assert len(parents) == 1 and len(children) == 8
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    df = pd.read_parquet(out / "smoke" / "cells")
    for child in children:
        cid = child.data.tags["ecosweep.cell_id"]
        cell = df[df.cell_id == cid]
        assert child.data.params["quantization"] == cell.quantization.iloc[0]
        assert int(child.data.params["batch_size"]) == cell.batch_size.iloc[0]
        assert child.data.metrics["tok_s.mean"] == pytest.approx(cell.tok_s.mean(), rel=1e-9)
        assert child.data.metrics["tok_s"] == child.data.metrics["tok_s.mean"]  # the bare name is the mean
        assert child.data.metrics["tok_s.n"] == 3
        history = client.get_metric_history(child.info.run_id, "rep.tok_s")  # repetitions: their own prefix
        assert sorted(m.step for m in history) == [0, 1, 2]
        assert sorted(m.value for m in history) == pytest.approx(sorted(cell.tok_s), rel=1e-9)
        timing = json.loads((out / "smoke" / "timings" / f"{cid}.json").read_text())
        assert child.info.start_time == pytest.approx(1000 * timing["actor_started_unix_s"], abs=1000)
        assert child.info.end_time == pytest.approx(1000 * timing["finished_unix_s"], abs=1000)
        assert child.info.end_time - child.info.start_time > 500  # the cell's run, not the moment of logging
        assert child.data.params["hardware"] == cell.device_name.iloc[0]  # what ran, not "auto"
        assert child.data.params["fidelity_reference"] == cell.fidelity_reference.iloc[0]
        assert child.data.metrics["fidelity_kl_nats_mean"] == pytest.approx(cell.fidelity_kl_nats_mean.iloc[0], rel=1e-9)
        assert "gpu_uuid" not in child.data.tags and "None" not in child.data.params.values()
        assert child.data.tags["status"] == "ok" and child.data.tags["energy_source"] in ("none", "rapl")
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {f"{cid}.parquet", f"{cid}.yaml", "environment.json"} <= artifacts
    names = [c.info.run_name for c in children]
    assert len(set(names)) == 8 and all(len(n) <= 40 for n in names)
    assert any(n.startswith("nf4 bs2 · tiny-llama · ") for n in names)

    parent = client.get_run(parents[0].info.run_id)
    assert parent.info.status == "FINISHED" and parent.info.end_time > parent.info.start_time
    assert parent.data.metrics["cells"] == 8 and parent.data.metrics["cells_ok"] == 8
    assert parent.data.params["quantizations"] == "fp32,int8,int8_pure,nf4"
    assert parent.data.params["batch_sizes"] == "1,2"
    comparisons = pd.read_csv(out / "smoke" / "report" / "comparisons.csv")
    nf4 = comparisons[(comparisons.quantization == "nf4") & (comparisons.batch_size == 1)].iloc[0]
    assert parent.data.metrics["delta_pct.tiny-llama.nf4.bs1"] == pytest.approx(nf4.delta_pct, rel=1e-9)
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/comparisons.csv", "report/figures"} <= report
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the classic runs view
    assert f"#/experiments/{exp.experiment_id}/runs" in r.stdout


def test_backfill_is_idempotent(smoke_study, tmp_path):
    work, out, _ = smoke_study
    uri = f"sqlite:///{tmp_path}/fresh.db"
    first = run_cli(["mlflow-backfill", str(out / "smoke"), "--uri", uri], cwd=work)
    second = run_cli(["mlflow-backfill", str(out / "smoke"), "--uri", uri], cwd=work)
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:]
    assert "8 run(s) created, 0 already in MLflow" in first.stdout
    assert "0 run(s) created, 8 already in MLflow" in second.stdout
    assert f"{uri}, experiment 'smoke'" in second.stdout
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("smoke")
    assert len(client.search_runs([exp.experiment_id])) == 9  # one parent, eight children


def search_runs(url: str, experiment_id: str) -> list:
    body = json.dumps({"experiment_ids": [experiment_id], "max_results": 100}).encode()
    req = urllib.request.Request(url + "/api/2.0/mlflow/runs/search", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp).get("runs", [])


def experiment_id(url: str, name: str) -> str:
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}", timeout=10) as r:
        return json.load(r)["experiment"]["experiment_id"]


def test_unreachable_server_does_not_stop_the_study_and_backfill_fills_it(tmp_path, mlflow_server):
    out = tmp_path / "outputs"
    closed = f"http://127.0.0.1:{free_port()}"
    args = ["study=offline", "hardware=cpu", "measurement=quick", "repetitions=2", "input_tokens=8",
            "output_tokens=4", f"output_root={out}"]
    r = run_cli([*args, f"tracking.uri={closed}"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"WARNING: MLflow tracking at {closed} is unavailable" in r.stdout
    assert f"python -m ecosweep mlflow-backfill {out}/offline --uri {closed}" in r.stdout
    assert len(pd.read_parquet(out / "offline" / "cells")) == 2  # Parquet complete

    for expected in ("1 run(s) created, 0 already", "0 run(s) created, 1 already"):
        b = run_cli(["mlflow-backfill", str(out / "offline"), "--uri", mlflow_server], cwd=tmp_path)
        assert b.returncode == 0 and expected in b.stdout, b.stdout + b.stderr[-2000:]
    runs = search_runs(mlflow_server, experiment_id(mlflow_server, "offline"))
    roles = sorted(t["value"] for run in runs for t in run["data"]["tags"] if t["key"] == "ecosweep.role")
    assert roles == ["cell", "study"]


def test_a_study_tracked_on_a_live_server_is_listed_by_its_rest_api(tmp_path, mlflow_server):
    """#21 on a live `mlflow server`: the parent ends FINISHED with the report and the counts, each cell run
    spans its cell's own process, the bare metric is the mean, names are unique, a re-run adds nothing."""
    out = tmp_path / "outputs"
    args = ["-m", "batch_size=1,2", "study=served", "hardware=cpu", "measurement=quick", "repetitions=2",
            "input_tokens=8", "output_tokens=4", f"output_root={out}", f"tracking.uri={mlflow_server}"]
    r = run_cli(args, cwd=tmp_path)
    assert r.returncode == 0 and "WARNING" not in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    exp_id = experiment_id(mlflow_server, "served")
    assert f"{mlflow_server}/#/experiments/{exp_id}/runs" in r.stdout  # the link to the classic runs table
    runs = search_runs(mlflow_server, exp_id)
    role = lambda run: next(t["value"] for t in run["data"]["tags"] if t["key"] == "ecosweep.role")
    cells = [run for run in runs if role(run) == "cell"]
    parents = [run for run in runs if role(run) == "study"]
    assert len(cells) == 2 and len(parents) == 1
    parquet = pd.read_parquet(out / "served" / "cells")
    for cell in cells:
        metrics = {m["key"]: m["value"] for m in cell["data"]["metrics"]}
        tags = {t["key"]: t["value"] for t in cell["data"]["tags"]}
        rows = parquet[parquet.cell_id == tags["ecosweep.cell_id"]]
        assert metrics["tok_s"] == metrics["tok_s.mean"] == pytest.approx(rows.tok_s.mean(), rel=1e-9)
        assert not any(math.isnan(v) for v in metrics.values())
        timing = json.loads((out / "served" / "timings" / f"{tags['ecosweep.cell_id']}.json").read_text())
        assert int(cell["info"]["start_time"]) == pytest.approx(1000 * timing["actor_started_unix_s"], abs=1000)
        assert int(cell["info"]["end_time"]) == pytest.approx(1000 * timing["finished_unix_s"], abs=1000)
    assert len({c["info"]["run_name"] for c in cells}) == 2
    parent = parents[0]
    assert parent["info"]["status"] == "FINISHED"
    metrics = {m["key"]: m["value"] for m in parent["data"]["metrics"]}
    assert metrics["cells"] == 2 and metrics["cells_ok"] == 2 and metrics["cells_failed"] == 0
    with urllib.request.urlopen(f"{mlflow_server}/api/2.0/mlflow/artifacts/list?run_id={parent['info']['run_id']}"
                                "&path=report", timeout=10) as resp:
        listed = {f["path"] for f in json.load(resp)["files"]}
    assert {"report/report.md", "report/comparisons.csv", "report/figures"} <= listed

    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0 and "Nothing to run" in again.stdout
    assert len(search_runs(mlflow_server, exp_id)) == 3  # idempotent: one parent, two cells


def test_a_committed_h100_study_loads_into_mlflow_with_one_command(tmp_path):
    """README, "MLflow": experiments/<study>/<gpu> backfilled under a name of its own, report and all."""
    from mlflow.tracking import MlflowClient

    from conftest import REPO

    uri = f"sqlite:///{tmp_path}/h100.db"
    folder = REPO / "experiments" / "int8_paradox" / "h100"
    r = run_cli(["mlflow-backfill", str(folder), "--uri", uri, "--experiment", "int8_paradox-h100"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "12 run(s) created" in r.stdout
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("int8_paradox-h100")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parent = next(x for x in runs if x.data.tags["ecosweep.role"] == "study")
    cells = [x for x in runs if x.data.tags["ecosweep.role"] == "cell"]
    assert len(cells) == 12 and parent.info.status == "FINISHED"
    assert all(c.data.metrics["energy_j_per_1k_tok"] > 1000 and c.data.tags["gpu_uuid"].startswith("GPU-")
               for c in cells)
    h100 = "NVIDIA_H100_80GB_HBM3.Mistral-7B.int8.bs1"  # the report puts the published RTX 4090D table beside it
    assert parent.data.metrics[f"delta_pct.{h100}"] == pytest.approx(172.9, abs=0.05)  # README table
    assert parent.data.metrics["delta_pct.RTX_4090D.Mistral-7B.int8.bs1"] == pytest.approx(30.7, abs=0.05)
    assert parent.data.metrics[f"same_device.{h100}"] == 1.0
    assert parent.data.params["hardware"] == "NVIDIA H100 80GB HBM3"
    assert "report/report.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert (tmp_path / "mlartifacts" / "int8_paradox-h100").is_dir()  # beside the store, not in experiments/
    assert not (folder.parent / "mlartifacts").exists()
    starts = [c.info.start_time for c in cells]
    assert parent.info.start_time <= min(starts) and parent.info.end_time >= max(c.info.end_time for c in cells)


def test_mlflow_going_down_mid_study_loses_nothing_and_backfill_completes_it(tmp_path):
    """The fault matrix's "MLflow down mid-study": the study finishes, Parquet is complete, one warning
    names the backfill command, and the backfill (server back) fills in what was missed."""
    proc, url = start_mlflow_server(tmp_path / "server")
    out = tmp_path / "outputs"
    args = ["-m", "batch_size=1,2", "study=midway", "hardware=cpu", "measurement=quick", "repetitions=2",
            "warmup=0", "measurement.warmup_min_s=2", "input_tokens=8", "output_tokens=4", f"output_root={out}",
            f"tracking.uri={url}", "ray.progress=plain"]
    study = subprocess.Popen([sys.executable, "-m", "ecosweep", *args], cwd=tmp_path, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cells = out / "midway" / "cells"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(cells.glob("*.parquet")) if cells.exists() else []) < 1:
        time.sleep(0.2)
    stop_mlflow_server(proc)
    stdout, stderr = study.communicate(timeout=300)
    assert study.returncode == 0, stdout + stderr
    assert stdout.count(f"WARNING: MLflow tracking at {url} is unavailable") == 1
    assert f"python -m ecosweep mlflow-backfill {out}/midway --uri {url}" in stdout
    rows = pd.read_parquet(cells)
    assert rows.cell_id.nunique() == 2 and len(rows) == 4 and not rows.duplicated(["cell_id", "repetition"]).any()

    proc, url2 = start_mlflow_server(tmp_path / "server")  # the same store, back on another port
    try:
        b = run_cli(["mlflow-backfill", str(out / "midway"), "--uri", url2], cwd=tmp_path)
        assert b.returncode == 0, b.stdout + b.stderr
        runs = search_runs(url2, experiment_id(url2, "midway"))
        cell_runs = [r for r in runs if {"key": "ecosweep.role", "value": "cell"} in r["data"]["tags"]]
        assert len(cell_runs) == 2  # what the study had mirrored, plus what the backfill added, once each
    finally:
        stop_mlflow_server(proc)
