"""A fresh process per cell, imported ahead (ray.prepare_next_process, #34): the lane's next process imports while
a cell runs, never during that cell's warm-up or windows, and the next cell begins in a process of its own that
gives what a process started for it gives."""

from __future__ import annotations

import pandas as pd
import pytest

from ecosweep.cells import Cell
from ecosweep.run.prepared_process import SLOW_IMPORTS_ENV, PreparedProcesses
from ecosweep.run.worker import CRASH_ENV, CellProcessDied, run_in_fresh_process

from conftest import compose_cell

pytestmark = [pytest.mark.slow]

TINY = ["hardware=cpu", "measurement=quick", "repetitions=2", "input_tokens=8", "output_tokens=4", "tracking=none"]


def cell(*overrides: str) -> Cell:
    return compose_cell([*TINY, *overrides])


def test_the_next_process_imports_while_a_cell_runs_never_in_its_windows_and_measures_the_same(monkeypatch):
    monkeypatch.setenv(SLOW_IMPORTS_ENV, "8")  # the next process ready 8 s late: after the first cell would warm up
    cells = [cell("quantization=fp32", "seed=3"), cell("quantization=fp32")]
    prepared = PreparedProcesses()
    try:
        first = prepared.run(cells[0], "run", None, next_cell=cells[1])
        second = prepared.run(cells[1], "run", None, next_cell=None)
    finally:
        prepared.close()
    assert [first.status, second.status] == ["ok", "ok"], [first.error, second.error]
    assert first.process_id != second.process_id  # each cell in a process of its own
    assert [first.rows[0]["process_prepared"], second.rows[0]["process_prepared"]] == [False, True]
    ready = second.rows[0]["process_ready_unix_s"]
    assert second.rows[0]["process_prepared_imports_s"] >= 8
    # the second process was ready before the first cell's warm-up, so before every one of its windows ...
    assert ready <= min(r["timestamp_utc"].timestamp() for r in first.rows)
    assert first.phases_s["next_process_wait_s"] > 2  # ... because the first cell waited for it
    assert ready < second.started_unix_s and second.phases_s["next_process_wait_s"] < 0.5  # last of its lane
    # torch, transformers and the model's code were imported ahead: the cell itself only looks them up
    assert second.phases_s["imports_s"] < 0.2 * second.rows[0]["process_prepared_imports_s"]

    monkeypatch.delenv(SLOW_IMPORTS_ENV)
    fresh = run_in_fresh_process(cells[1], "run")
    a, b = pd.DataFrame(fresh.rows), pd.DataFrame(second.rows)
    for column in ("quantization", "tokens_generated", "fidelity_greedy_agreement_share", "fidelity_kl_nats_mean",
                   "weights_source", "params_count"):
        assert a[column].tolist() == b[column].tolist(), column
    assert not a.process_prepared.any() and a.process_prepared_imports_s.isna().all()


def test_a_cell_whose_process_dies_is_reported_and_the_next_cell_runs_in_the_process_prepared_for_it(monkeypatch):
    doomed, after = cell("quantization=bf16"), cell("quantization=fp32")
    monkeypatch.setenv(CRASH_ENV, "/bf16/")  # that cell's process exits at once (os._exit)
    prepared = PreparedProcesses()
    try:
        with pytest.raises(CellProcessDied, match="exited with code 17"):
            prepared.run(doomed, "run", None, next_cell=after)
        outcome = prepared.run(after, "run", None, next_cell=None)
    finally:
        prepared.close()
    assert outcome.status == "ok" and outcome.rows[0]["process_prepared"]
