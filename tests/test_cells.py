"""Cells and their ids: stable, independent of override order, sensitive to what is measured only; every
committed cell under the id it recomputes to; the engines' ids kept across the compiled engine; and study
folders of an older version's ids, refused until migrated, then done."""

from __future__ import annotations

import pytest

from ecosweep.cells import cell_id, plan_cells, to_settings
from ecosweep.config.compose import load_cell_config
from ecosweep.lanes import group_lanes, lane_key

from conftest import REPO, compose


def cid(overrides):
    return cell_id(to_settings(compose(overrides)))


def test_cell_id_is_independent_of_override_order():
    a = cid(["quantization=nf4", "batch_size=4", "output_tokens=8"])
    b = cid(["output_tokens=8", "batch_size=4", "quantization=nf4"])
    assert a == b and len(a) == 12


def test_cell_id_is_stable_across_processes():
    # a hash of sorted JSON: the same value in any Python process (no hash randomisation)
    assert cid([]) == cid([])
    import subprocess
    import sys
    import textwrap
    code = textwrap.dedent("""
        import sys; sys.path.insert(0, 'tests')
        from conftest import compose
        from ecosweep.cells import cell_id, to_settings
        print(cell_id(to_settings(compose([]))))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", **__import__("os").environ})
    assert out.stdout.strip() == cid([])


def test_cell_id_changes_with_what_is_measured():
    base = cid([])
    for override in ("batch_size=2", "quantization=int8", "model=TinyLlama-1.1B", "input_tokens=64",
                     "hardware=cpu", "repetitions=5", "measurement.min_window_s=1", "seed=1", "weights=pretrained"):
        assert cid([override]) != base, override


def test_cell_id_ignores_where_results_go():
    base = cid([])
    for override in ("study=other", "output_root=/tmp/elsewhere", "tracking=none", "ray.max_concurrent_cpu_cells=2"):
        assert cid([override]) == base, override


def test_plan_dedupes_identical_cells_and_keeps_order():
    cells = plan_cells([compose(["batch_size=2"]), compose(["batch_size=1"]), compose(["batch_size=2"])])
    assert [c.settings.batch_size for c in cells] == [2, 1]
    assert cells[0].label == "tiny-llama/fp32/bs2/in128/out64"


def test_cell_id_ignores_how_cells_share_gpus():
    assert cid(["ray.one_gpu_per=comparison"]) == cid(["ray.one_gpu_per=study"]) == cid([])


def grid(*overrides):
    """Every combination of quantization x batch size x input tokens, with common overrides."""
    return plan_cells([compose([f"quantization={q}", f"batch_size={b}", f"input_tokens={i}", *overrides])
                       for i in (8, 16) for q in ("fp16", "int8") for b in (1, 4)])


def test_comparison_lanes_hold_the_cells_a_comparison_needs():
    cells = grid("ray.one_gpu_per=comparison", "hardware=h100")
    keys = {c.id: lane_key(c) for c in cells}
    by_tokens = {}
    for c in cells:
        by_tokens.setdefault(c.settings.input_tokens, set()).add(keys[c.id])
    # precision and batch size vary inside a lane; anything else measured starts a new one
    assert {t: len(k) for t, k in by_tokens.items()} == {8: 1, 16: 1} and by_tokens[8] != by_tokens[16]
    lanes = group_lanes(cells, cluster_gpus=2)
    assert [len(lane.cells) for lane in lanes] == [4, 4] and {lane.gpus for lane in lanes} == {1.0}
    assert [c.settings.input_tokens for c in lanes[0].cells] == [8] * 4  # first-seen order kept
    assert [c.id for lane in lanes for c in lane.cells] == [c.id for c in cells]


def test_study_lane_holds_every_gpu_cell_and_cell_mode_none():
    study = group_lanes(grid("ray.one_gpu_per=study", "hardware=h100"), cluster_gpus=8)
    assert len(study) == 1 and len(study[0].cells) == 8
    per_cell = group_lanes(grid("hardware=h100"), cluster_gpus=8)
    assert len(per_cell) == 8 and all(len(lane.cells) == 1 for lane in per_cell)


def test_cpu_cells_reserve_no_device_so_each_is_its_own_lane():
    lanes = group_lanes(grid("ray.one_gpu_per=comparison", "hardware=cpu"), cluster_gpus=0)
    assert len(lanes) == 8 and all(len(lane.cells) == 1 and lane.gpus == 0 for lane in lanes)
    # an explicit GPU reservation (logical GPUs, as the parallel tests use) makes them lane cells
    lanes = group_lanes(grid("ray.one_gpu_per=comparison", "hardware=cpu", "ray.gpus_per_cell=1"), cluster_gpus=2)
    assert len(lanes) == 2


def test_a_sweep_over_a_run_wide_setting_is_refused_with_the_values():
    import pytest

    from ecosweep.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        plan_cells([compose(["batch_size=1", "tracking.uri=http://a:5000"]),
                    compose(["batch_size=2", "tracking.uri=http://b:5000"])])
    text = str(err.value)
    assert "tracking takes one value per command" in text and "http://a:5000" in text and "http://b:5000" in text
    with pytest.raises(ConfigError, match="ray.progress takes one value per command"):
        plan_cells([compose(["batch_size=1", "ray.progress=plain"]), compose(["batch_size=2", "ray.progress=off"])])
    assert len(plan_cells([compose(["batch_size=1"]), compose(["batch_size=2"])])) == 2  # the usual sweep


def test_a_sweep_that_only_moves_cells_to_another_study_is_refused_once_per_study():
    """`-m study=a,b batch_size=1,2`: study b's cells are study a's (the id hashes what is measured), and one
    command measures a cell once, so b would silently get nothing: refused, one sentence, naming both studies
    and the count. A repeat within one study is dropped quietly."""
    import pytest

    from ecosweep.errors import ConfigError

    configs = [compose([f"study={s}", f"batch_size={b}"]) for s in ("a", "b") for b in (1, 2)]
    with pytest.raises(ConfigError) as err:
        plan_cells(configs)
    assert len(err.value.problems) == 1
    text = err.value.problems[0]
    assert "study='b'" in text and "repeats 2 cell(s) of study='a'" in text and "own command" in text
    assert len(plan_cells([compose(["batch_size=1"]), compose(["batch_size=1"])])) == 1


def settings(*overrides):
    return to_settings(compose(["hardware=cpu", *overrides]))


def test_the_default_cells_keep_their_ids():
    """Ids printed by the code before this version (commit 266f28f): every field added since is left out of an
    id at its default (the compiled engine's fields too, for the graph engine)."""
    assert cid([]) == "d3880b80980e"
    assert cid(["model=Mistral-7B", "quantization=fp16", "hardware=h100"]) == "99993a93238d"
    assert cid(["engine=graph", "hardware=cpu"]) == "644964af4129"
    assert cid(["engine=eager"]) == cid([])


def test_a_corrected_datasheet_figure_keeps_the_cell_id():
    """The hardware profile's datasheet figures are analysis inputs, not part of what a cell measures."""
    h100 = ["model=Mistral-7B", "hardware=h100"]
    base = cid(h100)
    for fix in ("hardware.tdp_w=690", "hardware.peak_mem_bandwidth_gb_s=3000", "hardware.memory_gb=94",
                "hardware.peak_fp16_tflops=900", "hardware.compute_capability=9.1"):
        assert cid([*h100, fix]) == base, fix
    assert cid(["model=Mistral-7B", "hardware=h200"]) != base  # another GPU


def test_engine_enters_the_id_and_the_label():
    eager, graph = settings(), settings("engine=graph")
    assert cell_id(graph) != cell_id(eager)
    assert cell_id(settings("engine=graph", "engine.attn_implementation=sdpa")) != cell_id(graph)
    assert cell_id(settings("engine=compiled")) not in (cell_id(graph), cell_id(eager))
    cells = plan_cells([compose(["hardware=cpu", "engine=graph"]), compose(["hardware=cpu"])])
    assert [c.label for c in cells] == ["tiny-llama/fp32/graph/bs1/in128/out64", "tiny-llama/fp32/bs1/in128/out64"]


def committed_configs():
    """Every committed cell's config, but those of the first outlier planting (planting_v1): their ids hash the
    planting version they were planted with, which the planter has moved past (they are kept as measured)."""
    return sorted(p for p in (REPO / "experiments").glob("**/configs/*.yaml") if "planting_v1" not in p.parts)


def test_every_committed_cell_recomputes_to_the_id_it_is_stored_under():
    """Eager, graph and the old compiled (now hf_static) cells keep their ids (the engine fields added with the
    compiled engine are left out of an id at their defaults), and none is left under an older version's id."""
    paths = committed_configs()
    assert len(paths) > 300
    kinds = set()
    for path in paths:
        s = load_cell_config(path)
        kinds.add(s.engine.kind)
        assert path.stem == cell_id(s), path
    assert {"eager", "graph", "compiled"} <= kinds  # 'compiled' as stored: transformers' static cache


def test_the_compiled_engine_and_its_settings_enter_the_id_and_old_engines_keep_theirs():
    graph, compiled, hf_static = settings("engine=graph"), settings("engine=compiled"), settings("engine=hf_static")
    assert len({cell_id(graph), cell_id(compiled), cell_id(hf_static), cell_id(settings())}) == 4
    for override in ("engine.compile.max_autotune=true", "engine.compile.coordinate_descent_tuning=false",
                     "engine.compile.cudagraphs=none", "engine.compile.prefill=true", "engine.decode_model=ecosweep",
                     "+engine.compile.inductor_options.epilogue_fusion=false"):
        assert cell_id(settings("engine=compiled", override)) != cell_id(compiled), override
    # naming the defaults of the new fields on an old engine changes nothing
    assert cell_id(settings("engine=graph", "engine.decode_model=transformers")) == cell_id(graph)




def legacy_copy(tmp_path):
    """A committed study copied, with its cells stored under the ids of before 2026-11-27 (as it was committed
    until the migration): (folder, {old id: id})."""
    import shutil

    from ecosweep.migrate import _with_datasheet
    from ecosweep.results.store import StudyStore

    committed = REPO / "experiments" / "int8_paradox" / "h100"
    folder = tmp_path / "int8_paradox"
    shutil.copytree(committed, folder, ignore=shutil.ignore_patterns("report", "README.md"))
    store, renames = StudyStore(tmp_path, "int8_paradox"), {}
    for path in sorted(folder.glob("configs/*.yaml")):
        old = _with_datasheet(load_cell_config(path))
        store.rename_cell(path.stem, old)
        renames[old] = path.stem
    return folder, renames


def test_a_study_of_an_older_versions_ids_is_refused_until_migrated_then_done_and_reports_the_same(tmp_path):
    import dataclasses

    import pandas as pd

    from ecosweep.analysis.report import build_report
    from ecosweep.cells import Cell
    from ecosweep.errors import ConfigError
    from ecosweep.migrate import migrate_study, unmigrated_cells
    from ecosweep.plan import CellState, build_plan
    from ecosweep.run.preflight import check_before_running

    folder, renames = legacy_copy(tmp_path)
    assert {old for old, _, _ in unmigrated_cells(folder)} == set(renames) and len(renames) == 12
    cells = [Cell(cell_id(s), s) for s in (dataclasses.replace(load_cell_config(p), output_root=str(tmp_path))
                                            for p in sorted((REPO / "experiments/int8_paradox/h100").glob("configs/*.yaml")))]
    assert {e.state for e in build_plan(cells).entries} == {CellState.TODO}  # not found under the old ids...
    with pytest.raises(ConfigError, match="python -m ecosweep migrate"):  # ...so the command refuses to measure them
        check_before_running(cells, 12)
    assert sorted(migrate_study(folder)) == sorted(renames.items())
    assert migrate_study(folder) == [] and unmigrated_cells(folder) == []  # again: nothing left to do
    assert {e.state for e in build_plan(cells).entries} == {CellState.DONE}
    build_report([REPO / "experiments/int8_paradox/h100"], tmp_path / "before")
    build_report([folder], tmp_path / "after")
    columns = ["model", "quantization", "batch_size", "baseline_mean", "mean", "delta_pct", "p", "same_device"]
    before, after = (pd.read_csv(tmp_path / d / "comparisons.csv")[columns].sort_values(columns[:3])
                     .reset_index(drop=True) for d in ("before", "after"))
    pd.testing.assert_frame_equal(before, after)


def test_migrate_from_the_command_line_lists_then_renames(tmp_path):
    from conftest import run_cli

    folder, renames = legacy_copy(tmp_path)
    listed = run_cli(["migrate", str(folder), "--dry-run"], cwd=tmp_path)
    assert listed.returncode == 0 and "12 cell(s) to rename" in listed.stdout
    assert all(f"{old} -> {new}" in listed.stdout for old, new in renames.items())
    done = run_cli(["migrate", str(folder)], cwd=tmp_path)
    assert done.returncode == 0 and "renamed 12 cell(s)" in done.stdout
    assert {p.stem for p in folder.glob("cells/*.parquet")} == set(renames.values())
    bad = run_cli(["migrate", str(tmp_path / "nowhere")], cwd=tmp_path)
    assert bad.returncode == 2 and "not a study folder" in bad.stderr
