"""What a cell takes from the cells before it (reuse.*): an idle baseline of the same GPU while a short check
agrees, the fidelity reference and generate()'s token-check run of the same model and prompts; refused or
redone when a condition fails, and the same results as without reuse."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest

from ecosweep.cells import to_settings
from ecosweep.config.schema import MeasurementConfig, ReuseConfig
from ecosweep.measure.idle import IdleBaseline, baseline_key, check_agrees, why_not_reusable
from ecosweep.measure.meters.base import Meter, WindowReading
from ecosweep.measure.protocol import CellProtocol, IdleContext
from ecosweep.workload.fidelity import cell_fidelity, prepare_reference
from ecosweep.workload.generation import FixedLengthGeneration
from ecosweep.workload.models import load_model
from ecosweep.workload.references import ReferenceStore, fidelity_identity, token_identity
from ecosweep.workload.token_check import TokenCheck, check_tokens, generate_reference, store_floor

from conftest import compose

KEY = baseline_key("host-a", "GPU-a")


class FakePowerMeter(Meter):
    """A GPU whose power the test sets (hardware stand-in): every window reads ``watts`` x its length."""

    energy_source = "fake_counter"

    def __init__(self, watts: float):
        super().__init__()
        self.watts = watts
        self.windows = 0

    def _begin(self) -> None:
        self.windows += 1

    def _end(self, seconds: float, start_unix_s: float) -> WindowReading:
        return WindowReading(seconds, start_unix_s, energy_j=self.watts * seconds, energy_source=self.energy_source,
                             device_energy_j=(self.watts * seconds,), device_uuids=("GPU-a",))


@pytest.fixture(scope="module")
def workload():
    s = to_settings(compose(["hardware=cpu"]))
    loaded = load_model(s, "cpu")
    return FixedLengthGeneration(loaded.model, loaded.vocab_size, 1, 8, 2, 0, "cpu")


def protocol_settings() -> MeasurementConfig:
    return MeasurementConfig(name="t", meter="none", min_window_s=0.0, prefill_min_window_s=0.0, warmup_min_s=0.0,
                             max_repetitions=2, target_ci_pct=0.0, idle_settle_s=0.0, idle_window_s=0.4)


POLICY = ReuseConfig(idle_check_s=0.05, idle_tolerance_w=5.0, idle_tolerance_pct=5.0, idle_max_age_s=600.0)


def run(workload, watts: float, prior=None, policy=POLICY, key=KEY, cell="cell-b"):
    meter = FakePowerMeter(watts)
    result = CellProtocol(workload, meter, protocol_settings(), 2, 0,
                          idle=IdleContext(cell, key, prior, policy)).run({})
    return result


def test_a_later_cell_on_the_same_gpu_reuses_the_baseline_when_the_check_agrees(workload):
    first = run(workload, 100.0, cell="cell-a")
    assert first.idle.source == "measured" and first.phases_s["idle_window_s"] >= 0.4
    second = run(workload, 103.0, prior=first.idle.baseline)
    row = second.rows[0]
    assert second.idle.source == "reused" and row["idle_baseline_source"] == "reused"
    assert row["idle_baseline_cell_id"] == "cell-a"
    assert row["idle_power_w"] == pytest.approx(100.0)  # the earlier, longer baseline
    assert row["idle_check_power_w"] == pytest.approx(103.0)
    assert row["net_energy_j"] == pytest.approx(row["energy_j"] - 100.0 * row["seconds"])
    assert second.phases_s["idle_window_s"] < 0.3  # the check, not a full window
    assert row["idle_baseline_age_s"] >= 0


def test_a_check_that_disagrees_measures_the_baseline_again_and_says_why(workload):
    first = run(workload, 100.0, cell="cell-a")
    second = run(workload, 130.0, prior=first.idle.baseline)
    row = second.rows[0]
    assert second.idle.source == "measured" and row["idle_baseline_cell_id"] == "cell-b"
    assert row["idle_power_w"] == pytest.approx(130.0)
    assert "check read 130.0 W against the earlier baseline's 100.0 W" in row["idle_baseline_note"]


def test_another_gpu_an_old_baseline_or_reuse_off_are_measured_without_a_check(workload):
    first = run(workload, 100.0, cell="cell-a")
    other_gpu = run(workload, 100.0, prior=first.idle.baseline, key=baseline_key("host-a", "GPU-b"))
    assert other_gpu.idle.source == "measured" and "not host-a/GPU-b" in other_gpu.idle.why_measured
    assert math.isnan(other_gpu.rows[0]["idle_check_power_w"])
    old = dataclasses.replace(first.idle.baseline, measured_unix_s=time.time() - 3600)
    assert run(workload, 100.0, prior=old).idle.source == "measured"
    off = run(workload, 100.0, prior=first.idle.baseline, policy=dataclasses.replace(POLICY, idle_baseline=False))
    assert off.idle.source == "measured" and off.idle.why_measured == "reuse.idle_baseline=false"


class CoolingMeter(FakePowerMeter):
    """A GPU whose power falls window by window after the warm-up (hardware stand-in): the n-th window after
    ``start_falling`` reads ``watts[n]`` (the last value from then on)."""

    def __init__(self, watts):
        super().__init__(watts[-1])
        self.falling, self.after = list(watts), None

    def start_falling(self) -> None:
        self.after = 0

    def _end(self, seconds: float, start_unix_s: float) -> WindowReading:
        if self.after is not None:
            self.watts = self.falling[min(self.after, len(self.falling) - 1)]
            self.after += 1
        return super()._end(seconds, start_unix_s)


class SettlingWorkload:
    """Wraps the tiny model's workload: the meter starts falling when the warm-up's last call returns."""

    def __init__(self, inner, meter, warmup_calls):
        self.inner, self.meter, self.left = inner, meter, warmup_calls
        self.batch_size, self.input_tokens, self.output_tokens = inner.batch_size, inner.input_tokens, inner.output_tokens

    def generate(self):
        out = self.inner.generate()
        self.left -= 1
        if self.left == 0:
            self.meter.start_falling()
        return out

    def prefill(self):
        return self.inner.prefill()


def settling_run(workload, watts, settle_s, early=True):
    """A cell whose GPU cools from 200 W towards the prior baseline's 100 W after its one warm-up call."""
    first = run(workload, 100.0, cell="cell-a")
    meter = CoolingMeter(watts)
    settings = dataclasses.replace(protocol_settings(), idle_settle_s=settle_s)
    policy = dataclasses.replace(POLICY, idle_check_s=0.1, idle_settle_early=early)
    protocol = CellProtocol(SettlingWorkload(workload, meter, 1), meter, settings, 2, 1,
                            idle=IdleContext("cell-b", KEY, first.idle.baseline, policy))
    return protocol.run({})


def test_a_settle_ends_at_the_first_check_that_agrees_with_the_earlier_baseline(workload):
    result = settling_run(workload, [200.0, 150.0, 104.0], settle_s=3.0)
    row = result.rows[0]
    assert row["idle_baseline_source"] == "reused" and row["idle_checks_count"] == 3
    assert row["idle_check_power_w"] == pytest.approx(104.0)
    assert 0.2 <= row["idle_settle_s"] < 1.0  # two 0.1 s checks that disagreed, not the 3 s settle
    assert result.phases_s["settle_s"] == pytest.approx(row["idle_settle_s"])
    assert 0.1 <= result.phases_s["idle_window_s"] < 0.5  # the agreeing check


def test_a_gpu_that_never_settles_to_the_earlier_baseline_waits_the_whole_settle_and_measures_its_own(workload):
    result = settling_run(workload, [200.0, 150.0, 130.0], settle_s=0.5)
    row = result.rows[0]
    assert row["idle_baseline_source"] == "measured" and row["idle_power_w"] == pytest.approx(130.0)
    assert row["idle_settle_s"] >= 0.5 and row["idle_checks_count"] >= 2  # checks within the settle, then one more
    assert "check read 130.0 W" in row["idle_baseline_note"]
    assert result.phases_s["idle_window_s"] >= 0.4 + 0.1  # the last check and the full window


def test_without_an_early_settle_the_whole_settle_comes_before_one_check(workload):
    result = settling_run(workload, [104.0], settle_s=0.6, early=False)
    row = result.rows[0]
    assert row["idle_baseline_source"] == "reused" and row["idle_checks_count"] == 1
    assert row["idle_settle_s"] >= 0.6


def test_the_tolerance_is_the_wider_of_watts_and_percent():
    base = WindowReading(1.0, 0.0, energy_j=400.0)
    policy = ReuseConfig(idle_tolerance_w=5.0, idle_tolerance_pct=5.0)
    assert check_agrees(WindowReading(1.0, 0.0, energy_j=419.0), base, policy)  # 5 % of 400 W = 20 W
    assert not check_agrees(WindowReading(1.0, 0.0, energy_j=421.0), base, policy)
    assert not check_agrees(WindowReading(1.0, 0.0), base, policy)  # no energy reading: never agrees
    no_energy = IdleBaseline(KEY, WindowReading(1.0, 0.0), "a", time.time())
    assert why_not_reusable(no_energy, KEY, time.time(), policy) == "the earlier baseline has no energy reading"
    assert baseline_key("h", None) is None  # a CPU cell: nothing to reuse


def settings(*overrides):
    return to_settings(compose(["hardware=cpu", "input_tokens=12", "output_tokens=4", "batch_size=2", *overrides]))


def test_reference_keys_change_with_seed_prompts_device_and_weights_but_not_precision():
    base = settings("quantization=nf4")
    ident = fidelity_identity(base, "cpu", 1, "float32", "float32")
    assert fidelity_identity(settings("quantization=int8_pure"), "cpu", 1, "float32", "float32") == ident
    for changed in (fidelity_identity(settings("quantization=nf4", "seed=1"), "cpu", 1, "float32", "float32"),
                    fidelity_identity(settings("quantization=nf4", "input_tokens=13"), "cpu", 1, "float32", "float32"),
                    fidelity_identity(base, "NVIDIA H200", 1, "float32", "float32"),
                    fidelity_identity(settings("quantization=nf4", "outlier_features.count=2"), "cpu", 1, "float32",
                                      "float32")):
        assert changed != ident
    graph = token_identity(settings("quantization=nf4", "engine=graph"), "cpu", 1)
    assert token_identity(settings("quantization=nf4", "engine=compiled"), "cpu", 1) == graph  # same attention
    assert token_identity(base, "cpu", 1) != graph  # generate() with another attention kernel
    assert token_identity(settings("quantization=int8_pure", "engine=graph"), "cpu", 1) != graph  # another precision


def test_a_stored_reference_gives_the_same_fidelity_and_a_changed_prompt_is_computed_again(tmp_path):
    store = ReferenceStore(tmp_path, 2**30)
    s = settings("quantization=nf4")
    computed = prepare_reference(s, "cpu", store, "cell-nf4", "cpu")
    assert computed.source == "computed" and len(list(tmp_path.glob("fidelity-*.pt"))) == 1
    s8 = settings("quantization=int8_pure")
    reused = prepare_reference(s8, "cpu", store, "cell-int8", "cpu")
    assert reused.source == "reused" and reused.cell_id == "cell-nf4"
    fresh = prepare_reference(s8, "cpu", None)
    model = load_model(s8, "cpu").model
    assert cell_fidelity(s8, model, reused, "cpu") == cell_fidelity(s8, model, fresh, "cpu")  # equal, not close
    other = prepare_reference(settings("quantization=int8_pure", "seed=3"), "cpu", store, "cell-seed3", "cpu")
    assert other.source == "computed"


def test_a_damaged_or_oversized_reference_is_computed_again(tmp_path):
    s = settings("quantization=nf4")
    store = ReferenceStore(tmp_path, 2**30)
    prepare_reference(s, "cpu", store, "a", "cpu")
    (path,) = tmp_path.glob("fidelity-*.pt")
    path.write_bytes(b"not a torch file")
    assert prepare_reference(s, "cpu", store, "b", "cpu").source == "computed"
    tiny = ReferenceStore(tmp_path / "tiny", 16.0)  # 16 bytes: nothing fits
    prepare_reference(s, "cpu", tiny, "c", "cpu")
    assert prepare_reference(s, "cpu", tiny, "d", "cpu").source == "computed"


def test_generate_reference_is_stored_once_and_read_back_equal(tmp_path):
    s = settings("quantization=nf4")
    loaded = load_model(s, "cpu")
    eager = FixedLengthGeneration(loaded.model, loaded.vocab_size, 2, 12, 4, 0, "cpu")
    store = ReferenceStore(tmp_path, 2**30)
    first = generate_reference(eager, store, token_identity(s, "cpu", 1), "cell-graph")
    second = generate_reference(eager, store, token_identity(s, "cpu", 1), "cell-compiled")
    assert (first.source, second.source, second.cell_id) == ("computed", "reused", "cell-graph")
    assert bool((first.tokens == second.tokens).all())
    assert all(bool((a == b).all()) for a, b in zip(first.scores, second.scores))


def test_the_attention_floor_a_check_measured_is_stored_with_generate_and_read_instead_of_run_again(tmp_path):
    s = settings("quantization=nf4")
    loaded = load_model(s, "cpu")
    eager = FixedLengthGeneration(loaded.model, loaded.vocab_size, 2, 12, 4, 0, "cpu")
    engine = FixedLengthGeneration(loaded.model, loaded.vocab_size, 2, 12, 4, 0, "cpu")  # a workload with scores
    store, identity = ReferenceStore(tmp_path, 2**30), token_identity(s, "cpu", 1)
    ref = generate_reference(eager, store, identity, "cell-graph")
    measured = check_tokens(engine, eager, -1.0, ref)  # every difference is past a negative tolerance: floor needed
    assert measured.floor_sd is not None and math.isfinite(measured.floor_sd)
    store_floor(ref, measured, store, identity)
    again = generate_reference(eager, store, identity, "cell-compiled")
    assert again.source == "reused" and again.floor_sd == measured.floor_sd
    planted = dataclasses.replace(again, floor_sd=123.0)  # read, not run again: the stored value comes back as is
    assert check_tokens(engine, eager, -1.0, planted).floor_sd == 123.0
    within = check_tokens(engine, eager, 1e9, again)  # within rounding: no floor at all
    assert within.floor_sd is None
    store_floor(again, TokenCheck(True, None, 1, 1.0, 0.0, 1.0, 7.0), store, identity)  # one already stored stays
    assert generate_reference(eager, store, identity).floor_sd == measured.floor_sd


# --- baselines between commands (reuse.idle_across_commands, measure.idle_store) ---

def metered_run(workload, tmp_path, monkeypatch, watts, run_id, in_command=None, gpu="GPU-a", *overrides):
    """One command's cell through ``run.metered`` on a fake GPU reading ``watts``: (result, its row)."""
    from ecosweep.cells import Cell
    from ecosweep.measure.phases import PhaseClock
    from ecosweep.run import metered

    monkeypatch.setattr(metered, "make_meter", lambda m, device, uuids: (FakePowerMeter(watts), True))
    s = settings(f"reuse.reference_dir={tmp_path}", "reuse.idle_check_s=0.05", *overrides)
    cell = Cell(f"cell-{run_id}", s)

    def protocol(meter, observes, idle):
        return CellProtocol(workload, meter, protocol_settings(), 2, 0, observes_device=observes, idle=idle)

    base_row = {"host": "host-a", "gpu_uuid": gpu, "run_id": run_id}
    result, _ = metered.run_metered(cell, "cpu", 1, base_row, PhaseClock(), dict(in_command or {}), protocol)
    return result, result.rows[0]


def test_the_next_command_s_first_cell_checks_the_baseline_the_last_command_stored_on_its_host(
        workload, tmp_path, monkeypatch):
    first, row = metered_run(workload, tmp_path, monkeypatch, 100.0, "run-1")
    assert row["idle_baseline_source"] == "measured" and row["idle_baseline_run_id"] == "run-1"
    assert len(list(tmp_path.glob("idle-*.json"))) == 1

    second, row = metered_run(workload, tmp_path, monkeypatch, 102.0, "run-2")  # a new command: nothing in hand
    assert row["idle_baseline_source"] == "reused" and row["idle_power_w"] == pytest.approx(100.0)
    assert (row["idle_baseline_cell_id"], row["idle_baseline_run_id"]) == ("cell-run-1", "run-1")
    assert second.phases_s["idle_window_s"] < 0.3

    third, row = metered_run(workload, tmp_path, monkeypatch, 130.0, "run-3")  # the GPU is elsewhere now
    assert row["idle_baseline_source"] == "measured" and "check read 130.0 W" in row["idle_baseline_note"]
    _, row = metered_run(workload, tmp_path, monkeypatch, 131.0, "run-4")
    assert (row["idle_baseline_source"], row["idle_baseline_run_id"]) == ("reused", "run-3")  # the latest stored


def test_a_stored_baseline_is_not_offered_to_another_gpu_when_off_or_when_a_newer_one_is_in_hand(
        workload, tmp_path, monkeypatch):
    first, _ = metered_run(workload, tmp_path, monkeypatch, 100.0, "run-1")
    _, row = metered_run(workload, tmp_path, monkeypatch, 100.0, "run-2", None, "GPU-b")
    assert row["idle_baseline_source"] == "measured" and row["idle_baseline_note"] is None  # nothing stored for it
    stored = sorted(p.read_text() for p in tmp_path.glob("idle-*.json"))
    _, row = metered_run(workload, tmp_path, monkeypatch, 100.0, "run-3", None, "GPU-a",
                         "reuse.idle_across_commands=false")
    assert row["idle_baseline_source"] == "measured" and math.isnan(row["idle_check_power_w"])
    assert sorted(p.read_text() for p in tmp_path.glob("idle-*.json")) == stored  # off: neither read nor written
    newer = dataclasses.replace(first.idle.baseline, cell_id="cell-newer", run_id="run-4",
                                measured_unix_s=time.time(), reading=WindowReading(1.0, time.time(), energy_j=120.0))
    _, row = metered_run(workload, tmp_path, monkeypatch, 121.0, "run-4", {KEY: newer})
    assert (row["idle_baseline_source"], row["idle_baseline_cell_id"]) == ("reused", "cell-newer")
    old = dataclasses.replace(newer, measured_unix_s=time.time() - 300)  # the stored one is newer: it is checked
    _, row = metered_run(workload, tmp_path, monkeypatch, 101.0, "run-5", {KEY: old})
    assert (row["idle_baseline_source"], row["idle_baseline_cell_id"]) == ("reused", "cell-run-1")


def test_the_idle_store_reads_back_what_it_wrote_and_ignores_damaged_or_foreign_files(tmp_path):
    from ecosweep.measure.idle_store import HostIdleStore
    from ecosweep.measure.meters.base import DeviceStats

    reading = WindowReading(5.0, 1.7e9, energy_j=600.0, energy_source="nvml_counter", samples=50,
                            device_stats=DeviceStats(temperature_c_mean=41.5), throttle_reasons=("idle",),
                            device_energy_j=(600.0,), device_uuids=("GPU-a",))
    store = HostIdleStore(tmp_path / "refs")
    baseline = IdleBaseline(KEY, reading, "cell-a", 1.7e9, "run-1")
    assert store.save(baseline)
    assert repr(store.load(KEY)) == repr(baseline)  # every field, NaN ones included (NaN != NaN)
    assert store.load(baseline_key("host-a", "GPU-b")) is None
    store.path(KEY).write_text("{not json")
    assert store.load(KEY) is None
    store.path(KEY).write_text('{"format": 99}')
    assert store.load(KEY) is None
    assert not store.save(IdleBaseline("", reading, "cell-a", 1.7e9))  # a CPU cell's: nothing to key it by
