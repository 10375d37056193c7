"""Every committed report's comparisons rebuild from its committed inputs to the numbers it holds: a change to
the analysis that moves a published number shows up here (rebuild with experiments/rebuild_reports.sh and say why
in the commit)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecosweep.analysis.comparisons import comparisons
from ecosweep.analysis.inputs import load_inputs
from ecosweep.analysis.report import _metric_and_baseline

from conftest import REPO

REPORTS = sorted(p.parent for p in (REPO / "experiments").rglob("report/comparisons.csv"))


def report_inputs(report: Path) -> list:
    text = (report / "report.md").read_text()
    block = text.split("Inputs:", 1)[1].split("\n## ", 1)[0]
    return [Path(m) for m in re.findall(r"^- `(.*)`$", block, flags=re.M)]  # relative to the repository root


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: str(p.relative_to(REPO / "experiments").parent))
def test_committed_comparisons_rebuild_to_the_same_numbers(report, monkeypatch):
    monkeypatch.chdir(REPO)  # the inputs' paths as rebuild_reports.sh gives them (they are the 'source' column)
    inputs = report_inputs(report)
    assert inputs and all(p.exists() for p in inputs), inputs
    configs = load_inputs(inputs)
    metric, baseline, _ = _metric_and_baseline(configs, "energy_j_per_1k_tok", "fp16")
    rebuilt = comparisons(configs, baseline, metric)
    if (report / "comparisons.csv").stat().st_size <= 1:  # a study without a baseline to compare with
        assert rebuilt.empty
        return
    committed = pd.read_csv(report / "comparisons.csv")
    assert len(rebuilt) == len(committed)
    if committed.empty:
        return
    rebuilt = pd.read_csv(pd.io.common.StringIO(rebuilt.to_csv(index=False)))  # through CSV, as committed
    assert list(rebuilt.columns) == list(committed.columns)
    keys = [c for c in committed.columns if not pd.api.types.is_numeric_dtype(committed[c])]
    rebuilt = rebuilt.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)
    committed = committed.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)
    for column in committed.columns:
        a, b = rebuilt[column], committed[column]
        if pd.api.types.is_numeric_dtype(b) and pd.api.types.is_numeric_dtype(a):
            assert np.allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-9, atol=1e-12, equal_nan=True), column
        else:
            assert a.astype(str).tolist() == b.astype(str).tolist(), column
