"""The smoke study end to end: Hydra -> Ray actors -> Parquet, then a resume that skips everything."""

from __future__ import annotations

import pandas as pd
import pytest

from ecosweep.results.schema import COLUMN_NAMES

from conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_smoke_study_runs_every_cell_through_ray(smoke_study):
    work, out, r = smoke_study
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"Results: {out}/smoke/cells/" in r.stdout
    df = pd.read_parquet(out / "smoke" / "cells")
    assert list(df.columns) == COLUMN_NAMES
    assert df.cell_id.nunique() == 8
    assert (df.groupby("cell_id").size() == 3).all()  # exactly `repetitions` rows per cell
    assert set(df.quantization) == {"fp32", "nf4", "int8", "int8_pure"}
    assert set(df.batch_size) == {1, 2}
    assert (df.status == "ok").all() and df.error.isna().all()
    assert (df.tokens_generated == df.generate_calls * df.batch_size * 16).all()
    assert ((df.tok_s - df.tokens_generated / df.seconds).abs() < 1e-9 * df.tok_s).all()  # tokens per window second
    assert (df.weights == "random").all() and (df.device == "cpu").all()
    # no energy source on this CPU: NaN with its label, never zero
    assert set(df.energy_source) <= {"none", "rapl"}
    assert df.loc[df.energy_source == "none", "energy_j"].isna().all()
    for cid in df.cell_id.unique():
        assert (out / "smoke" / "configs" / f"{cid}.yaml").exists()
    # the summary table lists every cell
    for cid in df.cell_id.unique():
        assert cid in r.stdout
    # fidelity: fp32 is the reference on a CPU; every quantized cell was compared with it, before its windows
    fidelity = df.groupby("quantization").first()
    assert fidelity.fidelity_reference.to_dict() == {"fp32": "itself (float32)", "nf4": "float32 (same weights)",
                                                     "int8": "float32 (same weights)", "int8_pure": "float32 (same weights)"}
    assert fidelity.fidelity_kl_nats_mean["fp32"] == 0.0 and (fidelity.drop("fp32").fidelity_kl_nats_mean > 0).all()
    report = (out / "smoke" / "report" / "report.md").read_text()
    assert "## Fidelity beside energy" in report and "measure the quantized kernels' numerical error" in report


def test_second_run_skips_every_cell(smoke_study):
    work, out, _ = smoke_study
    before = {p.name: p.stat().st_mtime_ns for p in (out / "smoke" / "cells").iterdir()}
    again = run_cli(["+experiment=smoke", f"output_root={out}"], cwd=work)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Skipping 8 of 8 cells already complete" in again.stdout
    assert "Nothing to run" in again.stdout
    after = {p.name: p.stat().st_mtime_ns for p in (out / "smoke" / "cells").iterdir()}
    assert before == after


def test_another_study_reuses_the_cells_the_smoke_study_measured(smoke_study, tmp_path):
    """Same cell ids under the same output root: copied into the new study, not measured again."""
    import shutil

    from mlflow.tracking import MlflowClient

    work, out, _ = smoke_study
    root = tmp_path / "outputs"
    shutil.copytree(out / "smoke", root / "smoke")
    plan = run_cli(["+experiment=smoke", "study=smoke_again", f"output_root={root}", "dry_run=true"], cwd=work)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert plan.stdout.count("reuse:smoke") == 8
    r = run_cli(["+experiment=smoke", "study=smoke_again", f"output_root={root}"], cwd=work)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Reusing 8 of 8 cells that smoke (8) already measured" in r.stdout
    assert "Nothing left to measure" in r.stdout
    measured = pd.read_parquet(root / "smoke" / "cells")
    reused = pd.read_parquet(root / "smoke_again" / "cells")
    assert set(reused.study) == {"smoke_again"} and set(measured.study) == {"smoke"}
    cols = ["cell_id", "run_id", "repetition", "tok_s"]
    pd.testing.assert_frame_equal(reused[cols].sort_values(cols).reset_index(drop=True),
                                  measured[cols].sort_values(cols).reset_index(drop=True))
    assert (root / "smoke_again" / "report" / "report.md").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("smoke_again")
    children = [x for x in client.search_runs([exp.experiment_id]) if x.data.tags.get("ecosweep.role") == "cell"]
    assert sorted(c.data.tags["ecosweep.cell_id"] for c in children) == sorted(reused.cell_id.unique())
    # reuse_cells=false measures them again (dry run: listed as todo)
    fresh = run_cli(["+experiment=smoke", "study=third", f"output_root={root}", "dry_run=true", "reuse_cells=false"],
                    cwd=work)
    assert fresh.stdout.count(" todo ") == 8 and "reuse:" not in fresh.stdout


def test_comparison_lanes_reuse_another_study_only_whole_and_from_one_device(smoke_study, tmp_path):
    """With ray.one_gpu_per=comparison a lane's cells are copied only when all of them can be, from
    results taken on one device; otherwise they are measured again beside the rest of the lane."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    work, out, _ = smoke_study
    root = tmp_path / "outputs"
    shutil.copytree(out / "smoke", root / "smoke")

    def plan(*overrides):
        r = run_cli(["+experiment=smoke", "study=other", f"output_root={root}", "dry_run=true", *overrides], cwd=work)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return r.stdout

    # the smoke grid is one lane (only quantization and batch size vary), complete in smoke: reused whole
    assert plan("ray.one_gpu_per=comparison").count("reuse:smoke") == 8
    # bf16 is not measured anywhere: the lane is measured whole, fp32 again beside it
    widened = plan("ray.one_gpu_per=comparison", "quantization=fp32,bf16")
    assert widened.count("todo:smoke") == 2 and widened.count(" todo ") == 2 and "reuse:" not in widened
    assert "CPU cells reserve no GPU" in widened
    on_gpus = plan("ray.one_gpu_per=comparison", "quantization=fp32,bf16", "ray.gpus_per_cell=1")
    assert "1 lane(s)" in on_gpus and "cells per lane: 4 on 1 GPU)" in on_gpus
    assert plan("quantization=fp32,bf16").count("reuse:smoke") == 2  # per-cell placement reuses what it can
    # a complete lane measured on two devices is measured again too
    for i, path in enumerate(sorted((root / "smoke" / "cells").glob("*.parquet"))[:2]):
        table = pq.read_table(path)
        column = table.schema.get_field_index("gpu_uuid")
        table = table.set_column(column, "gpu_uuid", pa.array([f"GPU-{i}"] * len(table), pa.string()))
        pq.write_table(table, path)
    assert plan("ray.one_gpu_per=comparison").count("todo:smoke") == 8


def test_driver_timing_accounts_for_the_wall_time_around_the_cells(smoke_study):
    import json

    from ecosweep.run.orchestrate import DRIVER_PHASES

    work, out, r = smoke_study
    runs = list((out / "smoke" / "runs").glob("*.json"))
    assert len(runs) == 1
    timing = json.loads(runs[0].read_text())
    df = pd.read_parquet(out / "smoke" / "cells")
    assert timing["run_id"] == df.run_id.iloc[0] and timing["cells_measured"] == 8
    phases = [name for name, _, _ in DRIVER_PHASES]
    assert set(phases) <= set(timing)
    assert all(timing[p] >= 0 for p in phases)
    assert sum(timing[p] for p in phases) == pytest.approx(timing["wall_s"], abs=1e-6)  # consecutive marks
    assert timing["cells_s"] > timing["ray_start_s"] > 0
    assert f"Driver: {timing['wall_s']:.1f} s wall" in r.stdout


def test_every_second_of_each_cell_is_in_a_named_phase_and_references_were_computed_once(smoke_study):
    """The timing file's named phases sum to the cell's wall time within 1 %; per batch size one quantized cell
    computed the fidelity reference and the other two read it (reuse.fidelity_reference)."""
    from ecosweep.results.timing import PHASE_NAMES, read_timings

    work, out, _ = smoke_study
    timings = read_timings(out / "smoke" / "timings")
    assert len(timings) == 8
    for t in timings:
        named = sum(t[name] for name in PHASE_NAMES if name != "other_s")
        assert abs(named - t["wall_s"]) <= 0.01 * t["wall_s"], (t["label"], named, t["wall_s"])
        assert t["windows_s"] > 0 and t["load_s"] > 0 and t["start_s"] > 0
        parts = t["imports_detail_s"]  # per library, inside imports_s; a fresh process per cell imports them all
        assert {"torch", "scipy.special", "transformers", "modeling_llama"} <= set(parts), parts
        assert ("bitsandbytes" in parts) == t["label"].split("/")[1].startswith(("nf4", "int8", "fp4")), t["label"]
        assert 0 < sum(parts.values()) <= t["imports_s"] + 1e-6
    df = pd.read_parquet(out / "smoke" / "cells")
    quantized = df[df.quantization != "fp32"].groupby(["batch_size", "cell_id"]).first().reset_index()
    for _, cells in quantized.groupby("batch_size"):
        assert sorted(cells.fidelity_reference_source) == ["computed", "reused", "reused"]
        computed_by = cells[cells.fidelity_reference_source == "computed"].cell_id.iloc[0]
        assert set(cells.fidelity_reference_cell_id) == {computed_by}
