"""ecosweep's slot server (serving.server=ecosweep): tokens equal generate()'s for every request whatever its slot,
length and arrival; every request accounted for; the serving protocol and a served study run on it; what it cannot
serve is refused before anything loads."""

from __future__ import annotations

import dataclasses
import glob
from pathlib import Path

import pytest
import torch

from ecosweep.cells import Cell, cell_id, to_settings
from ecosweep.config.load_names import serving_load
from ecosweep.config.schema import MeasurementConfig, ServingConfig, StudyConfig
from ecosweep.config.validate import validate_study
from ecosweep.measure.serving_protocol import ServingProtocol
from ecosweep.measure.serving_stats import accounting
from ecosweep.run.serving_cell import warmup_stream
from ecosweep.run.worker import config_row
from ecosweep.workload.generation import FixedLengthGeneration
from ecosweep.workload.models import load_model
from ecosweep.workload.request_stream import prompt_ids, request_stream
from ecosweep.workload.slot_server import ServedTokenCheck, SlotServingWorkload, bucket_for, row_buckets
from ecosweep.workload.token_check import check_tokens
from fake_power_meter import FakePowerMeter

from conftest import compose

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    return load_model(to_settings(compose(["hardware=cpu"])), "cpu")


def serving(**kw) -> ServingConfig:
    return ServingConfig(**{"max_batch": 4, "requests": 8, "server": "ecosweep", **kw})


def generate_tokens(tiny, prompt, output_tokens):
    """generate()'s greedy tokens for one prompt alone (EOS suppressed, as every ecosweep engine decodes)."""
    g = FixedLengthGeneration(model=tiny.model, vocab_size=tiny.vocab_size, batch_size=1,
                              input_tokens=len(prompt), output_tokens=output_tokens, seed=0, device="cpu")
    g.input_ids = torch.tensor([prompt])
    tokens, _ = g.generate_with_scores()
    return tokens[0].tolist()


def test_row_buckets_cover_every_row_count_with_the_smallest_captured_one():
    assert row_buckets(1) == [1] and row_buckets(64) == [1, 2, 4, 8, 16, 32, 64] and row_buckets(48)[-2:] == [32, 48]
    buckets = row_buckets(48)
    for rows in range(1, 49):
        chosen = bucket_for(rows, buckets)
        assert chosen >= rows and all(b < rows for b in buckets if b < chosen)


def test_each_request_gets_generates_tokens_whatever_its_slot_length_and_when_it_joined(tiny):
    """Mixed lengths through 3 slots: requests join as others leave, so slots are reused at other positions, free
    slots below a busy one keep stepping, and every request still decodes exactly what generate() decodes alone."""
    specs = request_stream("all_at_once", "uniform", 7, 20, 10, seed=3, spread=0.5)
    w = SlotServingWorkload(tiny.model, tiny.vocab_size, serving(max_batch=3), "cpu", 0,
                            max(x.input_tokens + x.output_tokens for x in specs))
    run = w.run(specs)
    assert accounting(run.records, 7)["requests_completed"] == 7
    assert len({x.input_tokens for x in specs}) > 2  # prefilled in groups of one length, slots reused
    for spec, r in zip(specs, run.records):
        assert r.request_id == spec.request_id and r.tokens_generated == spec.output_tokens
        expected = generate_tokens(tiny, prompt_ids(tiny.vocab_size, spec.input_tokens, 0, spec.index),
                                   spec.output_tokens)
        assert w.last_tokens[spec.request_id] == expected, spec
        assert r.sent_s <= r.admitted_s <= r.first_token_s <= r.last_token_s == r.finished_s
        assert r.client_ttft_ms == pytest.approx(r.ttft_ms) and len(r.token_times_s) == spec.output_tokens
    # three slots: never more than three requests between admission and finish at once
    assert all(sum(q.admitted_s <= r.admitted_s < q.finished_s for q in run.records) <= 3 for r in run.records)
    assert w.facts()["serving_server"] == "ecosweep_slots" and w.facts()["serving_cuda_graphs"] == "decode=False"


def test_the_token_check_passes_for_the_slot_server_and_catches_a_stale_position(tiny):
    reference = FixedLengthGeneration(model=tiny.model, vocab_size=tiny.vocab_size, batch_size=3, input_tokens=16,
                                      output_tokens=8, seed=0, device="cpu")
    w = SlotServingWorkload(tiny.model, tiny.vocab_size, serving(), "cpu", 0, 24)
    check = check_tokens(ServedTokenCheck(w, reference.input_ids, 8), reference, 1e-3)
    assert check.passed and check.tokens_equal and check.logit_diff_sd < 1e-4 and check.choices == 24

    step = w.decoder.step

    def one_position_behind(rows):  # a server that forgets to advance a slot's position once
        logits = step(rows)
        w.decoder.positions[:rows].sub_(1)
        return logits

    w.decoder.step = one_position_behind
    broken = check_tokens(ServedTokenCheck(w, reference.input_ids, 8), reference, 1e-3)
    assert not broken.tokens_equal and broken.logit_diff_sd > 0.1


def test_timeouts_and_failed_model_calls_are_accounted_for_and_the_server_recovers(tiny):
    w = SlotServingWorkload(tiny.model, tiny.vocab_size, serving(request_timeout_s=0.02), "cpu", 0, 224)
    late = w.run(request_stream("all_at_once", "fixed", 6, 24, 200, seed=0))
    counts = accounting(late.records, 6)
    assert counts["requests_timed_out"] >= 1 and counts["requests_completed"] < 6
    assert all("not finished 0.02 s" in r.error for r in late.records if r.status == "timed_out")
    w.v = serving()
    w.vocab_size = tiny.vocab_size * 4  # prompts with token ids the model has no embedding for
    broken = w.run(request_stream("all_at_once", "fixed", 6, 24, 4, seed=0))
    assert accounting(broken.records, 6)["requests_failed"] == 6
    assert all("index out of range" in r.error for r in broken.records)
    assert sum("before it was sent" in r.error for r in broken.records) == 0  # all at once: all were sent
    assert any("a model call failed" in note for note in broken.notes)
    w.vocab_size = tiny.vocab_size
    again = w.run(request_stream("all_at_once", "fixed", 4, 24, 4, seed=0))
    assert accounting(again.records, 4)["requests_completed"] == 4
    assert w.facts()["serving_restarts_count"] == 1  # started again after the failed call


class FakeClock:
    """Time that passes only when the server sleeps or a step is taken (so arrivals are exact)."""

    def __init__(self):
        self.t = 100.0
        self.slept = []

    def __call__(self):
        self.t += 1e-4  # every reading: a little time passes, as a model call takes some
        return self.t

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.t += seconds


def test_poisson_requests_start_on_their_schedule_and_a_closed_loop_keeps_its_concurrency(tiny):
    clock = FakeClock()
    w = SlotServingWorkload(tiny.model, tiny.vocab_size, serving(max_batch=8, concurrency=2), "cpu", 0, 40,
                            clock=clock, sleep=clock.sleep)
    specs = request_stream("poisson", "fixed", 6, 24, 4, seed=2, rate_rps=5.0)
    poisson = w.run(specs)
    assert accounting(poisson.records, 6)["requests_completed"] == 6
    assert clock.slept and all(s > 0 for s in clock.slept)  # it waited for arrivals by sleeping, never spinning
    for spec, r in zip(specs, poisson.records):
        assert r.sent_s - poisson.started_s == pytest.approx(spec.arrival_s, abs=0.01)
    closed = w.run(request_stream("closed_loop", "uniform", 8, 24, 8, seed=1))
    assert accounting(closed.records, 8)["requests_completed"] == 8
    sent = sorted(r.sent_s for r in closed.records)
    assert all(sum(r.sent_s <= t < r.client_done_s for r in closed.records) <= 2 for t in sent)


def test_the_serving_protocol_runs_on_the_slot_server_and_its_rows_say_which_server(tiny):
    s = to_settings(compose(["hardware=cpu", "scenario=serving", "serving.server=ecosweep", "serving.max_batch=4",
                             "serving.requests=8", "input_tokens=24", "output_tokens=8"]))
    specs = request_stream("all_at_once", "fixed", 8, 24, 8, seed=0)
    w = SlotServingWorkload(tiny.model, tiny.vocab_size, s.serving, "cpu", 0, 32)
    quick = MeasurementConfig(name="t", meter="none", min_window_s=0.0, prefill_min_window_s=0.0, warmup_min_s=0.0,
                              max_repetitions=3, target_ci_pct=0.0, idle_settle_s=0.0, idle_window_s=0.05)
    protocol = ServingProtocol(w, specs, warmup_stream(specs, 4), s.serving, FakePowerMeter(lambda t: 200.0), quick,
                               repetitions=2, warmup=1)
    base = {**config_row(Cell(cell_id(s), s), "run"), "device_name": "cpu0", "gpu_uuid": None}
    rows = protocol.run(base).rows
    assert len(rows) >= 2 and all(r["requests_completed"] == 8 for r in rows)
    assert all(r["serving_load"] == "max4-all-ecosweep" for r in rows)
    # slots x tokens x layers x (keys + values) x kv heads x head dim x 4 bytes (float32), also after close()
    config = tiny.model.config
    head_dim = config.hidden_size // config.num_attention_heads
    expected_mib = 4 * 32 * config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * 4 / 2**20
    w.close()
    assert w.facts()["serving_kv_cache_mib"] == pytest.approx(expected_mib)
    assert len(protocol.request_rows) == 8 * len(rows)


@pytest.mark.parametrize("overrides,needle", [
    (["serving.server=vllm"], "serving.server='vllm' is not a valid choice; choose one of: transformers"),
    (["serving.server=ecosweep", "serving.compile_level=2"], "serving.compile_level=2 sets transformers' compiling"),
    (["serving.server=ecosweep", "serving.max_memory_percent=0.5"], "serving.max_memory_percent=0.5 sizes"),
    (["serving.server=ecosweep", "quantization=int8"], "serving.server=ecosweep serving.cuda_graphs=off"),
    (["serving.server=ecosweep", "model=Phi-3-mini"], "not model=Phi-3-mini"),
])
def test_what_the_slot_server_cannot_serve_is_refused_with_the_value_and_the_choices(overrides, needle):
    problems = validate_study(to_settings(compose(["scenario=serving", *overrides])))
    assert any(needle in p for p in problems), problems


def test_llm_int8_is_served_uncaptured_and_the_default_server_keeps_every_stored_cell_id():
    uncaptured = ["scenario=serving", "serving.server=ecosweep", "quantization=int8", "serving.cuda_graphs=off"]
    assert validate_study(to_settings(compose(uncaptured))) == []
    # the served cells committed before serving.server existed: their configs still give their ids
    from omegaconf import OmegaConf

    stored = sorted(glob.glob(str(REPO / "experiments/serving_load/*/serving_b64/configs/*.yaml")))
    assert stored
    for path in stored:
        settings = to_settings(OmegaConf.merge(OmegaConf.structured(StudyConfig), OmegaConf.load(path)))
        assert cell_id(settings) == Path(path).stem
    default = to_settings(compose(["scenario=serving"]))
    slots = dataclasses.replace(default, serving=dataclasses.replace(default.serving, server="ecosweep"))
    assert cell_id(slots) != cell_id(default) and serving_load(slots.serving) == "max64-all-ecosweep"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_captured_steps_decode_what_generate_decodes():
    s = to_settings(compose(["hardware=cpu", "quantization=fp16"]))
    loaded = load_model(s, "cuda")
    reference = FixedLengthGeneration(model=loaded.model, vocab_size=loaded.vocab_size, batch_size=5,
                                      input_tokens=16, output_tokens=12, seed=0, device="cuda")
    w = SlotServingWorkload(loaded.model, loaded.vocab_size, serving(max_batch=8), "cuda", 0, 28)
    w.start()
    assert sorted(w.graphs) == [1, 2, 4, 8] and w.facts()["serving_cuda_graphs"] == "decode=True,rows=1/2/4/8"
    assert check_tokens(ServedTokenCheck(w, reference.input_ids, 12), reference, 0.25).passed
    run = w.run(request_stream("all_at_once", "uniform", 12, 16, 12, seed=0))
    assert accounting(run.records, 12)["requests_completed"] == 12
    w.close()  # what ran is still reported once the server is closed (rows get their facts after it)
    assert w.facts()["serving_cuda_graphs"] == "decode=True,rows=1/2/4/8"
