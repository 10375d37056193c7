"""The plan: each cell's state from what the output root holds, and the lanes of the cells to measure."""

from __future__ import annotations

from ecosweep.cells import plan_cells
from ecosweep.plan import CellState, build_plan, store_for
from ecosweep.results.schema import rows_to_table
from ecosweep.results.store import StudyStore

from conftest import compose


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


def test_the_plan_carries_the_commands_run_wide_settings_once(tmp_path):
    """How the command runs (dry run, tracking, report settings, Ray, progress) is read into the plan once; the
    cells agree on it (a sweep that varies it is refused in plan_cells), and nothing reads it from a cell."""
    cells = _cells(tmp_path, "tracking.enabled=false", "ray.progress=plain", "ray.num_cpus=3",
                   "report.grid_gco2e_per_kwh=56", "dry_run=true")
    options = build_plan(cells).options
    assert (options.dry_run, options.tracking.enabled, options.progress, options.ray_num_cpus) == (True, False, "plain", 3)
    assert options.report.grid_gco2e_per_kwh == 56 and options.ray_address is None
