"""The measurement protocol on the real tiny model (CPU), with the null meter."""

from __future__ import annotations

import math

import pytest

from ecosweep.cells import to_settings
from ecosweep.config.schema import MeasurementConfig
from ecosweep.measure.meters.base import NullMeter
from ecosweep.measure.protocol import CellProtocol, ci95_half_width_pct
from ecosweep.workload.generation import FixedLengthGeneration
from ecosweep.workload.models import load_model

from conftest import compose


@pytest.fixture(scope="module")
def workload():
    s = to_settings(compose(["hardware=cpu"]))
    loaded = load_model(s, "cpu")
    return FixedLengthGeneration(loaded.model, loaded.vocab_size, batch_size=2, input_tokens=16,
                                 output_tokens=4, seed=0, device="cpu")


def quick(**kw) -> MeasurementConfig:
    base = dict(name="t", meter="none", min_window_s=0.0, prefill_min_window_s=0.0, warmup_min_s=0.0,
                max_repetitions=10, target_ci_pct=0.0, idle_settle_s=0.0, idle_window_s=0.01)
    base.update(kw)
    return MeasurementConfig(**base)


def test_rows_count_tokens_and_split_prefill_from_decode(workload):
    result = CellProtocol(workload, NullMeter(), quick(), repetitions=3, warmup=1).run({"model": "m"})
    assert [r["repetition"] for r in result.rows] == [0, 1, 2]
    for r in result.rows:
        assert r["tokens_generated"] == r["generate_calls"] * 2 * 4
        assert r["tok_s"] == pytest.approx(r["tokens_generated"] / r["seconds"])
        assert r["prefill_s"] + r["decode_s"] == pytest.approx(r["latency_s_per_request"])
        assert r["energy_source"] == "none" and math.isnan(r["energy_j"])  # never a silent zero
        assert r["contaminated"] is None and r["throttled"] is None  # unknown, not "no"
        assert r["warmup_calls"] == 1 and r["model"] == "m"
    assert set(result.phases_s) >= {"warmup_s", "settle_s", "idle_window_s", "windows_s", "between_windows_s"}
    assert result.idle.source == "measured" and result.rows[0]["idle_baseline_source"] == "measured"


class _OneSecondACall:
    """The tiny model's workload on a fake clock that advances 1 s per generate() call: the window's length in
    calls no longer depends on how fast a busy host runs them."""

    def __init__(self, workload):
        self.workload, self.now = workload, 0.0

    def generate(self) -> int:
        self.now += 1.0
        return self.workload.generate()

    def __getattr__(self, name):
        return getattr(self.workload, name)


def test_window_repeats_generate_until_min_window(workload):
    timed = _OneSecondACall(workload)
    rows = CellProtocol(timed, NullMeter(), quick(min_window_s=3.0), 1, 0, clock=lambda: timed.now).run({}).rows
    # calls at 1, 2 and 3 s on the protocol's clock: the third reaches the 3 s window, and the window ends there
    assert rows[0]["generate_calls"] == 3
    assert rows[0]["tokens_generated"] == 3 * 2 * 4


def test_warmup_honours_calls_and_seconds(workload):
    rows = CellProtocol(workload, NullMeter(), quick(warmup_min_s=0.3), 1, warmup=2).run({}).rows
    assert rows[0]["warmup_calls"] >= 2 and rows[0]["warmup_s"] >= 0.3


def test_no_adaptive_extension_without_energy(workload):
    rows = CellProtocol(workload, NullMeter(), quick(target_ci_pct=0.001, max_repetitions=6), 2, 0).run({}).rows
    assert len(rows) == 2


def test_ci_half_width():
    assert ci95_half_width_pct([10.0, 10.0, 10.0]) == 0
    assert ci95_half_width_pct([1.0]) == math.inf
    # mean 10, sd 1, n 4: t(0.975,3)=3.1824 -> 3.1824 * 0.5 / 10 = 15.9 %
    assert ci95_half_width_pct([9.0, 11.0, 9.0, 11.0]) == pytest.approx(100 * 3.18245 * (1.1547 / 2) / 10, rel=1e-3)


def test_window_context_closes_when_the_body_raises():
    meter = NullMeter()
    with pytest.raises(ValueError):
        with meter.window():
            raise ValueError("boom")
    meter.begin_window()  # would raise if the previous window were still open
    assert meter.end_window().seconds >= 0
