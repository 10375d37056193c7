"""The smoke study end to end: Hydra -> Ray actors -> Parquet, then a resume that skips everything."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import run_cli
from ecosweep.results.schema import COLUMN_NAMES

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
    assert (df.tok_s > 0).all()
    assert (df.weights == "random").all() and (df.device == "cpu").all()
    # no energy source on this CPU: NaN with its label, never zero
    assert set(df.energy_source) <= {"none", "rapl"}
    assert df.loc[df.energy_source == "none", "energy_j"].isna().all()
    for cid in df.cell_id.unique():
        assert (out / "smoke" / "configs" / f"{cid}.yaml").exists()
    # the summary table lists every cell
    for cid in df.cell_id.unique():
        assert cid in r.stdout


def test_second_run_skips_every_cell(smoke_study):
    work, out, _ = smoke_study
    before = {p.name: p.stat().st_mtime_ns for p in (out / "smoke" / "cells").iterdir()}
    again = run_cli(["+experiment=smoke", f"output_root={out}"], cwd=work)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Skipping 8 of 8 cells already complete" in again.stdout
    assert "Nothing to run" in again.stdout
    after = {p.name: p.stat().st_mtime_ns for p in (out / "smoke" / "cells").iterdir()}
    assert before == after
