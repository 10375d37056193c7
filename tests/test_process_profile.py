"""profile_process=true: cProfile of the cell's own process outside its measurement, stored beside its timing
file — where the seconds before and after the windows go, and nothing from inside them."""

from __future__ import annotations

from ecosweep.cells import plan_cells
from ecosweep.plan import store_for
from ecosweep.run import worker
from ecosweep.run.orchestrate import persist_outcome

from conftest import compose


def cell(tmp_path, *extra):
    overrides = ["hardware=cpu", "engine=graph", "measurement=quick", "repetitions=2", "warmup=1",
                 "input_tokens=8", "output_tokens=4", f"output_root={tmp_path}", *extra]
    return plan_cells([compose(overrides)])[0]


def test_the_profile_holds_the_preparation_and_none_of_the_measurement(tmp_path):
    c = cell(tmp_path, "profile_process=true")
    outcome = worker.execute_cell(c)
    assert outcome.status == "ok", outcome.error
    table = outcome.process_profile
    assert table.startswith("cProfile of the cell's process outside its warm-up")
    for prepared in ("prepare_workload", "load_model", "check_tokens"):  # the preparation, by function
        assert prepared in table
    for measured in ("_repetition", "_warm_up", "_settle_and_baseline"):  # paused from warm-up to the last window
        assert measured not in table
    persist_outcome(c, outcome)
    path = store_for(c).process_profile_path(c.id)
    assert path.name == f"{c.id}.profile.txt" and path.read_text() == table


def test_without_the_setting_nothing_is_profiled_or_stored(tmp_path):
    c = cell(tmp_path)
    outcome = worker.execute_cell(c)
    assert outcome.status == "ok" and outcome.process_profile is None
    persist_outcome(c, outcome)
    assert not store_for(c).process_profile_path(c.id).exists()
    assert store_for(c).timing_path(c.id).exists()
