"""The kernel profile (profile=true): the classification table on kernel names as PyTorch, cuBLAS, FlashAttention,
Triton and bitsandbytes name them, the busy/idle arithmetic, and a profiled CPU cell end to end (its profiled call
after the energy windows, its trace kept, its rows carrying the breakdown)."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest

from ecosweep.cells import cell_id, plan_cells, to_settings
from ecosweep.profiling.rules import KernelRecord, classify
from ecosweep.profiling.summary import busy_seconds, summarize
from ecosweep.results.schema import KERNEL_CLASSES

from conftest import REPO, compose

# (kernel name, launching op, ops around it) -> class. GPU names as the PyTorch profiler reports them on Hopper
# (cuBLAS/cuBLASLt, PyTorch's own kernels, FlashAttention 2 in PyTorch, Inductor's Triton kernels), and the
# bitsandbytes custom ops that launch its kernels (torch.ops.bitsandbytes.*, 0.50).
BNB_INT8 = ("ecosweep::module::Linear8bitLt",)
CASES = [
    ("sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel__5x_cublas",
     "aten::mm", (), "dense_gemm"),
    ("nvjet_hsh_128x256_64x4_2x1_v_bz_coopA_TNT", "aten::addmm", (), "dense_gemm"),
    ("void gemv2T_kernel_val<int, int, __half, __half, float, 128, 16, 4, 4, false, false>", "aten::mm", (), "dense_gemm"),
    ("ampere_fp16_s16816gemm_fp16_128x128_ldg8_f2f_stages_32x5_tn", "aten::mm", (), "dense_gemm"),
    ("triton_tem_fused_mm_0", "", (), "dense_gemm"),
    ("sm90_xmma_gemm_e4m3e4m3_e4m3f32_f32_tn_n_tilesize128x128x128_cublas", "aten::_scaled_mm", (), "fp8_gemm"),
    ("sm80_xmma_gemm_i8i8_i8i32_f32_tn_n_tilesize128x128x64_cublas", "aten::_int_mm", (), "int8_gemm"),
    ("sm80_xmma_gemm_i8i8_i8i32_f32_tn_n_tilesize128x128x64_cublas", "bitsandbytes::int8_linear_matmul",
     (*BNB_INT8, "bitsandbytes::int8_scaled_mm", "bitsandbytes::int8_linear_matmul"), "int8_gemm"),
    ("void kInt8VectorQuant<__half, 1024, 0>(__half*, signed char*, float*, float, int, int)",
     "bitsandbytes::int8_vectorwise_quant", (*BNB_INT8, "bitsandbytes::int8_vectorwise_quant"), "act_quantize"),
    ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<bool, at::native::func_wrapper_t<bool, "
     "at::native::or_kernel_cuda>, unsigned int, bool, 4, 4>>", "aten::any",
     (*BNB_INT8, "bitsandbytes::int8_vectorwise_quant", "aten::any"), "llm_int8_outliers"),
    ("void at::native::index_elementwise_kernel<128, 4>", "aten::index",
     (*BNB_INT8, "bitsandbytes::int8_mixed_scaled_mm", "aten::index"), "llm_int8_outliers"),
    ("sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize64x64x64_cublas", "aten::mm",
     (*BNB_INT8, "bitsandbytes::int8_mixed_scaled_mm", "aten::addmm", "aten::mm"), "llm_int8_side_gemm"),
    ("void kdequant_mm_int32_fp16<4, 512>(int*, float*, float*, __half*, __half*, int, int, int)",
     "bitsandbytes::int8_mm_dequant", (*BNB_INT8, "bitsandbytes::int8_mm_dequant"), "dequantize"),
    ("void kgemm_4bit_inference_naive<__half, 128, 16>(int, int, int, __half*, unsigned char*, float*, "
     "__half const*, __half*, int, int, int, int)", "bitsandbytes::gemm_4bit",
     ("ecosweep::module::Linear4bit", "bitsandbytes::gemm_4bit"), "nf4_fp4"),
    ("void kDequantizeBlockwise<__half, 512, 64, 8, 2>(float*, unsigned char*, float*, __half*, int, int)", "", (),
     "nf4_fp4"),
    # NF4 as an H100 recorded it (2026-11-28): the fused 4-bit kernels, by name alone in a captured graph
    ("void gemm_4bit_simt<__half, 1>(__half const*, unsigned char const*, float const*, __half*, int, int, int)",
     "", (), "nf4_fp4"),
    ("void gemm_4bit_sm80_m16n8k16<__half, 32, 64, 128>(__half const*, unsigned char const*)", "bitsandbytes::gemm_4bit",
     ("ecosweep::module::Linear4bit", "bitsandbytes::gemm_4bit"), "nf4_fp4"),
    # ... and above batch 1 the fp16 GEMM on the weight it dequantized: dense, not NF4
    ("nvjet_sm90_hsh_64x16_64x16_2x1_v_bz_splitK_TNT", "aten::mm",
     ("ecosweep::module::Linear4bit", "bitsandbytes::gemm_4bit", "aten::linear", "aten::matmul", "aten::mm"),
     "dense_gemm"),
    ("void at::native::(anonymous namespace)::indexSelectSmallIndex<c10::Half, long, unsigned int, 2, 2, -2>", "", (),
     "copy"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4, false, false, cutlass::half_t>>",
     "aten::_flash_attention_forward", (), "attention"),
    ("fmha_cutlassF_f16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel<cutlass::half_t>::Params)",
     "aten::_efficient_attention_forward", (), "attention"),
    ("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_1", "", (), "norm"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::pow_tensor_scalar_kernel>", "aten::pow",
     ("ecosweep::module::LlamaRMSNorm", "aten::pow"), "norm"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::(anonymous namespace)::neg_kernel_cuda>",
     "aten::neg", ("ecosweep::module::LlamaAttention", "aten::neg"), "attention"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::silu_kernel>", "aten::silu", (), "elementwise"),
    ("triton_poi_fused_add_mul_silu_0", "", (), "elementwise"),
    ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::ArgMaxOps<float>>>",
     "aten::argmax", (), "elementwise"),
    ("Memcpy HtoD (Pageable -> Device)", "", (), "copy"),
    ("Memset (Device)", "", (), "copy"),
    ("void at::native::(anonymous namespace)::CatArrayBatchedCopy<at::native::(anonymous namespace)::OpaqueType<2>>",
     "aten::cat", (), "copy"),
    ("void at::native::index_elementwise_kernel<128, 4>", "aten::index_copy_", ("aten::index_copy_",), "copy"),
    ("my_custom_fused_thing_kernel", "", (), "unknown"),
]


@pytest.mark.parametrize("name,op,within,expected", CASES, ids=[f"{c[3]}:{c[0][:30]}" for c in CASES])
def test_each_kernel_lands_in_its_class(name, op, within, expected):
    assert expected in KERNEL_CLASSES
    assert classify(KernelRecord(name, 0.0, 1.0, op, within)) == expected


def test_busy_time_is_the_union_of_kernel_intervals():
    records = [KernelRecord("a", 0, 10), KernelRecord("b", 5, 10), KernelRecord("c", 30, 5), KernelRecord("d", 31, 1)]
    assert busy_seconds(records) == pytest.approx(20e-6)  # [0, 15) and [30, 35)
    assert busy_seconds([]) == 0.0


def test_summary_per_token_keeps_unknown_kernels_and_measures_idle_against_the_unprofiled_call():
    records = [KernelRecord("sm90_xmma_gemm_f16f16_cublas", 0, 600, "aten::mm"),
               KernelRecord("mystery_kernel", 700, 200), KernelRecord("mystery_kernel", 950, 100),
               KernelRecord("other_mystery", 1100, 50)]
    profile = summarize(records, "cuda", tokens=10, wall_s=4e-3, launches=40, trace_file="x.profile.json.gz",
                        measured_call_s=2e-3)
    row = profile.columns()
    assert row["profile_ms_per_tok_dense_gemm"] == pytest.approx(0.06)
    assert row["profile_ms_per_tok_unknown"] == pytest.approx(0.035)
    assert row["profile_unknown_kernels"] == "mystery_kernel; other_mystery"  # most time first, none dropped
    assert row["profile_gpu_busy_share"] == pytest.approx(0.95e-3 / 2e-3)   # against the call without profiler
    assert row["profile_gpu_idle_share"] == pytest.approx(1 - 0.95e-3 / 2e-3)
    assert row["profile_kernels_per_tok"] == 0.4 and row["profile_launches_per_tok"] == 4.0
    assert row["profile_wall_ms_per_tok"] == pytest.approx(0.4)
    assert sum(row[f"profile_ms_per_tok_{c}"] for c in KERNEL_CLASSES) == pytest.approx(0.095)
    on_cpu = summarize(records, "cpu", tokens=10, wall_s=4e-3, launches=0).columns()
    assert on_cpu["profile_gpu_busy_share"] is None and on_cpu["profile_launches_per_tok"] is None


def test_profile_is_in_the_id_only_when_on():
    base = to_settings(compose(["hardware=cpu"]))
    assert base.profile is False
    assert cell_id(to_settings(compose(["hardware=cpu", "profile=false"]))) == cell_id(base)
    assert cell_id(to_settings(compose(["hardware=cpu", "profile=true"]))) != cell_id(base)
    assert plan_cells([compose(["hardware=cpu", "profile=true"])])[0].label.endswith("/out64/profiled")


@pytest.mark.slow
def test_a_profiled_cpu_cell_profiles_after_its_windows_and_keeps_breakdown_and_trace(monkeypatch, tmp_path):
    """LLM.int8() on the tiny model: the profiled call starts after the meter closed its last window, the rows
    carry the int8 classes, and the trace is Chrome JSON that names bitsandbytes' ops."""
    from ecosweep.measure.meters.base import NullMeter
    from ecosweep.run import worker as cell_runner

    events = []

    class RecordingMeter(NullMeter):
        def _begin(self):
            events.append("window")

        def close(self):
            events.append("meter closed")
            super().close()

    real_profile_call = cell_runner.profile_call

    def recording_profile_call(*args, **kwargs):
        events.append("profile")
        return real_profile_call(*args, **kwargs)

    from ecosweep.run import metered

    monkeypatch.setattr(metered, "make_meter", lambda *a, **k: (RecordingMeter(), False))
    monkeypatch.setattr(cell_runner, "profile_call", recording_profile_call)
    overrides = ["hardware=cpu", "quantization=int8", "measurement=quick", "repetitions=2", "warmup=1",
                 "input_tokens=8", "output_tokens=4", "profile=true", f"output_root={tmp_path}"]
    cell = plan_cells([compose(overrides)])[0]
    outcome = cell_runner.execute_cell(cell)
    assert outcome.status == "ok", outcome.error
    assert events.count("profile") == 1 and events.index("profile") > events.index("meter closed")
    assert events.index("meter closed") > max(i for i, e in enumerate(events) if e == "window")
    row = outcome.rows[0]
    for kernel_class in ("int8_gemm", "act_quantize", "dequantize", "llm_int8_outliers", "dense_gemm", "attention"):
        assert row[f"profile_ms_per_tok_{kernel_class}"] > 0, kernel_class
    assert row["profile_ms_per_tok_nf4_fp4"] == 0 and row["profile_ms_per_tok_unknown"] == 0
    assert row["profile_unknown_kernels"] is None
    assert row["profile_gpu_busy_share"] is None  # a CPU has no kernels to be busy with
    in_classes = sum(row[f"profile_ms_per_tok_{c}"] for c in KERNEL_CLASSES)
    assert 0 < in_classes <= row["profile_wall_ms_per_tok"]
    assert all(r["profile_trace_file"] == f"{outcome.cell_id}.profile.json.gz" for r in outcome.rows)
    trace = json.loads(gzip.decompress(outcome.profile_trace))
    names = {e.get("name") for e in trace["traceEvents"]}
    assert "bitsandbytes::int8_vectorwise_quant" in names and "ecosweep::module::Linear8bitLt" in names
    steps = ("profile_call_s", "profile_events_s", "profile_trace_export_s", "profile_summary_s")
    assert all(outcome.profile_phases_s[step] > 0 for step in steps)  # where the profile step's time went
    assert sum(outcome.profile_phases_s[step] for step in steps) <= outcome.phases_s["profile_s"]
    kernels = list(csv.DictReader(io.StringIO(outcome.profile_kernels_csv)))
    assert {k["kernel_class"] for k in kernels if k["op"] == "bitsandbytes::int8_linear_matmul"} == {"int8_gemm"}
    assert all(k["kernel_class"] == classify(KernelRecord(k["kernel"], 0, 0, k["op"], tuple(k["within"].split(" > "))))
               for k in kernels)
    assert sum(float(k["total_us"]) for k in kernels) / 1e3 / 4 == pytest.approx(in_classes, rel=1e-3)
    # stored beside the cell, and reported: a table and a stacked bar
    from ecosweep.analysis.report import build_report
    from ecosweep.run.orchestrate import persist_outcome

    persist_outcome(cell, outcome)
    study = tmp_path / cell.settings.study
    assert (study / "traces" / f"{cell.id}.profile.json.gz").exists()
    assert (study / "traces" / f"{cell.id}.kernels.csv").read_text() == outcome.profile_kernels_csv
    report = build_report([study], tmp_path / "report").read_text()
    table = report.split("## Kernel profile (per generated token)")[1].split("\n## ")[0]
    assert "profile_ms_per_tok_llm_int8_outliers" in table and "profile_ms_per_tok_nf4_fp4" not in table
    assert list((tmp_path / "report" / "figures").glob("kernels_*_tiny-llama_1.png"))


def test_an_unprofiled_cell_makes_no_extra_call(monkeypatch):
    from ecosweep.run import worker as cell_runner

    def refuse(*args, **kwargs):
        raise AssertionError("profile=false must not profile")

    monkeypatch.setattr(cell_runner, "profile_workload", refuse)
    overrides = ["hardware=cpu", "measurement=quick", "repetitions=1", "warmup=0", "input_tokens=4", "output_tokens=2"]
    outcome = cell_runner.execute_cell(plan_cells([compose(overrides)])[0])
    assert outcome.status == "ok" and outcome.profile_trace is None
    assert all(r.get("profile_trace_file") is None for r in outcome.rows) and "profile_s" not in outcome.phases_s


def test_a_profile_that_fails_keeps_the_measured_rows_and_says_why(monkeypatch):
    """The profiled call comes after the energy windows: when the profiler cannot run (no CUPTI, say), the cell
    is still ok, with its measurements, and profile_error tells why its breakdown is missing."""
    from ecosweep.run import worker as cell_runner

    def no_cupti(*args, **kwargs):
        raise RuntimeError("CUPTI_ERROR_NOT_INITIALIZED")

    monkeypatch.setattr(cell_runner, "profile_workload", no_cupti)
    overrides = ["hardware=cpu", "measurement=quick", "repetitions=2", "warmup=0", "input_tokens=4", "output_tokens=2",
                 "profile=true"]
    outcome = cell_runner.execute_cell(plan_cells([compose(overrides)])[0])
    assert outcome.status == "ok" and len(outcome.rows) == 2 and all(r["tok_s"] > 0 for r in outcome.rows)
    assert all(r["profile_error"] == "RuntimeError: CUPTI_ERROR_NOT_INITIALIZED" for r in outcome.rows)
    assert all(r.get("profile_wall_ms_per_tok") is None for r in outcome.rows) and outcome.profile_trace is None


class _FakeKinetoEvent:
    """A Kineto event as ``prof.profiler.kineto_results.events()`` yields it. ``flags``: whether this torch's events
    have ``is_user_annotation`` (torch 2.13 does; an older one may not)."""

    def __init__(self, correlation, name, device, start_us, end_us, linked=0, thread=1, annotation=False, flags=True):
        from torch.autograd import DeviceType

        self._c, self._n, self._l, self._t = correlation, name, linked, thread
        self._d = DeviceType.CUDA if device == "cuda" else DeviceType.CPU
        self._start, self._end = int(start_us * 1000), int(end_us * 1000)
        if flags:
            self.is_user_annotation = lambda: annotation

    def name(self):
        return self._n

    def correlation_id(self):
        return self._c

    def linked_correlation_id(self):
        return self._l

    def device_type(self):
        return self._d

    def start_ns(self):
        return self._start

    def duration_ns(self):
        return self._end - self._start

    def start_thread_id(self):
        return self._t


def _kineto_events(flags):
    """One aten::mm (id 7, inside a Linear4bit scope) launching a GEMM through cudaLaunchKernel (runtime
    correlation 7 as well: the two id spaces overlap), one cudaGraphLaunch (correlation 9) replaying two kernels
    for aten::_graph_replay (id 3), and one kernel no operator launched. The profiler's own host events enclose
    aten::mm (Buffer Flush) and take its id (Activity Buffer Request): they are neither its launcher nor its
    scope. The Linear4bit scope is drawn on the GPU's timeline too, as torch 2.11 does (flagged as a user
    annotation where the events have the flag; where not, its name, a host event's, gives it away), and is no
    kernel. A memory record is no event at all."""
    return [_FakeKinetoEvent(2, "ecosweep::module::Linear4bit", "cpu", 0, 28, annotation=True, flags=flags),
            _FakeKinetoEvent(5, "Buffer Flush", "cpu", 0.5, 25, flags=flags),
            _FakeKinetoEvent(7, "aten::mm", "cpu", 1, 20, flags=flags),
            _FakeKinetoEvent(7, "Activity Buffer Request", "cpu", 4, 5, flags=flags),
            _FakeKinetoEvent(0, "[memory]", "cpu", 4, 4, flags=flags),
            _FakeKinetoEvent(3, "aten::_graph_replay", "cpu", 30, 40, flags=flags),
            _FakeKinetoEvent(7, "cudaLaunchKernel", "cpu", 2, 3, linked=7, flags=flags),
            _FakeKinetoEvent(9, "cudaGraphLaunch", "cpu", 31, 32, linked=3, flags=flags),
            _FakeKinetoEvent(2, "ecosweep::module::Linear4bit", "cuda", 5, 26, annotation=True, flags=flags),
            _FakeKinetoEvent(7, "sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_cublas", "cuda", 5, 15, linked=7, flags=flags),
            _FakeKinetoEvent(9, "void kgemm_4bit_inference_naive<__half, 128, 16>", "cuda", 33, 36, linked=3, flags=flags),
            _FakeKinetoEvent(9, "triton_poi_fused_add_mul_silu_0", "cuda", 36, 37, linked=3, flags=flags),
            _FakeKinetoEvent(11, "void at::native::vectorized_elementwise_kernel<4, fill>", "cuda", 45, 46, flags=flags)]


@pytest.mark.parametrize("flags", [True, False], ids=["events-with-annotation-flag", "events-without"])
def test_device_kernels_are_linked_to_their_operator_and_its_scopes(flags):
    """Kernels name the operator that launched them and the scopes around it, read straight from the Kineto
    events; the profiler's own work and the scopes torch 2.11 draws on the GPU are neither kernels nor launchers."""
    from ecosweep.profiling.trace import records_from_trace, trace_events_from_kineto
    results = type("Results", (), {"events": lambda self: _kineto_events(flags)})()
    records, launches = records_from_trace(trace_events_from_kineto(results), "cuda")
    assert launches == 2
    assert [(r.name[:12], r.op, r.within, r.duration_us) for r in records] == [
        ("sm90_xmma_ge", "aten::mm", ("ecosweep::module::Linear4bit", "aten::mm"), 10),
        ("void kgemm_4", "aten::_graph_replay", ("aten::_graph_replay",), 3),
        ("triton_poi_f", "aten::_graph_replay", ("aten::_graph_replay",), 1),
        ("void at::nat", "", (), 1)]
    assert [classify(r) for r in records] == ["dense_gemm", "nf4_fp4", "elementwise", "elementwise"]
    assert busy_seconds(records) == pytest.approx(15e-6)  # the scope's 21 us span is not GPU work


def test_utility_operators_torchs_tree_leaves_out_are_no_operators_here_either():
    """aten::is_leaf, record_function's enter op and the memory records are bookkeeping: on a CPU they would be
    operators of their own and take time from the operator around them."""
    from ecosweep.profiling.trace import records_from_trace, trace_events_from_kineto
    events = [_FakeKinetoEvent(1, "aten::mm", "cpu", 0, 10), _FakeKinetoEvent(2, "aten::is_leaf", "cpu", 1, 2),
              _FakeKinetoEvent(3, "profiler::_record_function_enter_new", "cpu", 3, 4),
              _FakeKinetoEvent(4, "aten::add", "cpu", 5, 8), _FakeKinetoEvent(0, "[memory]", "cpu", 6, 6)]
    results = type("Results", (), {"events": lambda self: events})()
    records, _ = records_from_trace(trace_events_from_kineto(results), "cpu")
    assert [(r.name, r.within, r.duration_us) for r in records] == [
        ("aten::mm", ("aten::mm",), 7.0), ("aten::add", ("aten::mm", "aten::add"), 3.0)]


def test_a_cpu_profile_read_from_kineto_matches_torchs_own_event_tree():
    """On a CPU the operators stand in for kernels: each with its self time and the scopes and operators around it.
    Read from the Kineto events, they are what torch's (slow) FunctionEvent tree of the same profile says."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from ecosweep.profiling.call import module_scopes
    from ecosweep.profiling.trace import records_from_trace, trace_events_from_kineto
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with module_scopes(model), torch.no_grad():
            for _ in range(3):
                model(torch.ones(2, 8))
    records, launches = records_from_trace(trace_events_from_kineto(prof.profiler.kineto_results), "cpu")

    def around(event):
        names = []
        while event is not None:
            names.append(event.name)
            event = event.cpu_parent
        return tuple(reversed(names))

    expected = sorted((e.time_range.start, e.name, around(e), e.self_cpu_time_total) for e in prof.events()
                      if not e.is_user_annotation and "::" in e.name)
    got = sorted((r.start_us, r.name, r.within, r.duration_us) for r in records)
    assert [g[1:3] for g in got] == [e[1:3] for e in expected]
    assert [g[3] for g in got] == pytest.approx([e[3] for e in expected], abs=0.01)  # microseconds
    assert launches == 0 and any("ecosweep::module::LayerNorm" in r.within for r in records)
    assert {r.op for r in records} >= {"aten::linear", "aten::layer_norm"}


H100_KERNELS = REPO / "experiments" / "kernel_profile" / "h100x4_2026-11-28" / "kernel_profile" / "kernel_names.csv"


def test_kernel_names_recorded_on_an_h100_land_in_their_classes():
    """Every distinct (kernel, launching op, scopes) of Mistral-7B fp16 / NF4 / LLM.int8() / pure int8 under eager
    and graph at batch 1 and 16, as an H100 recorded them: the committed classes are the rules' (the file was
    rebuilt with them), none is a profiler scope, each precision's own kernels land in its class, and the
    unknown ones are a trace of the time."""
    import pandas as pd

    names = pd.read_csv(H100_KERNELS, keep_default_na=False)
    assert len(names) > 400
    within = names.within.map(lambda w: tuple(w.split(" > ")) if w else ())
    classes = [classify(KernelRecord(k, 0.0, 0.0, op, w)) for k, op, w in zip(names.kernel, names.op, within)]
    assert classes == list(names.kernel_class)
    assert not names.kernel.str.startswith("ecosweep::module::").any()

    def classes_of(kernel="", op="", within=""):
        match = (names.kernel.str.contains(kernel) & names.op.str.contains(op) & names.within.str.contains(within))
        assert match.any(), (kernel, op, within)
        return set(names.kernel_class[match])

    assert classes_of(kernel=r"i16832gemm_s8") == {"int8_gemm"}
    assert classes_of(kernel=r"^void kInt8VectorQuant") == {"act_quantize"}
    assert classes_of(kernel=r"^void kdequant_mm_int32") == {"dequantize"}
    assert classes_of(kernel=r"gemm_4bit|kDequantizeBlockwise") == {"nf4_fp4"}
    assert classes_of(kernel=r"^nvjet_sm90", within=r"gemm_4bit") == {"dense_gemm"}
    assert classes_of(kernel=r"^nvjet_sm90", within=r"^(?!.*(gemm_4bit|int8_mixed))") == {"dense_gemm"}
    assert classes_of(kernel=r"^nvjet_sm90", op=r"^$") == {"dense_gemm"}  # in a graph: no op
    assert classes_of(kernel=r"sdpa.*flash") == {"attention"}
    assert classes_of(within=r"int8_mixed_scaled_mm > aten::addmm$") == {"llm_int8_side_gemm"}
    assert classes_of(kernel="reduce_kernel", op=r"^aten::any$", within="int8_vectorwise_quant") == {"llm_int8_outliers"}
    assert classes_of(within=r"^ecosweep::module::MistralRMSNorm") == {"norm"}
    unknown = names[names.kernel_class == "unknown"]
    assert unknown.total_us.sum() < 1e-4 * names.total_us.sum()
    assert unknown.kernel.str.contains("NonZeroOp|cub::").all()  # torch.nonzero's CUB passes, launched by no op



def test_kernel_gap_says_which_class_adds_the_most_gpu_time():
    """int8 against int8_pure, both profiled: the extra whole-token, GPU and launch time per token, and the class
    that adds the most GPU time; a pair with one side unprofiled, or another batch, has no row."""
    import pandas as pd

    from ecosweep.analysis.kernels import kernel_gap

    def config(quantization, batch, tok_s, launches, outliers, gemm, profiled=True):
        return {"source": "s", "hardware": "H", "model": "m", "quantization": quantization, "engine": "eager",
                "batch_size": batch, "input_tokens": 8, "output_tokens": 4, "weights": "random", "gpu_count": 1,
                "tok_s_mean": tok_s, "profile_wall_ms_per_tok": 50.0 if profiled else None,
                "profile_launches_per_tok": launches, "profile_ms_per_tok_llm_int8_outliers": outliers,
                "profile_ms_per_tok_int8_gemm": gemm}

    configs = pd.DataFrame([config("int8", 1, 10.0, 2800, 2.5, 4.4), config("int8_pure", 1, 12.5, 1800, 0.0, 4.3),
                            config("int8", 16, 140.0, 180, 0.3, 0.33),
                            config("int8_pure", 16, 200.0, 110, 0.0, 0.31, profiled=False)])
    (row,) = kernel_gap(configs, "int8", "int8_pure").to_dict("records")
    assert row["batch_size"] == 1 and row["largest_class"] == "llm_int8_outliers"
    assert row["extra_ms_per_tok"] == pytest.approx(20.0) and row["extra_gpu_ms_per_tok"] == pytest.approx(2.6)
    assert row["largest_class_share"] == pytest.approx(2.5 / 2.6) and row["extra_launches_per_tok"] == 1000
    assert kernel_gap(configs.assign(profile_wall_ms_per_tok=None), "int8", "int8_pure").empty


SAMPLES = REPO / "experiments" / "kernel_profile" / "h100x4_2026-11-28"


@pytest.mark.parametrize("sample,cell_id", [("eager_fp16_bs1_45777cca09de.first220ms", "45777cca09de"),
                                            ("graph_fp16_bs1_5d5cfbf057f4.first120ms", "5d5cfbf057f4")])
def test_traces_recorded_on_an_h100_give_the_kernels_their_cells_recorded(sample, cell_id):
    """The saved H100 traces (the first 120-220 ms of two profiled calls, torch 2.11) read with the same linking
    as the live profile: every (kernel, launching op, scopes) they hold is one the cell's kernel table recorded —
    but for a kernel launched by a dispatcher re-entry (aten::sum inside aten::sum), which the table, read
    through torch's event tree, has without an operator and this reader gives to aten::sum. No scope drawn on the
    GPU is a kernel; the eager call launches each kernel from the host, the graph replays most of its kernels."""
    from ecosweep.profiling.trace import records_from_trace, trace_events_from_chrome
    trace = json.loads(gzip.decompress((SAMPLES / "samples" / f"{sample}.trace.json.gz").read_bytes()))
    records, launches = records_from_trace(trace_events_from_chrome(trace), "cuda")
    with open(SAMPLES / "kernel_profile" / "traces" / f"{cell_id}.kernels.csv") as f:
        table = {(r["kernel"], r["op"], r["within"]) for r in csv.DictReader(f)}
    seen = {(r.name, r.op, " > ".join(r.within)) for r in records}
    for kernel, op, within in seen - table:
        assert (op, within) == ("aten::sum", "aten::sum") and (kernel, "", "") in table, (kernel[:60], op, within)
    assert len(seen - table) <= 1 and not any(r.name.startswith("ecosweep::module::") for r in records)
    span_s = (max(r.start_us + r.duration_us for r in records) - min(r.start_us for r in records)) / 1e6
    idle_share = 1 - busy_seconds(records) / span_s
    if sample.startswith("eager"):
        # 5,700 kernels from as many cudaLaunchKernel / cuLaunchKernel calls, and 77 memcpys and 32 memsets
        assert (len(records), launches) == (5809, 5700) and 0.8 < idle_share < 0.9
        assert any(r.within[:1] == ("ecosweep::module::MistralAttention",) for r in records)
    else:  # the uncaptured prefill and the capture launch theirs; each decode step is one cudaGraphLaunch
        assert (len(records), launches) == (6991, 1603)
