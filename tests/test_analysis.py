"""Statistics against scipy, the published table reproduced, crossover, figures and report."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ecosweep.analysis import caveats, comparisons, crossover, inputs, scaling
from ecosweep.analysis.report import build_report
from ecosweep.stats import compare, holm, summarize, summarize_stats, welch

PUBLISHED = Path(__file__).resolve().parent.parent / "experiments" / "published_rtx4090d"


def test_summary_and_ci_match_scipy():
    x = [10.0, 11.0, 9.5, 10.5, 12.0]
    s = summarize(x)
    assert s.mean == pytest.approx(np.mean(x)) and s.sd == pytest.approx(np.std(x, ddof=1)) and s.n == 5
    low, high = stats.t.interval(0.95, 4, loc=np.mean(x), scale=stats.sem(x))
    assert (s.ci95_low, s.ci95_high) == (pytest.approx(low), pytest.approx(high))
    assert s.boot_ci95_low < s.mean < s.boot_ci95_high
    assert summarize(x).boot_ci95_low == s.boot_ci95_low  # deterministic


def test_welch_cohen_hedges_against_scipy_and_definitions():
    a = summarize_stats(100.0, 5.0, 10)
    b = summarize_stats(110.0, 8.0, 12)
    c = compare(a, b)
    ref = stats.ttest_ind_from_stats(110.0, 8.0, 12, 100.0, 5.0, 10, equal_var=False)
    assert c.t == pytest.approx(ref.statistic) and c.p == pytest.approx(ref.pvalue)
    assert c.delta_pct == pytest.approx(10.0)
    assert c.cohens_d == pytest.approx(10.0 / math.sqrt((25 + 64) / 2))
    assert c.hedges_g == pytest.approx(c.cohens_d * (1 - 3 / (4 * 22 - 9)))
    assert c.delta_pct_ci95_low < 10.0 < c.delta_pct_ci95_high
    t, df, p = welch(110.0, 8.0, 12, 100.0, 5.0, 10)
    assert df == pytest.approx((64 / 12 + 25 / 10) ** 2 / ((64 / 12) ** 2 / 11 + (25 / 10) ** 2 / 9))


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(holm([0.01, float("nan")])[1])


def test_published_rtx4090d_table_is_reproduced():
    raw = pd.read_csv(PUBLISHED / "summary_published_layout.csv")
    for path in (PUBLISHED / "summary.csv", PUBLISHED / "summary_published_layout.csv"):  # both layouts, no code change
        comp = comparisons.comparisons(inputs.load_inputs([path]))
        assert len(comp) == 8
        for _, c in comp.iterrows():
            fp16 = raw[(raw.model == c.model) & (raw.quantization == "fp16")].iloc[0]
            q = raw[(raw.model == c.model) & (raw.quantization == c.quantization)].iloc[0]
            published = round(100 * (q.energy_j_per_1k_tok_mean / fp16.energy_j_per_1k_tok_mean - 1), 1)
            assert round(c.delta_pct, 1) == published
            ref = stats.ttest_ind_from_stats(q.energy_j_per_1k_tok_mean, q.energy_j_per_1k_tok_std, q.n,
                                             fp16.energy_j_per_1k_tok_mean, fp16.energy_j_per_1k_tok_std, fp16.n,
                                             equal_var=False)
            assert c.t == pytest.approx(ref.statistic) and c.p == pytest.approx(ref.pvalue)
    int8 = comp[comp.quantization == "int8"].delta_pct
    assert 17 <= int8.min() and int8.max() <= 33.5  # the published "+17-33 %"


def test_crossover_finds_a_known_zero():
    params = [0.5, 1.0, 2.0, 4.0, 8.0]
    comp = pd.DataFrame({"hardware": "X", "quantization": "nf4", "params_b_nominal": params,
                         "delta_pct": [20 - 10 * math.log(p) + e for p, e in zip(params, [0.3, -0.2, 0.1, -0.3, 0.2])]})
    row = crossover.crossover(comp).iloc[0]
    assert row.crossover_params_b == pytest.approx(math.e ** 2, rel=0.05)
    assert row.crossover_ci_low_b < math.e ** 2 < row.crossover_ci_high_b
    assert row.verdict == "crossover in range"
    far = comp.assign(delta_pct=comp.delta_pct + 100)
    assert crossover.crossover(far).iloc[0].verdict == "no crossover in range"
    two = crossover.crossover(comp.iloc[[0, 4]]).iloc[0]
    assert two.verdict == "crossover in range (two model sizes: no CI)" and pd.isna(two.get("crossover_ci_low_b"))


def test_a_slope_inside_the_noise_places_no_crossover():
    """Δ% scattered around +2 % whatever the size: the fitted line crosses zero somewhere, but its slope is
    not distinguishable from zero, so the verdict says the fit is too flat (with the slope's p)."""
    params = [0.5, 1.0, 2.0, 4.0, 8.0]
    comp = pd.DataFrame({"hardware": "X", "quantization": "nf4", "params_b_nominal": params,
                         "delta_pct": [2 + e for e in (3.0, -2.5, 2.8, -3.1, 0.4)]})
    row = crossover.crossover(comp).iloc[0]
    assert row.slope_p > 0.5 and row.verdict.startswith("fit too flat to place a crossover (slope p = ")


def test_crossover_fits_each_batch_size_on_its_own():
    """Two batch sizes of the same precision are two curves over model size: batch 1 crosses zero at e^2 B
    parameters, batch 16 never does; one fit through all ten points would place a crossover neither has."""
    params = [0.5, 1.0, 2.0, 4.0, 8.0]
    noise = [0.3, -0.2, 0.1, -0.3, 0.2]
    bs1 = pd.DataFrame({"hardware": "X", "quantization": "nf4", "engine": "eager", "batch_size": 1,
                        "params_b_nominal": params,
                        "delta_pct": [20 - 10 * math.log(p) + e for p, e in zip(params, noise)]})
    bs16 = bs1.assign(batch_size=16, delta_pct=[60 - 10 * math.log(p) + e for p, e in zip(params, noise)])
    rows = crossover.crossover(pd.concat([bs1, bs16])).set_index("batch_size")
    assert rows.points.tolist() == [5, 5]
    assert rows.loc[1].crossover_params_b == pytest.approx(math.e ** 2, rel=0.05)
    assert rows.loc[1].verdict == "crossover in range" and rows.loc[16].verdict == "no crossover in range"


def test_a_flat_fit_leaves_the_crossover_blank():
    """Two sizes barely apart and Δ% alike: the line's zero lies past any float; nothing is reported for it."""
    comp = pd.DataFrame({"hardware": "X", "quantization": "ao_fp8", "params_b_nominal": [6.06, 6.06, 7.24, 7.24],
                         "delta_pct": [20.9, 0.8, 18.9, 9.3]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        row = crossover.crossover(comp).iloc[0]
    assert row.verdict.startswith("fit too flat")
    assert pd.isna(row.crossover_params_b) and pd.isna(row.crossover_ci_low_b) and pd.isna(row.crossover_ci_high_b)


def test_points_all_on_one_side_of_zero_answer_even_when_the_fit_is_flat():
    """NF4 under the CUDA-graph loop on H100 (2026-11-27): −12 to −19 % at each of six sizes, every CI below zero,
    slope p = 0.14. "Too flat to place a crossover" would hide the answer: no crossover among these sizes,
    NF4 saves at each. Points with CIs across zero keep the flat verdict."""
    params = [1.1, 1.54, 3.09, 3.82, 3.95, 7.62]
    delta = [-12.9, -13.9, -12.3, -19.1, -13.6, -19.3]
    comp = pd.DataFrame({"hardware": "X", "quantization": "nf4", "engine": "graph", "params_b_nominal": params,
                         "delta_pct": delta, "delta_pct_ci_low": [d - 2 for d in delta],
                         "delta_pct_ci_high": [d + 1.5 for d in delta]})
    row = crossover.crossover(comp).iloc[0]
    assert row.slope_p > 0.05
    assert row.verdict.startswith("no crossover in range: saves at every size measured (1.1-7.62 B: -19.3 to -12.3 %")
    assert pd.isna(row.crossover_params_b)
    straddling = comp.assign(delta_pct_ci_high=[d + 20 for d in delta])
    assert crossover.crossover(straddling).iloc[0].verdict.startswith("fit too flat to place a crossover")
    costs = comp.assign(delta_pct=[-d for d in delta], delta_pct_ci_low=[-d - 1.5 for d in delta],
                        delta_pct_ci_high=[-d + 2 for d in delta])
    assert "costs more at every size measured" in crossover.crossover(costs).iloc[0].verdict


def test_batch_scaling_relative_to_batch_one():
    configs = pd.DataFrame({"hardware": "X", "model": "m", "quantization": "fp16", "input_tokens": 8,
                            "output_tokens": 8, "batch_size": [1, 2, 4], "tok_s_mean": [10.0, 18.0, 30.0],
                            "energy_j_per_request_mean": [100.0, 60.0, 40.0]})
    b = scaling.batch_scaling(configs)
    assert b.speedup.tolist() == pytest.approx([1.0, 1.8, 3.0])
    assert b.scaling_efficiency.tolist() == pytest.approx([1.0, 0.9, 0.75])
    assert b.energy_per_request_change_pct.tolist() == pytest.approx([0.0, -40.0, -60.0])
    assert b.p.isna().all()  # means only: no test without sd and n


def test_batch_scaling_change_has_welch_p_and_ci():
    configs = pd.DataFrame({"hardware": "X", "model": "m", "quantization": "fp16", "input_tokens": 8,
                            "output_tokens": 8, "batch_size": [1, 8], "tok_s_mean": [10.0, 70.0],
                            "energy_j_per_request_mean": [100.0, 20.0], "energy_j_per_request_sd": [5.0, 1.0],
                            "energy_j_per_request_n": [10, 10]})
    row = scaling.batch_scaling(configs).iloc[1]
    t, p = stats.ttest_ind_from_stats(20.0, 1.0, 10, 100.0, 5.0, 10, equal_var=False)
    assert row.p == pytest.approx(p)
    assert row.change_ci_low < -80.0 < row.change_ci_high


@pytest.mark.slow
def test_report_with_figures_from_results_and_a_published_table(smoke_study, tmp_path):
    import matplotlib.image as mpimg

    work, out, r = smoke_study
    assert r.returncode == 0
    assert (out / "smoke" / "report" / "report.md").exists()  # written at the end of the study
    smoke_figs = list((out / "smoke" / "report" / "figures").glob("*.png"))
    assert smoke_figs and all(mpimg.imread(p).shape[0] > 100 for p in smoke_figs)  # readable images
    path = build_report([out / "smoke", PUBLISHED / "summary.csv"], tmp_path / "rep")
    text = path.read_text()
    for section in ("## Comparisons against fp16", "## Crossover", "## Methods", "## Warnings", "Random weights"):
        assert section in text
    pngs = list((tmp_path / "rep" / "figures").glob("*.png"))
    pdfs = list((tmp_path / "rep" / "figures").glob("*.pdf"))
    assert len(pngs) == len(pdfs) >= 3
    for p in pngs:
        assert mpimg.imread(p).shape[0] > 100


def _config(quantization: str, gpu_uuids, batch_size: int = 1, mean: float = 100.0) -> dict:
    return {"hardware": "H100", "model": "m", "quantization": quantization, "batch_size": batch_size,
            "input_tokens": 8, "output_tokens": 8, "weights": "random", "params_b_nominal": 1.0, "raw": True,
            "energy_j_per_1k_tok_mean": mean, "energy_j_per_1k_tok_sd": 5.0, "energy_j_per_1k_tok_n": 5,
            "energy_j_per_request_mean": mean, "energy_j_per_request_sd": 5.0, "energy_j_per_request_n": 5,
            "tok_s_mean": 10.0 * batch_size, "gpu_uuids": gpu_uuids}


def test_comparisons_say_whether_both_sides_ran_on_one_gpu():
    configs = pd.DataFrame([_config("fp16", "GPU-aaaaaaaa-1"), _config("int8", "GPU-aaaaaaaa-1", mean=150.0),
                            _config("int8_pure", "GPU-bbbbbbbb-2", mean=130.0),
                            _config("nf4", "GPU-aaaaaaaa-1,GPU-bbbbbbbb-2", mean=120.0)])
    comp = comparisons.comparisons(configs).set_index("quantization")
    assert comp.same_device.to_dict() == {"int8": True, "int8_pure": False, "nf4": False}
    warnings = caveats.device_warnings(configs, comp.reset_index())
    assert any(w.startswith("Mixed devices") and "nf4" in w and "2 GPUs" in w for w in warnings)
    cross = [w for w in warnings if w.startswith("Cross-device")]
    assert len(cross) == 2
    pure = next(w for w in cross if "int8_pure" in w)
    assert "ran on GPU-bbbbbbbb" in pure and "baseline on GPU-aaaaaaaa" in pure
    # the same warnings reach the report's list
    assert set(warnings) <= set(caveats.warnings_for(configs, comp=comp.reset_index()))


def test_a_cell_on_fewer_gpus_among_its_baselines_is_told_apart_from_another_device():
    """fewer_gpus: fp16 over two GPUs, NF4 on one of them, int8 on a third GPU. NF4's Δ is the GPU count by
    design (one shared GPU), int8's crosses devices; both baselines' GPUs are named in full."""
    two = "GPU-aaaaaaaa-1+GPU-bbbbbbbb-2"
    configs = pd.DataFrame([{**_config("fp16", two), "gpu_count": 2},
                            {**_config("nf4", "GPU-aaaaaaaa-1", mean=60.0), "gpu_count": 1},
                            {**_config("int8", "GPU-cccccccc-3", mean=70.0), "gpu_count": 1}])
    comp = comparisons.comparisons(configs)
    assert comp.set_index("quantization").same_device.to_dict() == {"nf4": False, "int8": False}
    warnings = caveats.device_warnings(configs, comp)
    nf4 = next(w for w in warnings if " nf4 " in w)
    int8 = next(w for w in warnings if " int8 " in w)
    assert nf4.startswith("GPU count:") and "on 1 GPU(s) (GPU-aaaaaaaa)" in nf4
    assert "baseline on 2 (GPU-aaaaaaaa + GPU-bbbbbbbb)" in nf4
    assert int8.startswith("Cross-device:") and "baseline on GPU-aaaaaaaa + GPU-bbbbbbbb" in int8


def test_device_unknown_is_neither_same_nor_different():
    # summary tables and CPU cells carry no GPU UUID: no claim either way, no warning
    configs = pd.DataFrame([_config("fp16", ""), _config("int8", "", mean=150.0)])
    comp = comparisons.comparisons(configs)
    assert comp.same_device.tolist() == [None]
    assert caveats.device_warnings(configs, comp) == []
    published = inputs.load_inputs([PUBLISHED / "summary.csv"])
    assert comparisons.comparisons(published).same_device.isna().all()


def test_batch_scaling_flags_a_batch_measured_on_another_gpu():
    configs = pd.DataFrame([_config("int8_pure", "GPU-aaaaaaaa-1", 1), _config("int8_pure", "GPU-aaaaaaaa-1", 2, 60.0),
                            _config("int8_pure", "GPU-bbbbbbbb-2", 4, 40.0)])
    batch = scaling.batch_scaling(configs).set_index("batch_size")
    assert batch.same_device.to_dict() == {1: True, 2: True, 4: False}
    warnings = caveats.device_warnings(configs, pd.DataFrame(), batch.reset_index())
    assert len(warnings) == 1 and "bs4 ran on GPU-bbbbbbbb" in warnings[0] and "batch 1 on GPU-aaaaaaaa" in warnings[0]


def test_two_inputs_of_one_configuration_are_compared_within_each_input():
    """Two result folders with the same hardware and model: each precision is compared with the
    baseline of its own folder (its own run and GPU), and only falls back to another's."""
    rows = [_config("fp16", "GPU-aaaaaaaa-1"), _config("int8", "GPU-aaaaaaaa-1", mean=180.0),
            _config("fp16", "GPU-bbbbbbbb-2", mean=110.0), _config("int8", "GPU-bbbbbbbb-2", mean=150.0),
            _config("nf4", "GPU-cccccccc-3", mean=120.0)]
    configs = pd.DataFrame(rows).assign(source=["run_a", "run_a", "run_b", "run_b", "run_c"])
    comp = comparisons.comparisons(configs)
    by_source = comp.set_index("source")
    assert by_source.loc["run_a"].delta_pct == pytest.approx(80.0) and by_source.loc["run_a"].baseline_source == "run_a"
    assert by_source.loc["run_b"].delta_pct == pytest.approx(150.0 / 110.0 * 100 - 100)
    assert by_source.loc["run_a"].same_device and by_source.loc["run_b"].same_device
    # run_c has no fp16 of its own: compared with the first one, and flagged
    assert by_source.loc["run_c"].baseline_source == "run_a" and not by_source.loc["run_c"].same_device
    warnings = caveats.device_warnings(configs, comp)
    assert warnings == ["Cross-device: H100 m bs1 nf4 ran on GPU-cccccccc, its fp16 baseline on GPU-aaaaaaaa; "
                        "the Δ mixes device and precision. To separate them, measure both with one GPU visible "
                        "(and reuse_cells=false where another study measured one of them)."]
    batch = scaling.batch_scaling(pd.DataFrame([_config("fp16", "GPU-aaaaaaaa-1", 1), _config("fp16", "GPU-aaaaaaaa-1", 4, 30.0),
                                               _config("fp16", "GPU-bbbbbbbb-2", 1, 200.0),
                                               _config("fp16", "GPU-bbbbbbbb-2", 4, 40.0)]).assign(source=list("aabb")))
    assert batch.set_index(["source", "batch_size"]).energy_per_request_change_pct.round(1).to_dict() == {
        ("a", 1): 0.0, ("a", 4): -70.0, ("b", 1): 0.0, ("b", 4): -80.0}
    assert batch.same_device.all()


def test_figures_are_written_as_grey_pngs_that_keep_every_pixel(tmp_path):
    """A grey figure (bars, hatches, text, anti-aliasing) written as an 8-bit grey PNG at the report's dpi: smaller
    than matplotlib's RGBA file and the same pixels; one in colour keeps its colours in a palette."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from ecosweep.analysis.figures import DPI, write_compact_png

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([0, 1, 2], [3, 1, 2], color=["0.15", "0.45", "0.7"], hatch="//", edgecolor="black")
    ax.set_title("energy per 1k tokens (J)")
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=DPI)
    plt.close(fig)
    write_compact_png(rendered.getvalue(), tmp_path / "f.png")
    with Image.open(tmp_path / "f.png") as compact, Image.open(rendered) as original:
        assert compact.mode == "L" and round(compact.info["dpi"][0]) == DPI
        assert (tmp_path / "f.png").stat().st_size < len(rendered.getvalue())
        assert np.array_equal(np.asarray(compact.convert("RGB")), np.asarray(original.convert("RGB")))


def test_a_figure_in_colour_keeps_its_colours_in_a_palette(tmp_path):
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from ecosweep.analysis.figures import write_compact_png

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.bar([0, 1], [1, 2], color=["tab:red", "tab:blue"])
    ax.set_axis_off()
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=50)
    plt.close(fig)
    write_compact_png(rendered.getvalue(), tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as compact, Image.open(rendered) as original:
        assert compact.mode == "P"
        assert np.array_equal(np.asarray(compact.convert("RGB")), np.asarray(original.convert("RGB")))
