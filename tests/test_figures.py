"""What a reader of the report's figures sees (#35): no empty axes, no raw column names in titles and labels, no
tick labels on top of each other, '$' shown as itself, a crossover only where there are two model sizes, and no
figure left in figures/ that the report does not draw."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecosweep.analysis import comparisons, figures, inputs
from ecosweep.results.schema import COLUMN_NAMES


def configs(sizes=(1.1, 7.2), batches=(1, 8), energy=True):
    rows = []
    for size in sizes:
        for bs in batches:
            for q, factor in (("fp16", 1.0), ("nf4", 1.2), ("int8_pure", 0.9)):
                mean = 1000.0 * size ** 0.5 * factor / bs
                rows.append({"hardware": "NVIDIA H100", "model": f"m{size}", "params_b_nominal": size,
                             "quantization": q, "engine": "graph", "batch_size": bs, "input_tokens": 128,
                             "output_tokens": 128, "weights": "random", "gpu_count": 1, "raw": True, "n": 5,
                             "source": "s", "energy_source": "nvml_counter" if energy else "none",
                             "energy_j_per_1k_tok_mean": mean if energy else np.nan,
                             "energy_j_per_1k_tok_sd": mean * 0.02 if energy else np.nan, "energy_j_per_1k_tok_n": 5,
                             "energy_j_per_request_mean": mean * 0.128 if energy else np.nan,
                             "tok_s_mean": 50.0 * bs / factor, "tok_s_sd": 1.0, "tok_s_n": 5,
                             "power_w_mean_mean": 300.0 if energy else np.nan,
                             "gpu_util_pct_mean_mean": 90.0 if energy else np.nan})
    frame = pd.DataFrame(rows)
    for m in ("energy_j_per_1k_tok", "tok_s", "energy_j_per_request", "power_w_mean", "gpu_util_pct_mean"):
        frame[f"{m}_ci_low"], frame[f"{m}_ci_high"] = frame[f"{m}_mean"] * 0.97, frame[f"{m}_mean"] * 1.03
    return frame


@pytest.fixture
def drawn(monkeypatch):
    """Every figure a call draws, kept open and drawn (instead of written and closed)."""
    kept = []

    def keep(fig, out_dir, name):
        fig.canvas.draw()
        kept.append((name, fig))
        return [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    monkeypatch.setattr(figures, "_save", keep)
    yield kept
    figures._plt().close("all")


RAW_NAMES = {c for c in COLUMN_NAMES if "_" in c} | {f"{m}_mean" for m in inputs.METRICS}  # plain words are words


def texts(fig):
    out = [fig._suptitle.get_text()] if fig._suptitle else []
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        legend = ax.get_legend()
        if legend is not None:
            out += [legend.get_title().get_text(), *(t.get_text() for t in legend.get_texts())]
    return [t for t in out if t]


def overlapping_ticks(fig):
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            boxes = [t.get_window_extent(renderer) for t in axis.get_ticklabels(which="both")
                     if t.get_visible() and t.get_text()]
            found += [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    return found


def check(fig, name):
    for ax in fig.axes:
        assert ax.lines or ax.patches or ax.collections, f"{name}: an empty panel"
    for t in texts(fig):
        assert not set(re.findall(r"[A-Za-z0-9_]+", t)) & RAW_NAMES, f"{name}: raw column name in {t!r}"
        assert not re.search(r"(?<!\\)\$", t), f"{name}: unescaped $ in {t!r} (mathtext would eat it)"
    assert not overlapping_ticks(fig), f"{name}: tick labels overlap"


def test_every_figure_of_a_study_is_legible(drawn, tmp_path):
    frame = configs()
    comp = comparisons.comparisons(frame)
    costs = pd.DataFrame({"gco2e_per_1m_tok": frame.energy_j_per_1k_tok_mean * 0.3,
                          "gco2e_per_1m_tok_ci_low": frame.energy_j_per_1k_tok_mean * 0.29,
                          "gco2e_per_1m_tok_ci_high": frame.energy_j_per_1k_tok_mean * 0.31})
    figures.energy_by_model(frame, comp, tmp_path)
    figures.crossover_plot(comp, tmp_path)
    figures.delta_vs_batch(comp, tmp_path)
    figures.batch_panel(frame, tmp_path)
    figures.carbon_by_model(frame, costs, "436 gCO2e/kWh, PUE 1.58, $0.1/kWh, $2.49/GPU-hour", tmp_path)
    names = [n for n, _ in drawn]
    assert "crossover" in names and any(n.startswith("delta_vs_batch") for n in names)
    assert any(n.startswith("gco2e") for n in names) and any(n.startswith("batch_") for n in names)
    for name, fig in drawn:
        check(fig, name)
    carbon = next(fig for name, fig in drawn if name.startswith("gco2e"))
    assert "$0.1/kWh" in carbon.axes[0].get_title().replace("\\$", "$")


def test_one_model_size_draws_no_crossover_and_no_energy_draws_no_energy_panels(drawn, tmp_path):
    one = configs(sizes=(1.1,))
    assert figures.crossover_plot(comparisons.comparisons(one), tmp_path) == []
    none = configs(energy=False)
    figures.batch_panel(none, tmp_path)
    for name, fig in drawn:
        check(fig, name)
        assert len(fig.axes) == 1  # throughput only: energy, power and utilisation were not measured
    notes = figures.missing_panels(none)
    assert any("no energy was measured" in n for n in notes)
    assert any("energy per request (J), GPU utilisation (%), power (W) left out" in n for n in notes)
    assert figures.carbon_by_model(none, pd.DataFrame({"gco2e_per_1m_tok": [np.nan] * len(none)}), "", tmp_path) == []


@pytest.mark.slow
@pytest.mark.integration
def test_a_rebuilt_report_links_every_figure_it_keeps_and_keeps_no_stale_one(smoke_study, tmp_path):
    from ecosweep.analysis.report import build_report

    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    stale = out / "figures" / "crossover.png"  # drawn by an earlier build of more model sizes
    stale.write_bytes(b"old")
    _, outputs, _ = smoke_study
    build_report([outputs / "smoke"], out)
    text = (out / "report.md").read_text()
    linked = set(re.findall(r"\(figures/([^)]+\.png)\)", text))
    on_disk = {p.name for p in (out / "figures").glob("*.png")}
    assert linked == on_disk and not stale.exists()
    assert {Path(n).stem for n in linked} == {p.stem for p in (out / "figures").glob("*.pdf")}
