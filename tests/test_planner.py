"""Cell ids: stable, independent of override order, sensitive to what is measured only."""

from __future__ import annotations

from conftest import compose
from ecosweep.plan import group_lanes, lane_key
from ecosweep.planner import cell_id, plan_cells, to_settings


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
        from ecosweep.planner import cell_id, to_settings
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
