"""Carbon and cost: the arithmetic checked by hand, bad settings refused before anything runs or is written,
and the report and its figure saying which settings they used."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ecosweep.analysis import cost, figures
from ecosweep.analysis.report import build_report
from ecosweep.cli import parser
from ecosweep.config.schema import ReportConfig

from conftest import run_cli


def configs(**overrides) -> pd.DataFrame:
    row = {"hardware": "H100", "model": "m", "quantization": "fp16", "engine": "eager", "batch_size": 4,
           "input_tokens": 8, "output_tokens": 50, "energy_j_per_1k_tok_mean": 3600.0,
           "energy_j_per_1k_tok_ci_low": 3240.0, "energy_j_per_1k_tok_ci_high": 3960.0,
           "energy_j_per_request_mean": 360.0, "tok_s_mean": 100.0, "gpu_uuids": "GPU-a",
           "energy_source": "nvml_counter", "params_b_nominal": 1.0}
    row.update(overrides)
    return pd.DataFrame([row])


def test_carbon_and_cost_by_hand():
    settings = ReportConfig(grid_gco2e_per_kwh=400.0, pue=1.5, usd_per_kwh=0.2, usd_per_gpu_hour=2.0)
    row = cost.cost_table(configs(), settings).iloc[0]
    # 3600 J per 1k tokens = 3.6e6 J = 1 kWh per 1M tokens at the GPU, 1.5 kWh at the facility
    assert row.kwh_per_1m_tok == pytest.approx(1.5)
    assert row.gco2e_per_1m_tok == pytest.approx(600.0)  # 1.5 kWh x 400 g
    assert (row.gco2e_per_1m_tok_ci_low, row.gco2e_per_1m_tok_ci_high) == (pytest.approx(540.0), pytest.approx(660.0))
    assert row.usd_energy_per_1m_tok == pytest.approx(0.30)
    assert row.gpu_hours_per_1m_tok == pytest.approx(1e6 / 100 / 3600)  # 2.78 h at 100 tok/s
    assert row.usd_gpu_time_per_1m_tok == pytest.approx(2.0 * 1e6 / 100 / 3600)
    # a request: 360 J x 1.5 = 540 J = 1.5e-4 kWh; its 50 tokens hold the GPU 0.5 s
    assert row.gco2e_per_request == pytest.approx(0.06)
    assert row.usd_energy_per_request == pytest.approx(3e-5)
    assert row.usd_gpu_time_per_request == pytest.approx(2.0 * 0.5 / 3600)
    assert row.cost_settings == "400 gCO2e/kWh, PUE 1.5, $0.2/kWh, $2/GPU-hour"


def test_cpu_configurations_hold_no_gpu_time_and_published_tables_do():
    settings = ReportConfig()
    cpu = cost.cost_table(configs(gpu_uuids=None, energy_source="rapl"), settings).iloc[0]
    assert math.isnan(cpu.gpu_hours_per_1m_tok) and math.isnan(cpu.usd_gpu_time_per_request)
    assert cpu.gco2e_per_1m_tok > 0  # its energy still counts
    published = cost.cost_table(configs().drop(columns=["gpu_uuids", "energy_source"]), settings).iloc[0]
    assert published.gpu_hours_per_1m_tok == pytest.approx(1e6 / 100 / 3600)


@pytest.mark.parametrize("override,needle", [
    ("report.pue=0.9", "report.pue=0.9 is out of range: a power usage effectiveness is >= 1"),
    ("report.grid_gco2e_per_kwh=-5", "report.grid_gco2e_per_kwh=-5.0 is out of range: it must be a number >= 0"),
])
def test_bad_settings_are_refused_before_anything_runs(tmp_path, override, needle):
    r = run_cli([override, f"output_root={tmp_path / 'out'}"], cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_report_command_refuses_bad_settings_and_writes_nothing(tmp_path, capsys):
    table = tmp_path / "summary.csv"
    table.write_text("gpu,model,quantization,energy_j_per_1k_tok_mean,energy_j_per_1k_tok_std,n\n"
                     "H100,m,fp16,100,5,10\nH100,m,nf4,90,5,10\n")
    def report_main(argv):
        args = parser().parse_args(["report", *argv])
        return args.func(args)

    assert report_main([str(table), "--pue", "0.5", "--usd-per-kwh", "-1", "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "--pue=0.5 is out of range" in err and "--usd-per-kwh=-1.0 is out of range" in err
    assert not (tmp_path / "rep").exists()
    assert report_main([str(table), "--grid-gco2e-per-kwh", "100", "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## Carbon and cost" in text and "Settings: 100 gCO2e/kWh, PUE 1.58" in text
    written = pd.read_csv(tmp_path / "rep" / "cost.csv")
    # 100 J per 1k tokens -> 1e5 J per 1M = 0.02778 kWh x 1.58 x 100 g
    assert written.set_index("quantization").gco2e_per_1m_tok["fp16"] == pytest.approx(1e5 / 3.6e6 * 1.58 * 100)


def test_the_carbon_figure_states_its_settings(tmp_path, monkeypatch):
    titles = []
    real_save = figures._save

    def spy(fig, out_dir, name):
        titles.extend(ax.get_title().replace("\\$", "$") for ax in fig.axes)  # escaped from mathtext
        return real_save(fig, out_dir, name)

    monkeypatch.setattr(figures, "_save", spy)
    settings = ReportConfig(grid_gco2e_per_kwh=50.0)
    paths = figures.carbon_by_model(configs(), cost.cost_table(configs(), settings), cost.describe(settings), tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert any("g CO2e per 1M tokens" in t and "50 gCO2e/kWh, PUE 1.58, $0.1/kWh, $2.49/GPU-hour" in t for t in titles)


def test_settings_scale_a_committed_study_linearly(tmp_path):
    """The committed H100 nf4_crossover cells under the defaults and under a grid twice as dirty: carbon doubles,
    the energy bill and the GPU time do not move."""
    from pathlib import Path

    study = Path(__file__).resolve().parent.parent / "experiments" / "nf4_crossover" / "h100"
    build_report([study], tmp_path / "default")
    build_report([study], tmp_path / "dirty", cost_settings=ReportConfig(grid_gco2e_per_kwh=872.0))
    default, dirty = (pd.read_csv(tmp_path / name / "cost.csv") for name in ("default", "dirty"))
    assert len(default) == 8 and default.gco2e_per_1m_tok.gt(0).all()
    pd.testing.assert_series_equal(dirty.gco2e_per_1m_tok, 2 * default.gco2e_per_1m_tok, check_names=False)
    assert dirty.usd_energy_per_1m_tok.equals(default.usd_energy_per_1m_tok)
    assert dirty.usd_gpu_time_per_1m_tok.equals(default.usd_gpu_time_per_1m_tok)
