"""Cells that hold several GPUs: metered on every one of them (fake NVML host of two GPUs), refused where
the cluster cannot host them, placed across the GPUs they hold."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from ecosweep.analysis.cost import cost_table
from ecosweep.cells import plan_cells
from ecosweep.config.schema import MeasurementConfig, ReportConfig
from ecosweep.errors import ConfigError
from ecosweep.lanes import resource_problems
from ecosweep.measure.meters import make_meter
from ecosweep.measure.protocol import CellProtocol
from ecosweep.workload.placement import build_device, placement_kwargs

from conftest import compose
from fake_nvml import FakeGpuHost

A, B = "GPU-fake-a", "GPU-fake-b"


@pytest.fixture
def host(tmp_path):
    return FakeGpuHost(str(tmp_path / "nvml.json"), {A: 70.0, B: 60.0})


def nvml(**kw) -> MeasurementConfig:
    base = dict(name="t", meter="nvml", min_window_s=0.6, prefill_min_window_s=0.1, warmup_min_s=0.0,
                max_repetitions=10, target_ci_pct=0.0, idle_settle_s=0.0, idle_window_s=0.5, sampler_hz=50.0,
                align_counter_ticks=False)
    base.update(kw)
    return MeasurementConfig(**base)


class TwoGpuLoad:
    """A model split across two fake GPUs: both draw more while a call runs, the second less than the first
    (hardware, not our logic)."""

    batch_size, input_tokens, output_tokens = 1, 4, 4

    def __init__(self, host: FakeGpuHost):
        self.host = host

    def _call(self) -> int:
        self.host.set_power(A, 300.0)
        self.host.set_power(B, 200.0)
        try:
            time.sleep(0.15)
            return self.batch_size * self.output_tokens
        finally:
            self.host.set_power(A, 70.0)
            self.host.set_power(B, 60.0)

    def generate(self) -> int:
        return self._call()

    def prefill(self) -> int:
        return self._call()


def test_a_two_gpu_window_is_the_sum_of_both_devices_windows(host):
    meter, observes = make_meter(nvml(), "cuda:0", [A, B], synchronize=lambda: None, nvml_module="fake_nvml")
    assert observes and meter.device_uuids == (A, B)
    with meter:
        t0 = time.time()
        with meter.window() as w:
            host.set_power(A, 250.0)
            host.set_power(B, 150.0)
            time.sleep(1.0)
        t1 = time.time()
    r = w.reading
    expected = {u: host.energy_between(u, t0, t1) for u in (A, B)}
    assert r.device_uuids == (A, B)
    for uuid, energy in zip(r.device_uuids, r.device_energy_j):
        assert energy == pytest.approx(expected[uuid], abs=0.1 * 300 + 5)  # one 100 ms counter step each edge
    assert r.energy_j == pytest.approx(sum(r.device_energy_j))
    assert r.device_energy_j[0] > r.device_energy_j[1] > 0
    assert r.power_w_mean == pytest.approx(r.energy_j / r.seconds)


def test_rows_of_a_two_gpu_cell_name_both_gpus_and_count_both(host):
    # a settled, 1 s idle baseline: the fake counter's 100 ms steps then err by < 0.1 s x 70 W over it
    protocol = nvml(idle_settle_s=0.3, idle_window_s=1.0)
    meter, observes = make_meter(protocol, "cuda:0", [A, B], synchronize=lambda: None, nvml_module="fake_nvml")
    with meter:
        rows = CellProtocol(TwoGpuLoad(host), meter, protocol, repetitions=2, warmup=1,
                            observes_device=observes).run({}).rows
    assert len(rows) == 2
    for row in rows:
        assert row["gpu_uuid"] == f"{A}+{B}"
        a, b = row["energy_j_by_gpu"]
        assert a > b > 0 and row["energy_j"] == pytest.approx(a + b)
        assert row["power_w_mean_by_gpu"] == pytest.approx([a / row["seconds"], b / row["seconds"]])
        idle_a, idle_b = row["idle_power_w_by_gpu"]  # the idle baseline covers both GPUs
        assert idle_a == pytest.approx(70.0, rel=0.25) and idle_b == pytest.approx(60.0, rel=0.25)
        assert row["idle_power_w"] == pytest.approx(idle_a + idle_b)
        assert row["net_energy_j"] == pytest.approx(row["energy_j"] - row["idle_power_w"] * row["seconds"])


def test_a_cell_asking_more_gpus_than_the_cluster_or_a_node_has_is_refused():
    cells = plan_cells([compose(["ray.gpus_per_cell=2", "hardware=cpu"])])
    too_many = resource_problems(cells, {"GPU": 1.0, "CPU": 16.0})
    assert len(too_many) == 1 and "needs 2 GPU per cell but the Ray cluster has 1 GPUs" in too_many[0]
    split = resource_problems(cells, {"GPU": 2.0, "CPU": 16.0}, node_gpus=1.0)  # two nodes of one GPU
    assert len(split) == 1 and "largest node of the Ray cluster has 1" in split[0]
    assert resource_problems(cells, {"GPU": 2.0, "CPU": 16.0}, node_gpus=2.0) == []


def test_cells_over_several_gpus_are_eager_and_whole():
    with pytest.raises(ConfigError, match="engine=graph .* with ray.gpus_per_cell=2 is not supported"):
        plan_cells([compose(["ray.gpus_per_cell=2", "engine=graph"])])
    with pytest.raises(ConfigError, match="ray.gpus_per_cell=1.5 is not supported: a cell holds whole GPUs"):
        plan_cells([compose(["ray.gpus_per_cell=1.5"])])
    with pytest.raises(ConfigError, match="outlier_features.count=6 with 2 GPUs per cell is not supported"):
        plan_cells([compose(["ray.gpus_per_cell=2", "outlier_features.count=6"])])
    with pytest.raises(ConfigError, match="ray.gpus_by_quantization names fp17, not a quantization"):
        plan_cells([compose(["+ray.gpus_by_quantization.fp17=2"])])
    two = plan_cells([compose(["ray.gpus_per_cell=2"])])[0]
    assert two.label.endswith("/2gpu") and two.id != plan_cells([compose([])])[0].id
    by_precision = plan_cells([compose(["+ray.gpus_by_quantization.fp32=2", "quantization=fp32"]),
                               compose(["+ray.gpus_by_quantization.fp32=2", "quantization=nf4"])])
    assert [c.label.endswith("/2gpu") for c in by_precision] == [True, False]


def test_placement_on_one_device_and_on_a_cpu():
    assert placement_kwargs("cpu", 0) == {"device_map": {"": "cpu"}}
    assert placement_kwargs("cuda:0", 1) == {"device_map": {"": "cuda:0"}}
    assert build_device("cpu", 0, 1e12) == "cpu"


def test_gpu_time_counts_every_gpu_a_cell_held():
    configs = pd.DataFrame({"hardware": "X", "model": "m", "quantization": ["fp16", "nf4"], "batch_size": 1,
                            "input_tokens": 8, "output_tokens": 100, "tok_s_mean": [10.0, 10.0],
                            "energy_j_per_1k_tok_mean": [1000.0, 1000.0], "gpu_count": [2, 1],
                            "gpu_uuids": ["GPU-a+GPU-b", "GPU-a"], "energy_source": "nvml_counter"})
    costs = cost_table(configs, ReportConfig(usd_per_gpu_hour=3.6))
    # 1M tokens at 10 tok/s = 27.8 h, on two GPUs 55.6 GPU-hours
    assert costs.gpu_hours_per_1m_tok.tolist() == pytest.approx([2 * 1e6 / 10 / 3600, 1e6 / 10 / 3600])
    assert costs.usd_gpu_time_per_request.tolist() == pytest.approx([2 * 100 / 10 / 3600 * 3.6, 100 / 10 / 3600 * 3.6])
    assert costs.kwh_per_1m_tok.iloc[0] == costs.kwh_per_1m_tok.iloc[1]  # energy is already the cells' total


def test_a_figure_of_cells_on_different_gpu_counts_says_how_many_each_held():
    """fewer_gpus' bars: fp16 held two GPUs, NF4 and pure int8 one, and the legend says so; a model measured on one
    GPU and on two gets a bar for each (one series per GPU count); a figure whose cells all held one GPU keeps
    plain precision names."""
    import pandas as pd

    from ecosweep.analysis.figures import _with_series

    mixed = pd.DataFrame({"quantization": ["fp16", "nf4", "int8_pure", "fp16"], "gpu_count": [2, 1, 1, 1]})
    assert list(_with_series(mixed, by_gpus=True).series) == [
        "fp16 on 2 GPUs", "nf4 on 1 GPU", "int8_pure on 1 GPU", "fp16 on 1 GPU"]
    assert list(_with_series(mixed).series) == ["fp16", "nf4", "int8_pure", "fp16"]
