"""One process per lane (ray.process_per=lane, #34): a lane's cells measured in turn by one process, imports and
context paid once, nothing of one cell left for the next, and the same results as a fresh process per cell."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ecosweep.cells import Cell
from ecosweep.run.lane_process import LaneProcess
from ecosweep.run.worker import CRASH_ENV, CellProcessDied, run_in_fresh_process

from conftest import compose_cell, run_cli

pytestmark = [pytest.mark.slow]

TINY = ["hardware=cpu", "measurement=quick", "repetitions=2", "input_tokens=8", "output_tokens=4", "tracking=none",
        "engine=graph"]


def cell(*overrides: str) -> Cell:
    return compose_cell([*TINY, *overrides])


def test_a_lane_process_measures_its_cells_in_turn_keeps_nothing_of_the_last_and_agrees_with_a_fresh_one():
    cells = [cell("quantization=fp32", "seed=3"), cell("quantization=nf4", "seed=3"), cell("quantization=fp32")]
    lane = LaneProcess()
    try:
        outcomes = [lane.run(c, "run") for c in cells]
    finally:
        lane.close()
    fresh = run_in_fresh_process(cells[1], "run")
    assert [o.status for o in outcomes + [fresh]] == ["ok"] * 4, [o.error for o in outcomes + [fresh]]
    assert len({o.process_id for o in outcomes}) == 1 and fresh.process_id != outcomes[0].process_id
    assert [o.rows[0]["process_earlier_cells_count"] for o in outcomes] == [0, 1, 2]
    assert all(o.rows[0]["cuda_allocated_mib_at_start"] == 0.0 for o in outcomes)
    # torch and transformers were imported once, by the first cell: the third cell (fp32 again, nothing new to
    # import; the second one's nf4 imported bitsandbytes) only looks them up. Seconds against milliseconds, so the
    # factor of five holds on the most loaded host.
    assert outcomes[2].phases_s["imports_s"] < 0.2 * outcomes[0].phases_s["imports_s"]
    # the second cell in the lane process gives what it gives in a process of its own
    a, b = pd.DataFrame(fresh.rows), pd.DataFrame(outcomes[1].rows)
    for column in ("quantization", "tokens_generated", "engine_tokens_equal", "engine_token_agreement_share",
                   "fidelity_greedy_agreement_share", "fidelity_kl_nats_mean", "fidelity_max_abs_logit_error",
                   "weights_source", "params_count"):
        assert a[column].tolist() == b[column].tolist(), column
    assert list(a.process_earlier_cells_count) == [0, 0] and list(b.process_earlier_cells_count) == [1, 1]


def test_a_lane_process_that_dies_is_replaced_for_the_next_cell(monkeypatch):
    doomed, next_cell = cell("quantization=bf16"), cell("quantization=fp32")
    monkeypatch.setenv(CRASH_ENV, "/bf16/")  # that cell's process exits at once (os._exit)
    lane = LaneProcess()
    try:
        with pytest.raises(CellProcessDied, match="lane process"):
            lane.run(doomed, "run")
        outcome = lane.run(next_cell, "run")
    finally:
        lane.close()
    assert outcome.status == "ok" and outcome.rows[0]["process_earlier_cells_count"] == 0


@pytest.mark.integration
def test_shared_lanes_run_in_one_process_through_ray_which_goes_on_to_the_next_lane_with_reuse_actors(tmp_path):
    """Two comparisons (two lanes of two cells, fp32 and nf4) on one GPU, one after the other, under
    ray.process_per=lane: one process measures each lane's cells in turn, and with ray.reuse_actors the second lane
    is measured by the first lane's actor and lane process (imports paid once; rows count the lanes and cells
    before); each lane's cells stay on one GPU. (Without reuse_actors each lane has an actor and processes of its
    own: test_parallel's comparison lanes.)"""
    out = tmp_path / "outputs"
    r = run_cli(["-m", "quantization=fp32,nf4", "input_tokens=8,16", *[o for o in TINY if not o.startswith("input")],
                 "study=lanes", "ray.num_gpus=1", "ray.num_cpus=2", "ray.gpus_per_cell=1",
                 "ray.one_gpu_per=comparison", "ray.process_per=lane", "ray.reuse_actors=true",
                 "ray.progress=plain", f"output_root={out}"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    df = pd.read_parquet(out / "lanes" / "cells")
    assert (df.status == "ok").all() and df.cell_id.nunique() == 4
    cells = df.groupby("cell_id").first().sort_values("timestamp_utc")
    assert cells.groupby("input_tokens").cuda_visible_devices.nunique().eq(1).all()
    timings = {t["cell_id"]: t for t in (json.loads(p.read_text()) for p in (out / "lanes" / "timings").glob("*.json"))}
    first_lane, second_lane = (group.index for _, group in cells.groupby("input_tokens", sort=False))
    assert len({timings[c]["process_id"] for c in cells.index}) == 1
    assert list(cells.process_earlier_cells_count) == [0, 1, 2, 3]
    assert list(cells.loc[first_lane].actor_earlier_lanes_count) == [0, 0]
    assert list(cells.loc[second_lane].actor_earlier_lanes_count) == [1, 1]
    # the second lane's first cell found everything imported
    assert timings[second_lane[0]]["imports_s"] < 0.2 * timings[first_lane[0]]["imports_s"]


def test_the_actor_side_imports_neither_torch_nor_scipy_and_a_cell_measures_without_scipy_stats():
    """The Ray actor that hands a lane's cells to their processes imports ecosweep's scheduler and workers only:
    torch, transformers and scipy are the cell process's imports (timed as its ``imports_s``), not a second time in
    the actor before the lane's first cell starts. And a whole cell, its protocol's CIs included, needs scipy.special
    only, never scipy.stats (0.6-1.5 s more of every cell process's imports)."""
    import subprocess
    import sys
    from pathlib import Path

    heavy = "sorted(m for m in ('torch', 'transformers', 'scipy', 'scipy.stats', 'pandas') if m in sys.modules)"
    code = (f"import sys, ecosweep.run.scheduler, ecosweep.run.lane_process, ecosweep.run.prepared_process; "
            f"print({heavy}); "
            f"from conftest import compose_cell; from ecosweep.run.worker import execute_cell; "
            f"o = execute_cell(compose_cell({TINY + ['quantization=fp32']!r}), 'run'); "
            f"print(o.status, 'scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent).stdout.splitlines()
    assert out[0] == "[]"
    assert out[-1] == "ok False"
