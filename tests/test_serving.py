"""The served-load scenario (#33) on the CPU: seeded streams, the steady-state window rule, percentiles and goodput
against values computed by hand, every request accounted for (also ones that fail or time out on purpose) through
transformers' real continuous batching with the tiny model, and bad serving.* values refused before anything loads."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from ecosweep.analysis.serving import serving_figure, serving_section
from ecosweep.cells import Cell, cell_id, measured_identity, to_settings
from ecosweep.config.lengths_file import LengthsFileError
from ecosweep.config.schema import MeasurementConfig, ServingConfig, SloConfig
from ecosweep.config.validate import validate_study
from ecosweep.measure.serving_protocol import ServingProtocol, steady_columns
from ecosweep.measure.serving_stats import (
    RequestRecord,
    accounting,
    goodput_columns,
    latency_columns,
    steady_window,
)
from ecosweep.run.serving_cell import warmup_stream
from ecosweep.run.worker import config_row
from ecosweep.tracking.study_summary import serving_choices, serving_metrics
from ecosweep.workload.models import load_model
from ecosweep.workload.request_stream import arrival_times_s, request_lengths, request_stream
from ecosweep.workload.serving import ServingRun, ServingWorkload
from fake_power_meter import FakePowerMeter

from conftest import compose, run_cli

NAN = math.nan


def record(i: int, admitted: float, finished: float, *, ttft_ms: float = 10.0, tokens: int = 3,
           status: str = "completed", sent: float = 0.0) -> RequestRecord:
    first = admitted + ttft_ms / 1000.0
    times = tuple(np.linspace(first, finished, tokens)) if status == "completed" else ()
    return RequestRecord(f"req{i:05d}", 8, tokens, tokens if status == "completed" else 0, status, sent_s=sent,
                         created_s=admitted, admitted_s=admitted, first_token_s=first, last_token_s=finished,
                         finished_s=finished, client_first_token_s=first, client_done_s=finished,
                         token_times_s=times)


# --- the stream ---------------------------------------------------------------------------------------------------
def test_poisson_arrivals_are_seeded_and_have_the_asked_rate():
    a, b = arrival_times_s("poisson", 4000, 8.0, seed=3), arrival_times_s("poisson", 4000, 8.0, seed=3)
    assert a == b and a != arrival_times_s("poisson", 4000, 8.0, seed=4)
    gaps = np.diff([0.0, *a])
    assert gaps.min() > 0 and np.mean(gaps) == pytest.approx(1 / 8.0, rel=0.05)
    assert arrival_times_s("all_at_once", 3, 8.0, 0) == [0.0, 0.0, 0.0]
    assert arrival_times_s("closed_loop", 2, 8.0, 0) == [None, None]


def test_length_distributions_are_seeded_bounded_and_fit_the_context(tmp_path):
    assert request_lengths("fixed", 3, 128, 64, 0) == [(128, 64)] * 3
    uniform = request_lengths("uniform", 500, 128, 64, seed=1, spread=0.5)
    assert uniform == request_lengths("uniform", 500, 128, 64, seed=1, spread=0.5)
    assert all(64 <= i <= 192 and 32 <= o <= 96 for i, o in uniform) and len(set(uniform)) > 100
    chat = request_lengths("chat", 20000, 0, 0, seed=2)
    assert np.mean([i for i, _ in chat]) == pytest.approx(161, rel=0.06)
    assert np.mean([o for _, o in chat]) == pytest.approx(338, rel=0.06)
    assert all(i + o <= 512 for i, o in request_lengths("chat", 2000, 0, 0, seed=2, max_total_tokens=512))
    trace = tmp_path / "lengths.jsonl"
    trace.write_text('{"input_tokens": 10, "output_tokens": 5}\n\n{"input_tokens": 20, "output_tokens": 7}\n')
    assert request_lengths("file", 3, 0, 0, 0, lengths_file=str(trace)) == [(10, 5), (20, 7), (10, 5)]
    trace.write_text('{"input_tokens": 10, "output_tokens": 5}\n{"input_tokens": "x"}\n')
    with pytest.raises(LengthsFileError, match="line 2"):
        request_lengths("file", 3, 0, 0, 0, lengths_file=str(trace))


def test_a_stream_is_the_same_requests_in_every_run():
    a = request_stream("poisson", "uniform", 20, 64, 32, seed=5, rate_rps=2.0)
    assert a == request_stream("poisson", "uniform", 20, 64, 32, seed=5, rate_rps=2.0)
    assert [x.request_id for x in a] == [f"req{i:05d}" for i in range(20)]
    assert all(x.arrival_s < y.arrival_s for x, y in zip(a, a[1:]))


# --- what a repetition's requests say -------------------------------------------------------------------------------
def test_steady_window_opens_when_the_batch_is_full_and_closes_when_the_drain_begins():
    records = [record(0, 0.0, 10.0), record(1, 1.0, 5.0), record(2, 5.0, 12.0)]
    window = steady_window(records, "all_at_once", cap=2)
    assert (window.t0_s, window.t1_s, window.rule) == (1.0, 10.0, "batch_full")
    assert steady_window(records, "all_at_once", cap=3) is None  # never three in flight
    sent = [record(i, i, i + 0.5, sent=float(i)) for i in range(10)]
    window = steady_window(sent, "poisson", cap=4)
    assert (window.t0_s, window.t1_s, window.rule) == (1.0, 9.0, "arrivals")


def test_steady_window_energy_and_tokens_from_a_meter_with_known_power():
    records = [record(0, 0.0, 10.0, tokens=11), record(1, 1.0, 5.0, tokens=5), record(2, 5.0, 12.0, tokens=8)]
    offset = 1000.0  # Unix seconds = perf_counter seconds + offset
    meter = FakePowerMeter(lambda t: 200.0 if offset + 1.0 <= t < offset + 10.0 else 50.0)
    run = ServingRun(records, 0.0, 12.0, offset)
    columns = steady_columns(run, ServingConfig(max_batch=2, arrival="all_at_once"), meter, idle_w=40.0)
    in_window = sum(1.0 <= t < 10.0 for r in records for t in r.token_times_s)
    assert columns["steady_window_s"] == pytest.approx(9.0)
    assert columns["steady_energy_j"] == pytest.approx(200.0 * 9.0, rel=1e-3)
    assert columns["steady_output_tokens"] == in_window
    assert columns["steady_energy_j_per_output_token"] == pytest.approx(1800.0 / in_window, rel=1e-3)
    assert columns["steady_net_energy_j_per_output_token"] == pytest.approx((1800.0 - 40.0 * 9.0) / in_window,
                                                                            rel=1e-3)
    # r0 runs all 9 s of it, r1 its 4 s, r2 its 5 s: 18 request-seconds over 9 s
    assert columns["steady_batch_mean_requests"] == pytest.approx(2.0)


def test_percentiles_and_goodput_equal_values_computed_by_hand():
    ttfts, tpots = [100, 200, 300, 400, 600], [10, 20, 40, 25, 5]
    records = []
    for i, (ttft, tpot) in enumerate(zip(ttfts, tpots)):
        first = ttft / 1000.0
        last = first + 10 * tpot / 1000.0  # 11 tokens: 10 gaps
        records.append(RequestRecord(f"req{i:05d}", 8, 11, 11, "completed", sent_s=0.0, created_s=0.0,
                                     admitted_s=0.0, first_token_s=first, last_token_s=last, finished_s=last,
                                     client_first_token_s=first, client_done_s=last))
    records.append(RequestRecord("req00005", 8, 11, 0, "failed", sent_s=0.0, error="boom"))
    lat = latency_columns(records)
    assert lat["ttft_ms_p50"] == pytest.approx(300.0)
    assert lat["ttft_ms_p90"] == pytest.approx(400 + 0.6 * 200)  # linear interpolation at rank 3.6
    assert lat["tpot_ms_p50"] == pytest.approx(20.0)
    assert lat["ttft_ms_clock_diff_pct"] == pytest.approx(0.0)
    slos = {"interactive": SloConfig(500, 30), "conversational": SloConfig(2000, 100)}
    good = goodput_columns(records, slos, duration_s=2.0)
    assert good["slo_names"] == "interactive,conversational"
    assert good["goodput_rps_by_slo"] == pytest.approx([3 / 2.0, 5 / 2.0])  # 100/10, 200/20, 400/25 meet 500/30
    assert good["slo_met_share_by_slo"] == pytest.approx([3 / 6, 5 / 6])
    assert accounting(records, 6) == {"requests_sent": 6, "requests_completed": 5, "requests_failed": 1,
                                      "requests_timed_out": 0}
    with pytest.raises(AssertionError, match="7 requests sent"):
        accounting(records, 7)


# --- served through transformers' continuous batching ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    s = to_settings(compose(["hardware=cpu"]))
    return load_model(s, "cpu")


def serving(**kw) -> ServingConfig:
    return ServingConfig(**{"max_batch": 4, "requests": 8, **kw})


def quick() -> MeasurementConfig:
    return MeasurementConfig(name="t", meter="none", min_window_s=0.0, prefill_min_window_s=0.0, warmup_min_s=0.0,
                             max_repetitions=4, target_ci_pct=0.0, idle_settle_s=0.0, idle_window_s=0.05)


def test_every_request_completes_with_exactly_its_tokens_and_latencies_agree_with_the_client(tiny):
    v = serving(lengths="uniform")
    specs = request_stream("all_at_once", "uniform", 8, 24, 12, seed=0)
    w = ServingWorkload(tiny.model, tiny.vocab_size, v, "cpu", 0, longest_request_tokens=64)
    try:
        run = w.run(specs)
    finally:
        w.close()
    assert accounting(run.records, 8)["requests_completed"] == 8
    assert [r.tokens_generated for r in run.records] == [x.output_tokens for x in specs]  # EOS cannot end one early
    for r in run.records:
        assert r.sent_s <= r.admitted_s <= r.first_token_s <= r.last_token_s <= r.finished_s
        assert r.client_done_s >= r.finished_s and r.client_e2e_ms == pytest.approx(r.e2e_ms, rel=0.1, abs=5.0)


def test_requests_that_time_out_or_fail_on_purpose_are_accounted_for_and_the_server_recovers(tiny):
    specs = request_stream("all_at_once", "fixed", 6, 24, 200, seed=0)
    w = ServingWorkload(tiny.model, tiny.vocab_size, serving(request_timeout_s=0.02), "cpu", 0, 256)
    try:
        late = w.run(specs)
        counts = accounting(late.records, 6)
        assert counts["requests_timed_out"] >= 1 and counts["requests_completed"] < 6
        assert all("not finished 0.02 s" in r.error for r in late.records if r.status == "timed_out")
        w.v = serving()  # the default timeout again
        w.vocab_size = tiny.vocab_size * 4  # prompts with token ids the model has no embedding for
        broken = w.run(request_stream("all_at_once", "fixed", 4, 24, 4, seed=0))
        assert accounting(broken.records, 4)["requests_failed"] == 4
        assert all("index out of range" in r.error for r in broken.records)
        w.vocab_size = tiny.vocab_size
        again = w.run(request_stream("all_at_once", "fixed", 4, 24, 4, seed=0))
        assert accounting(again.records, 4)["requests_completed"] == 4
        # started again after the timeouts (cancelled requests left behind) and after the failure stopped it
        assert w.facts()["serving_restarts_count"] == 2
        assert any("timed out" in note for note in late.notes)
    finally:
        w.close()


def test_a_closed_loop_keeps_its_concurrency_and_poisson_requests_go_out_on_their_schedule(tiny):
    w = ServingWorkload(tiny.model, tiny.vocab_size, serving(max_batch=8, concurrency=2), "cpu", 0, 64)
    try:
        closed = w.run(request_stream("closed_loop", "uniform", 8, 24, 8, seed=1))
        poisson_specs = request_stream("poisson", "fixed", 6, 24, 4, seed=2, rate_rps=20.0)
        poisson = w.run(poisson_specs)
    finally:
        w.close()
    assert accounting(closed.records, 8)["requests_completed"] == 8
    sent = sorted(r.sent_s for r in closed.records)
    # two in flight at most: a request goes out only when an earlier one has come back to the client
    assert all(sum(r.sent_s <= t < r.client_done_s for r in closed.records) <= 2 for t in sent)
    assert accounting(poisson.records, 6)["requests_completed"] == 6
    for spec, r in zip(poisson_specs, poisson.records):
        assert r.sent_s - poisson.started_s == pytest.approx(spec.arrival_s, abs=0.06)  # within one client poll


@pytest.fixture(scope="module")
def served(tiny):
    """Two precisions' served cells through ServingProtocol on a meter of known power (fp32 draws 100 W, the other
    1,000 W: timing noise cannot turn their order): (rows, request rows)."""
    rows, requests = [], []
    for quantization, watts in (("fp32", 100.0), ("fp32_hot", 1000.0)):
        s = to_settings(compose(["hardware=cpu", "scenario=serving", "serving.max_batch=4", "serving.requests=8",
                                 "input_tokens=24", "output_tokens=8"]))
        # limits no CPU run can miss, whatever else the machine does (the tiny model's TPOT is ~5 ms when idle)
        v = dataclasses.replace(s.serving, slos={"interactive": SloConfig(60_000, 10_000),
                                                 "conversational": SloConfig(120_000, 20_000)})
        s = dataclasses.replace(s, serving=v)
        specs = request_stream("all_at_once", "fixed", 8, 24, 8, seed=0)
        w = ServingWorkload(tiny.model, tiny.vocab_size, v, "cpu", 0, 64)
        protocol = ServingProtocol(w, specs, warmup_stream(specs, v.max_batch), v, FakePowerMeter(lambda t, w=watts: w),
                                   quick(), repetitions=2, warmup=1)
        base = {**config_row(Cell(cell_id(s), s), "run"), "quantization": quantization, "device_name": "cpu0",
                "gpu_uuid": None}
        try:
            rows += protocol.run(base).rows
        finally:
            w.close()
        requests += [{"quantization": quantization, **r} for r in protocol.request_rows]
    return pd.DataFrame(rows), pd.DataFrame(requests)


def test_the_serving_protocol_rows_account_for_every_request_and_their_percentiles_recompute(served):
    rows, requests = served
    assert len(rows) == 4 and len(requests) == 32
    for _, row in rows.iterrows():
        assert row["requests_sent"] == row["requests_completed"] == 8
        watts = 100.0 if row["quantization"] == "fp32" else 1000.0
        assert row["tokens_generated"] == 64 and row["energy_j"] == pytest.approx(watts * row["seconds"], rel=1e-3)
        assert row["energy_j_per_request"] == pytest.approx(row["energy_j"] / 8)
        assert row["steady_window_rule"] == "batch_full" and 0 < row["steady_window_s"] <= row["seconds"]
        assert row["steady_energy_j"] == pytest.approx(watts * row["steady_window_s"], rel=1e-2)
        mine = requests[(requests.repetition == row["repetition"]) & (requests.quantization == row["quantization"])]
        assert row["ttft_ms_p90"] == pytest.approx(np.percentile(mine.ttft_ms, 90))
        assert row["tpot_ms_p50"] == pytest.approx(np.percentile(mine.tpot_ms, 50))


def test_the_report_names_the_lowest_energy_load_within_each_slo_and_mlflow_gets_its_numbers(served, tmp_path):
    rows, _ = served
    lines, tables = serving_section(rows, pd.DataFrame(), lambda df, cols: df[cols].to_markdown())
    table, best = tables["serving"], tables["serving_best_within_slo"]
    assert set(table.quantization) == {"fp32", "fp32_hot"} and (table.n == 2).all()
    cool = table.set_index("quantization").energy_j_per_request_mean
    assert cool["fp32"] < cool["fp32_hot"]  # the same stream at 100 W against 1,000 W
    assert set(best.slo) == {"interactive", "conversational"} and (best.quantization == "fp32").all()
    assert any("lowest energy per request" in line and "**fp32 at max4-all**" in line for line in lines)
    for name, df in tables.items():
        df.to_csv(tmp_path / f"{name}.csv", index=False)
    metrics = serving_metrics(tmp_path)
    assert metrics["serving.best_j_per_request.tiny-llama.interactive"] == pytest.approx(cool["fp32"])
    assert serving_choices(tmp_path) == {"serving_best.tiny-llama.interactive": "fp32 at max4-all",
                                         "serving_best.tiny-llama.conversational": "fp32 at max4-all"}
    drawn = serving_figure(table, tmp_path / "figures")
    assert [p.suffix for p in drawn] == [".png", ".pdf"] and drawn[0].stat().st_size > 10_000


def test_two_servers_of_one_load_are_two_cells_two_report_rows_and_two_lines(served, tmp_path, monkeypatch):
    """serving.cuda_graphs / compile_level / max_memory_percent away from their defaults enter the load's name
    (and so the label, the report's rows and the figure's lines); the default server's name is the load alone."""
    from ecosweep.config.load_names import server_variant_of_load, serving_load

    default = to_settings(compose(["scenario=serving", "serving.max_batch=4"]))
    forced = to_settings(compose(["scenario=serving", "serving.max_batch=4", "serving.cuda_graphs=on",
                                  "serving.compile_level=2", "serving.max_memory_percent=0.5"]))
    assert serving_load(default.serving) == "max4-all"
    assert serving_load(forced.serving) == "max4-all-graphs_on-compile2-mem50"
    assert server_variant_of_load(serving_load(forced.serving)) == "graphs_on-compile2-mem50"
    assert server_variant_of_load("max64-poisson4rps") == "" and server_variant_of_load("max8-closed16") == ""
    assert "/serving/max4-all-graphs_on-compile2-mem50/" in Cell(cell_id(forced), forced).label
    assert cell_id(forced) != cell_id(default)
    rows, _ = served
    # the same measured rows once more, as if served by the forced server: the report must not pool them
    variant = rows.assign(serving_load=serving_load(forced.serving), cell_id=rows.cell_id + "v")
    both = pd.concat([rows, variant], ignore_index=True)
    _, tables = serving_section(both, pd.DataFrame(), lambda df, cols: df[cols].to_markdown())
    table = tables["serving"]
    assert len(table) == 4 and (table.n == 2).all()
    assert sorted(set(table.serving_load)) == ["max4-all", "max4-all-graphs_on-compile2-mem50"]
    import ecosweep.analysis.serving as serving_analysis

    legends = []
    save = serving_analysis._save

    def save_and_read_legend(fig, out_dir, name):
        legends.append([t.get_text() for t in fig.axes[0].get_legend().get_texts()])
        return save(fig, out_dir, name)

    monkeypatch.setattr(serving_analysis, "_save", save_and_read_legend)
    drawn = serving_figure(table, tmp_path / "figures")
    assert drawn and drawn[0].suffix == ".png"
    assert sorted(legends[0]) == ["fp32", "fp32 (graphs_on-compile2-mem50)", "fp32_hot",
                                  "fp32_hot (graphs_on-compile2-mem50)"]


# --- refusals and ids ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides,needle", [
    (["serving.arrival=burst"], "serving.arrival='burst' is not a valid choice; choose one of: all_at_once"),
    (["serving.max_batch=0"], "serving.max_batch=0 is out of range"),
    (["serving.arrival=poisson", "serving.request_rate_rps=0"], "serving.request_rate_rps=0.0 is out of range"),
    (["serving.lengths=file"], "serving.lengths=file needs serving.lengths_file"),
    (["serving.lengths=file", "serving.lengths_file=/nonexistent.jsonl"], "cannot be read"),
    (["serving.lengths=gaussian"], "serving.lengths='gaussian' is not a valid choice"),
    (["engine=graph"], "engine=graph applies to fixed batches"),
    (["batch_size=8"], "batch_size=8 sizes fixed batches"),
    (["serving.slos.interactive.tpot_ms=-1"], "serving.slos.interactive.tpot_ms=-1.0 is out of range"),
    (["serving.compile_level=5"], "serving.compile_level=5 is out of range"),
])
def test_bad_serving_settings_are_refused_with_the_value_and_the_choices(overrides, needle):
    problems = validate_study(to_settings(compose(["scenario=serving", *overrides])))
    assert any(needle in p for p in problems), problems


def test_a_bad_serving_setting_stops_the_command_before_anything_loads(tmp_path):
    r = run_cli(["scenario=serving", "serving.arrival=burst", f"output_root={tmp_path / 'out'}", "tracking=none"],
                cwd=tmp_path)
    assert r.returncode == 2 and "serving.arrival='burst'" in r.stderr and "poisson" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stdout + r.stderr and not (tmp_path / "out").exists()


def test_fixed_batch_cells_keep_their_ids_and_each_served_load_has_its_own():
    s = to_settings(compose([]))
    assert "scenario" not in measured_identity(s)
    assert cell_id(s) == "d3880b80980e"  # the default cell's id before the scenario group existed
    loads = {cell_id(to_settings(compose(["scenario=serving", f"serving.max_batch={n}"]))) for n in (8, 16, 32)}
    assert len(loads) == 3 and cell_id(s) not in loads


@pytest.mark.slow
@pytest.mark.integration
def test_a_served_study_writes_rows_requests_and_its_report_section(tmp_path):
    out = tmp_path / "out"
    r = run_cli(["-m", "scenario=serving", "quantization=fp32,nf4", "serving.max_batch=4", "serving.requests=8",
                 "input_tokens=24", "output_tokens=8", "measurement=quick", "repetitions=2", "tracking=none",
                 f"output_root={out}", "study=served"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "/serving/max4-all/" in r.stdout
    cells = pd.concat(pd.read_parquet(p) for p in (out / "served" / "cells").glob("*.parquet"))
    assert set(cells.scenario) == {"serving"} and (cells.status == "ok").all()
    assert (cells.requests_sent == cells.requests_completed + cells.requests_failed + cells.requests_timed_out).all()
    # what the server resolved, read while it ran (stopping it switches the model's attention back): on a CPU
    # transformers serves with sdpa over its paged cache (5.17 names it paged|sdpa, 5.25 sdpa), no CUDA graphs,
    # no asynchronous batching
    assert len(set(cells.attn_implementation)) == 1 and cells.attn_implementation.iloc[0] in {"paged|sdpa", "sdpa"}
    assert set(cells.serving_cuda_graphs) == {"varlen=False,decode=False"} and not cells.serving_async_batching.any()
    requests = [pd.read_parquet(p) for p in (out / "served" / "requests").glob("*.parquet")]
    assert sorted(len(t) for t in requests) == [16, 16]
    report = (out / "served" / "report" / "report.md").read_text()
    assert "## Served load" in report and "J per request" in report
