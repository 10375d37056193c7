"""The GPU results committed under experiments/<study>/<gpu>/: what each holds, and that its report
rebuilds from it with the figures the README quotes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from ecosweep.analysis.report import build_report
from ecosweep.results.store import read_results

REPO = Path(__file__).resolve().parent.parent
STUDIES = ["nf4_crossover", "int8_paradox", "int8_ablation", "batch_size_sweep"]
RUNS = [(study, "h200") for study in STUDIES] + [(study, "h100") for study in STUDIES[:3]]
GPU_NAME = {"h100": "NVIDIA H100 80GB HBM3", "h200": "NVIDIA H200"}


def sweep_values(study: str) -> dict:
    params = OmegaConf.load(REPO / "conf" / "experiment" / f"{study}.yaml").hydra.sweeper.params
    return {k: [v.strip() for v in str(val).split(",")] for k, val in params.items()}


@pytest.mark.parametrize("study,gpu", RUNS)
def test_committed_study_holds_cells_of_its_own_grid(study, gpu):
    rows = read_results([REPO / "experiments" / study / gpu]).to_pandas()
    assert set(rows.study) == {study}
    assert (rows.status == "ok").all()
    assert set(rows.energy_source) == {"nvml_counter"}
    assert set(rows.weights) == {"random"}
    assert set(rows.device_name) == {GPU_NAME[gpu]}
    assert (rows.groupby("cell_id").size() == 5).all()  # the reduced protocol's 5 repetitions
    for column, allowed in sweep_values(study).items():  # model, quantization, batch_size: result columns too
        assert set(rows[column].astype(str)) <= set(allowed), (column, set(rows[column]))


@pytest.mark.parametrize("study,gpu", RUNS)
def test_committed_study_report_rebuilds(study, gpu, tmp_path):
    inputs = [REPO / "experiments" / study / gpu]
    if study == "int8_paradox":
        inputs.append(REPO / "experiments" / "published_rtx4090d" / "summary.csv")
    report = build_report(inputs, tmp_path / "report")
    assert report.exists() and (tmp_path / "report" / "figures").is_dir()
    if study == "batch_size_sweep":
        batch = pd.read_csv(tmp_path / "report" / "batch_scaling.csv")
        bs64 = batch[batch.batch_size == 64].iloc[0]
        # README, "Results on Hopper GPUs": energy per request -97.7 % from batch 1 to 64
        assert bs64.energy_per_request_change_pct == pytest.approx(-97.7, abs=0.05)
        assert bs64.p < 0.001
    else:
        comparisons = pd.read_csv(tmp_path / "report" / "comparisons.csv")
        measured = comparisons[comparisons.hardware == GPU_NAME[gpu]]
        expected = {"nf4_crossover": 4, "int8_paradox": 8, "int8_ablation": {"h200": 4, "h100": 6}[gpu]}[study]
        assert len(measured) == expected
    if study == "int8_paradox":
        mistral = comparisons[(comparisons.model == "Mistral-7B") & (comparisons.quantization == "int8")]
        by_hw = dict(zip(mistral.hardware, mistral.delta_pct))
        assert by_hw[GPU_NAME[gpu]] == pytest.approx({"h200": 208.9, "h100": 172.9}[gpu], abs=0.05)  # README table
        assert by_hw["RTX 4090D"] == pytest.approx(30.74, abs=0.01)    # published
    if (study, gpu) == ("int8_ablation", "h100"):
        pure = comparisons[comparisons.quantization == "int8_pure"].set_index("model").delta_pct
        assert pure["Yi-1.5-6B"] == pytest.approx(60.8, abs=0.05) and pure["Mistral-7B"] == pytest.approx(64.1, abs=0.05)


def test_h100_ablation_reuses_the_paradox_cells_it_shares():
    """fp16 and int8 cells of int8_ablation/h100 are int8_paradox/h100's measurements, not copies that drifted."""
    import json

    ablation = read_results([REPO / "experiments" / "int8_ablation" / "h100"]).to_pandas()
    paradox = read_results([REPO / "experiments" / "int8_paradox" / "h100"]).to_pandas()
    shared = ablation[ablation.quantization.isin(["fp16", "int8"])]
    assert shared.cell_id.nunique() == 8
    cols = ["cell_id", "run_id", "repetition", "energy_j", "tok_s"]
    same = paradox[paradox.cell_id.isin(shared.cell_id)][cols].sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(shared[cols].sort_values(cols).reset_index(drop=True), same)
    for cid in shared.cell_id.unique():
        timing = json.loads((REPO / "experiments" / "int8_ablation" / "h100" / "timings" / f"{cid}.json").read_text())
        assert timing["reused_from"] == "int8_paradox"


def test_scaling_summary_rebuilds_from_committed_runs(tmp_path):
    import argparse
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("scaling", REPO / "experiments" / "scaling" / "scaling.py")
    scaling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scaling)
    results = REPO / "experiments" / "scaling" / "results_h200x4_2026-11-26"
    scaling.summarize(argparse.Namespace(dirs=[results / f"s{n}" for n in (1, 2, 4)], out=tmp_path))
    runs = {r["gpus"]: r for r in json.loads((tmp_path / "summary.json").read_text())["runs"]}
    assert runs[2]["wall_within_bound"] and not runs[4]["wall_within_bound"]  # README: N=4 missed by 6 s
    assert runs[4]["wall_bound_s"] == pytest.approx(1.2 * runs[1]["wall_s"] / 4)
    assert runs[4]["cells_compared"] == 16 and runs[4]["cells_within_energy_tolerance"] == 7
    assert (tmp_path / "scaling.png").stat().st_size > 0
