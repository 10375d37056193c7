"""Cell ids: stable, independent of override order, sensitive to what is measured only."""

from __future__ import annotations

from conftest import compose
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
    import subprocess, sys, textwrap
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
