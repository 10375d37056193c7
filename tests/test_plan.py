"""The plan: each cell's state from what the output root holds, and the lanes of the cells to measure."""

from __future__ import annotations

from conftest import compose
from ecosweep.plan import CellState, build_plan, store_for
from ecosweep.planner import plan_cells
from ecosweep.results.schema import rows_to_table
from ecosweep.results.store import StudyStore


def _store(store: StudyStore, cell_id: str, statuses, gpu_uuid=None) -> None:
    rows = [{"study": store.root.name, "cell_id": cell_id, "run_id": "r1", "repetition": i, "status": s,
             "gpu_uuid": gpu_uuid} for i, s in enumerate(statuses)]
    store.write_cell(cell_id, rows_to_table(rows))


def _cells(tmp_path, *overrides):
    return plan_cells([compose([f"output_root={tmp_path}", "study=mine", "hardware=h100", f"quantization={q}",
                                f"batch_size={b}", *overrides]) for q in ("fp16", "nf4") for b in (1, 4)])


def test_each_cell_is_done_reused_damaged_or_to_measure(tmp_path):
    fp16_1, fp16_4, nf4_1, nf4_4 = cells = _cells(tmp_path)
    _store(store_for(fp16_1), fp16_1.id, ["ok", "ok"])            # complete here
    _store(StudyStore(tmp_path, "other"), fp16_4.id, ["ok"])     # complete in another study
    store_for(nf4_1).cell_path(nf4_1.id).parent.mkdir(parents=True, exist_ok=True)
    store_for(nf4_1).cell_path(nf4_1.id).write_bytes(b"not parquet")  # damaged
    plan = build_plan(cells)
    assert [e.state for e in plan.entries] == [CellState.DONE, CellState.REUSE, CellState.DAMAGED, CellState.TODO]
    assert [e.label() for e in plan.entries] == ["done", "reuse:other", "damaged", "todo"]
    assert plan.to_measure == [nf4_1, nf4_4] and len(plan.having(CellState.REUSE)) == 1
    # nothing is reused when the study says so
    assert build_plan(_cells(tmp_path, "reuse_cells=false")).entries[1].state is CellState.TODO


def test_a_lane_reuses_another_study_only_whole_and_from_one_device(tmp_path):
    cells = _cells(tmp_path, "ray.one_gpu_per=comparison")
    other = StudyStore(tmp_path, "other")
    _store(other, cells[0].id, ["ok"], "GPU-a")
    plan = build_plan(cells)  # the rest of the lane is to measure: its one reusable cell is measured again
    assert [e.label() for e in plan.entries] == ["todo:other", "todo", "todo", "todo"]
    assert plan.entries[0].state is CellState.REMEASURE and len(plan.to_measure) == 4
    assert [len(lane.cells) for lane in plan.lanes(cluster_gpus=2)] == [4]
    for cell in cells[1:]:
        _store(other, cell.id, ["ok"], "GPU-a")
    assert {e.state for e in build_plan(cells).entries} == {CellState.REUSE}
    _store(other, cells[3].id, ["ok"], "GPU-b")  # the whole lane, but from two devices
    assert {e.state for e in build_plan(cells).entries} == {CellState.REMEASURE}


def test_a_committed_study_stored_under_legacy_ids_is_done_renamed_and_reports_the_same(tmp_path):
    """The one-off id map: a study folder written before datasheet figures left the cell id (every committed
    H100 study) plans as done under its old ids, is renamed to the new ids on the next run, and reports the
    same figures."""
    import dataclasses
    import io
    import shutil

    import pandas as pd

    from conftest import REPO
    from ecosweep.analysis.report import build_report
    from ecosweep.config.compose import load_cell_config
    from ecosweep.planner import Cell, cell_id, legacy_cell_id
    from ecosweep.results.store import read_results
    from ecosweep.study import _rename_legacy_cells

    committed = REPO / "experiments" / "int8_paradox" / "h100"
    folder = tmp_path / "int8_paradox"
    shutil.copytree(committed, folder, ignore=shutil.ignore_patterns("report", "README.md"))
    cells = []
    for path in sorted(committed.glob("configs/*.yaml")):
        s = dataclasses.replace(load_cell_config(path), output_root=str(tmp_path), study="int8_paradox")
        cells.append(Cell(cell_id(s), s, legacy_cell_id(s)))
    assert all(c.id != c.legacy_id for c in cells) and {c.legacy_id for c in cells} == {
        p.stem for p in committed.glob("cells/*.parquet")}
    plan = build_plan(cells)
    assert {e.state for e in plan.entries} == {CellState.DONE} and all(e.legacy_here for e in plan.entries)
    assert plan.entries[0].label() == f"done (stored as {cells[0].legacy_id})"

    out = io.StringIO()
    _rename_legacy_cells(plan, out)
    assert f"Renamed {len(cells)} stored cell(s)" in out.getvalue()
    assert {p.stem for p in folder.glob("cells/*.parquet")} == {c.id for c in cells}
    assert {p.stem for p in folder.glob("configs/*.yaml")} == {c.id for c in cells}
    rows = read_results([folder]).to_pandas()
    assert set(rows.cell_id) == {c.id for c in cells}
    assert not any(e.legacy_here for e in build_plan(cells).entries)  # done, under the new ids now

    build_report([committed], tmp_path / "before")
    build_report([folder], tmp_path / "after")
    before, after = (pd.read_csv(tmp_path / d / "comparisons.csv") for d in ("before", "after"))
    columns = ["model", "quantization", "batch_size", "baseline_mean", "mean", "delta_pct", "p", "same_device"]
    def ordered(df):
        return df[columns].sort_values(columns[:3]).reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(before), ordered(after))


def test_the_plan_carries_the_commands_run_wide_settings_once(tmp_path):
    """How the command runs (dry run, tracking, report settings, Ray, progress) is read into the plan once; the
    cells agree on it (a sweep that varies it is refused in plan_cells), and nothing reads it from a cell."""
    cells = _cells(tmp_path, "tracking.enabled=false", "ray.progress=plain", "ray.num_cpus=3",
                   "report.grid_gco2e_per_kwh=56", "dry_run=true")
    options = build_plan(cells).options
    assert (options.dry_run, options.tracking.enabled, options.progress, options.ray_num_cpus) == (True, False, "plain", 3)
    assert options.report.grid_gco2e_per_kwh == 56 and options.ray_address is None
