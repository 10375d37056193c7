"""The results schema: one row per measured repetition, units in the column names.

This list is the single definition of every column: the Parquet writer enforces it,
the README's column table is checked against it by the tests, and readers unify
older files onto it. A failed cell is one row with ``status`` failed or oom,
``repetition`` null and the error text; measured values are null, never zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Tuple

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    doc: str


_S, _F, _I, _B = pa.string(), pa.float64(), pa.int64(), pa.bool_()
_TS = pa.timestamp("us", tz="UTC")

# Columns computed once per cell while it prepares (not per repetition): readers take one value per cell.
FIDELITY_COLUMNS = ["fidelity_reference", "fidelity_greedy_agreement_share", "fidelity_top1_match_share",
                    "fidelity_kl_nats_mean", "fidelity_kl_nats_p95", "fidelity_max_abs_logit_error", "fidelity_ppl",
                    "fidelity_reference_ppl"]
INT8_DECOMPOSITION_COLUMNS = ["outlier_features_count", "int8_decomposed_cols_mean", "int8_decomposed_matmul_share"]


# The kernel profile's classes (profile=true), each a profile_ms_per_tok_<class> column; the rules that sort
# kernels into them are ecosweep.profiling.rules.RULES.
KERNEL_CLASSES: Tuple[str, ...] = (
    "dense_gemm",          # fp16/bf16/fp32 GEMM and GEMV (cuBLAS, CUTLASS, Triton matmuls)
    "int8_gemm",           # int8 x int8 matmuls (bitsandbytes int8_linear_matmul, torch._int_mm)
    "fp8_gemm",            # fp8 scaled matmuls (torch._scaled_mm)
    "int4_gemm",           # int4 weight-only matmuls (tinygemm: aten._weight_int4pack_mm, torchao int4)
    "act_quantize",        # activations quantized on the fly (bitsandbytes int8_vectorwise_quant, ...)
    "dequantize",          # int8 results and int8 weights back to 16 bits (int8_mm_dequant, ...)
    "nf4_fp4",             # 4-bit weights: bitsandbytes' fused dequantize-GEMV and blockwise dequantize
    "llm_int8_outliers",   # LLM.int8(): finding outlier columns, extracting and restoring them
    "llm_int8_side_gemm",  # LLM.int8(): the 16-bit matmul of the outlier columns
    "attention",           # attention kernels (flash, memory-efficient, SDPA math, softmax)
    "norm",                # RMSNorm / LayerNorm
    "elementwise",         # activations, residual adds, rotary embedding, sampling, fused Triton pointwise
    "copy",                # memcpy/memset, cat, index/gather, KV-cache writes, dtype casts
    "unknown",             # no rule matched: named in profile_unknown_kernels
)


def _profile_columns() -> List["Column"]:
    per_class = [Column(f"profile_ms_per_tok_{c}", _F, f"profile=true: GPU time of {c} kernels in the profiled call "
                        "(CPU: operators' self time), milliseconds per generated token (classes: README, 'Kernel profile').")
                 for c in KERNEL_CLASSES]
    return [
        Column("profile_wall_ms_per_tok", _F, "profile=true: wall time of the profiled call (after the energy windows, "
               "under the PyTorch profiler), milliseconds per generated token."),
        Column("profile_gpu_busy_share", _F, "profile=true: union of the call's kernel intervals / the call's measured "
               "latency (latency_s_per_request, no profiler), 0..1; null on a CPU."),
        Column("profile_gpu_idle_share", _F, "1 - profile_gpu_busy_share: the share of a call the GPU waits on the host "
               "(launch-bound share), measured; null on a CPU."),
        Column("profile_kernels_per_tok", _F, "profile=true: GPU kernels (and memcpy/memset) per generated token; CPU: "
               "operators per token."),
        Column("profile_launches_per_tok", _F, "profile=true: host-side kernel and graph launches (cudaLaunchKernel, "
               "cudaGraphLaunch, ...) per generated token; null on a CPU."),
        *per_class,
        Column("profile_matmul_kernel", _S, "profile=true: the matmul kernel (dense, int8, fp8, int4, 4-bit classes) "
               "with the most GPU time in the profiled call: what did a quantized cell's matmuls (tinygemm, a fused "
               "Triton kernel, _scaled_mm, a cuBLAS GEMV after a dequantize, ...)."),
        Column("profile_matmul_kernel_share", _F, "profile=true: that kernel's share of the call's matmul-class GPU "
               "time, 0..1."),
        Column("profile_unknown_kernels", _S, "profile=true: kernels no classification rule knows (counted in "
               "profile_ms_per_tok_unknown), most time first, '; '-separated."),
        Column("profile_trace_file", _S, "profile=true: the profiled call's trace in the study's traces/ folder "
               "(gzip'd Chrome JSON: Perfetto, chrome://tracing)."),
        Column("profile_error", _S, "profile=true: why the profiled call failed (e.g. no CUPTI); the cell's "
               "measurements stand, its profile_* columns are null."),
    ]


def _latency_columns() -> List["Column"]:
    """A served repetition's latency percentiles: the server's own timestamps (transformers' continuous batching),
    and the client_* ones from the client's clock."""
    latency = []
    for name, what in (("ttft_ms", "time to first token (request created to its first token), milliseconds"),
                       ("tpot_ms", "time per output token after the first (mean inter-token latency), milliseconds"),
                       ("e2e_ms", "end-to-end latency (request created to finished), milliseconds"),
                       ("queue_ms", "time a request waited before the server admitted it, milliseconds"),
                       ("client_ttft_ms", "the client's clock: request sent to its first streamed token, milliseconds"),
                       ("client_tpot_ms", "the client's clock: first to last streamed token per token after the "
                        "first, milliseconds"),
                       ("client_e2e_ms", "the client's clock: request sent to its end, milliseconds")):
        latency += [Column(f"{name}_p{p}", _F, f"serving: {p}th percentile over the completed requests of the "
                           f"repetition: {what}.") for p in (50, 90, 99)]
    return latency


def _serving_columns() -> List["Column"]:
    """A served cell's columns (scenario=serving; null on fixed-batch rows): the stream and its server, then what
    each repetition measured."""
    return [
        Column("scenario", _S, "The workload's shape (conf/scenario): fixed_batch (batch_size requests that start and "
               "end together) | serving (a request stream under continuous batching); null in files written before "
               "2026-12-03, which are fixed_batch."),
        Column("serving_load", _S, "serving: the load as reports name it: max<max_batch>-all | -poisson<rate>rps | "
               "-closed<concurrency>, then the server's non-default settings: -ecosweep (serving.server), -graphs_on / "
               "-graphs_off, -compile<level>, -mem<percent>."),
        Column("serving_arrival", _S, "serving: all_at_once | poisson | closed_loop (serving.arrival)."),
        Column("serving_max_batch_requests", _I, "serving: most sequences batched at once (serving.max_batch)."),
        Column("serving_request_rate_rps", _F, "serving, arrival=poisson: mean arrival rate, requests per second."),
        Column("serving_concurrency_requests", _I, "serving, arrival=closed_loop: requests kept in flight."),
        Column("serving_requests", _I, "serving: requests sent in each repetition (serving.requests)."),
        Column("serving_lengths", _S, "serving: the length distribution: fixed | uniform | chat | file."),
        Column("serving_mean_input_tokens", _F, "serving: mean prompt length of the stream's requests, tokens."),
        Column("serving_mean_output_tokens", _F, "serving: mean output length of the stream's requests, tokens."),
        Column("serving_slos", _S, "serving: the latency objectives, name:ttft_ms/tpot_ms, comma-separated."),
        Column("serving_server", _S, "serving: what served the stream: transformers_continuous_batching "
               "(serving.server=transformers) | ecosweep_slots (serving.server=ecosweep)."),
        Column("serving_cuda_graphs", _S, "serving: the server's CUDA graphs as it resolved them. transformers: "
               "varlen=<bool>,decode=<bool> (the prefill and the decode path); with serving.cuda_graphs=auto "
               "transformers turns them off for an attention that needs a mask (paged|sdpa). ecosweep_slots: "
               "decode=<bool>,rows=1/2/4/... (one decode graph per row count; prefills run uncaptured)."),
        Column("serving_kv_cache_mib", _F, "serving, ecosweep_slots: the slots' preallocated key and value cache "
               "(max_batch x serving_slot_tokens x layers x kv heads x head dim x 2), MiB."),
        Column("serving_slot_tokens", _I, "serving, ecosweep_slots: tokens each slot holds: the stream's longest "
               "request (prompt + output), tokens."),
        Column("serving_async_batching", _B, "serving: whether transformers batched asynchronously (the next batch "
               "prepared while the GPU runs this one; it does only with CUDA graphs and no attention mask)."),
        Column("serving_compile_level", _I, "serving: transformers' continuous-batching compile level (0 = none)."),
        Column("serving_restarts_count", _I, "serving: times the server was started again after a failure stopped it."),
        Column("serving_notes", _S, "serving: what the client noticed in the repetition, '; '-separated; null when "
               "nothing."),
        *_serving_result_columns(),
    ]


def _serving_result_columns() -> List["Column"]:
    """What a served repetition measured: its requests' accounting, energy, steady-state window and latency."""
    return [
        Column("requests_sent", _I, "serving: requests the client sent in the repetition."),
        Column("requests_completed", _I, "serving: requests that finished with all their tokens."),
        Column("requests_failed", _I, "serving: requests the server failed or refused (their errors in the "
               "requests/ file)."),
        Column("requests_timed_out", _I, "serving: requests cancelled serving.request_timeout_s after they were "
               "sent; completed + failed + timed_out = sent."),
        Column("input_tokens_served", _I, "serving: prompt tokens of the completed requests."),
        Column("requests_per_s", _F, "serving: completed requests / seconds (the whole run)."),
        Column("net_energy_j_per_request", _F, "serving: net_energy_j / completed requests, joules."),
        Column("energy_j_per_input_token", _F, "serving: energy_j / input_tokens_served, joules (the same energy "
               "over prompt tokens: not an attribution)."),
        Column("steady_window_s", _F, "serving: length of the steady-state window (batch full until the drain "
               "begins; Poisson: the 10th percentile arrival to the last), seconds; null when the load never filled "
               "its batch."),
        Column("steady_window_rule", _S, "serving: batch_full | arrivals: the rule that found the window."),
        Column("steady_energy_j", _F, "serving: energy in the steady-state window, joules (the sampled power over "
               "it, scaled to the window's counter energy)."),
        Column("steady_energy_source", _S, "serving: nvml_sampled_scaled_to_counter | nvml_sampled | none."),
        Column("steady_output_tokens", _I, "serving: output tokens generated inside the steady-state window."),
        Column("steady_output_tok_s", _F, "serving: steady_output_tokens / steady_window_s."),
        Column("steady_power_w_mean", _F, "serving: steady_energy_j / steady_window_s, watts."),
        Column("steady_energy_j_per_output_token", _F, "serving: steady_energy_j / steady_output_tokens, joules "
               "(ML.ENERGY's J per token)."),
        Column("steady_net_energy_j_per_output_token", _F, "serving: the same net of the idle baseline, joules."),
        Column("steady_batch_mean_requests", _F, "serving: mean requests in flight over the steady-state window."),
        *_latency_columns(),
        Column("ttft_ms_clock_diff_pct", _F, "serving: 100 x (ttft_ms_p50 - client_ttft_ms_p50) / client_ttft_ms_p50: "
               "the server's timestamps against the client's clock."),
        Column("tpot_ms_clock_diff_pct", _F, "serving: the same for tpot_ms_p50."),
        Column("e2e_ms_clock_diff_pct", _F, "serving: the same for e2e_ms_p50."),
        Column("slo_names", _S, "serving: the latency objectives, comma-separated, in the order of the *_by_slo lists."),
        Column("goodput_rps_by_slo", pa.list_(_F), "serving: per SLO, requests per second that completed within both "
               "its ttft_ms and tpot_ms (over the whole run)."),
        Column("slo_met_share_by_slo", pa.list_(_F), "serving: per SLO, the share of sent requests that met it."),
    ]


# A served cell's requests/<cell_id>.parquet: one row per request of every repetition.
REQUEST_COLUMNS: List[Column] = [
    Column("repetition", _I, "The repetition the request belongs to."),
    Column("request_id", _S, "req<index>: its place in the seeded stream (the same requests in every repetition)."),
    Column("status", _S, "completed | failed | timed_out."),
    Column("input_tokens", _I, "Prompt length, tokens."),
    Column("output_tokens_asked", _I, "Output length asked (exact: EOS suppressed), tokens."),
    Column("tokens_generated", _I, "Output tokens it received."),
    Column("sent_s", _F, "When the client sent it, seconds on the cell process's perf_counter clock."),
    Column("admitted_s", _F, "When the server admitted it (no longer queued), same clock."),
    Column("first_token_s", _F, "When its first token was generated, same clock."),
    Column("finished_s", _F, "When it finished, same clock."),
    Column("ttft_ms", _F, "Time to first token, server timestamps, milliseconds."),
    Column("tpot_ms", _F, "Time per output token after the first, milliseconds."),
    Column("e2e_ms", _F, "Created to finished, milliseconds."),
    Column("queue_ms", _F, "Created to admitted, milliseconds."),
    Column("client_ttft_ms", _F, "Sent to first streamed token on the client's clock, milliseconds."),
    Column("client_tpot_ms", _F, "First to last streamed token per token after the first, client's clock, ms."),
    Column("client_e2e_ms", _F, "Sent to end on the client's clock, milliseconds."),
    Column("error", _S, "Why it failed or timed out; null when completed."),
]
REQUEST_SCHEMA = pa.schema([pa.field(c.name, c.type) for c in REQUEST_COLUMNS])


def requests_to_table(rows: Iterable[Dict[str, Any]]) -> pa.Table:
    """A served cell's request rows to a table with exactly REQUEST_SCHEMA."""
    rows = list(rows)
    return pa.Table.from_pydict({c.name: [r.get(c.name) for r in rows] for c in REQUEST_COLUMNS},
                                schema=REQUEST_SCHEMA)

COLUMNS: List[Column] = [
    # identity and outcome
    Column("study", _S, "Study name (the folder under the output root)."),
    Column("cell_id", _S, "Stable hash of what the cell measures (model, quantization, tokens, batch, hardware profile without its datasheet figures, protocol)."),
    Column("run_id", _S, "Id of the driver invocation that measured this cell."),
    Column("repetition", _I, "0-based index of the measured repetition; null on a failed cell's row."),
    Column("status", _S, "ok | failed | oom."),
    Column("error", _S, "Error text for failed/oom cells; null when ok."),
    Column("timestamp_utc", _TS, "Start of the repetition's measurement window (UTC)."),
    # what was measured
    Column("model", _S, "Model config name (conf/model)."),
    Column("model_type", _S, "transformers architecture (llama, mistral, qwen2, phi3, ...)."),
    Column("params_count", _I, "Parameters actually instantiated (before quantization packing)."),
    Column("params_b_nominal", _F, "Published parameter count, billions."),
    Column("weights", _S, "random (built from the architecture) | pretrained (hub id or local path)."),
    Column("weights_source", _S, "Where the weights came from: random:<model_type>-<hash of architecture, dtype, seed>-<dtype> (built in memory; +outliers<N>x<scale> when outlier features were planted), a local folder or a hub id."),
    Column("quantization", _S, "Quantization config name (conf/quantization)."),
    Column("engine", _S, "Decode engine asked for (conf/engine): eager | graph | compiled | hf_static; null in files written before the engine axis, which are eager. Files written before 2026-12-02 (no engine_kind) name hf_static 'compiled': readers relabel them."),
    Column("engine_variant", _S, "The engine as reports name it: its name, then what sets this variant apart ('+'-joined): ecosweep_decoder, fused, compile settings that differ from the defaults (e.g. compiled+ecosweep_decoder+fused, compiled+cudagraphs=none); reports group engines by it. Older files: their engine's name (compiled cells of 2026-12-02 written before this column: from their stored config)."),
    Column("engine_kind", _S, "The engine's kind (engine.kind): eager | graph | compiled (ecosweep's loop, its step compiled by torch.compile) | hf_static (generate() with transformers' static cache); null in files written before 2026-12-02."),
    Column("engine_effective", _S, "What decoded: eager (generate()), graph (CUDA graph replay per token), graph_uncaptured (the same loop without capture, CPU), compiled (the loop's step compiled and replayed from CUDA graphs), compiled_uncaptured (compiled, no CUDA graph: a CPU, cudagraphs=none, or inductor skipped them: engine_note says why), hf_static_compiled (generate() with a compiled static-cache step; 'compiled' in files before 2026-12-02), eager_static_cache (hf_static asked, transformers declined)."),
    Column("decode_model", _S, "graph/compiled: the model code that decoded: transformers (the checkpoint's modules over a StaticCache) | ecosweep (ecosweep's compact decoder around the checkpoint's linear layers); null for eager and hf_static."),
    Column("compile_s", _F, "compiled: wall time of compiling the decode step before the token check (dynamo, inductor or its cache, CUDA-graph recording, the warm-up steps), seconds; never inside a window."),
    Column("compile_frames_count", _I, "compiled: Python frames dynamo compiled while preparing (1 for a whole-graph step; more with graph breaks or a compiled prefill)."),
    Column("compile_graphs_count", _I, "compiled: FX graphs dynamo produced while preparing."),
    Column("compile_graph_breaks_count", _I, "compiled: graph breaks dynamo met (0 under engine.compile.fullgraph=true, where a break fails the cell)."),
    Column("compile_recompiles_count", _I, "compiled: compilations after the step was prepared (token check, warm-up, windows); a compile inside a window fails the cell, so a measured cell has 0 there."),
    Column("compile_cudagraph_recordings_count", _I, "compiled, cudagraphs=inductor: CUDA graphs inductor's trees recorded (0: the step ran without graphs, engine_note says why)."),
    Column("compile_cache", _S, "compiled: hit (every graph came from inductor's FX-graph cache) | miss | partial; null when nothing was compiled."),
    Column("compile_cache_dir", _S, "compiled: inductor's cache folder (TORCHINDUCTOR_CACHE_DIR), shared by the host's actors."),
    Column("compile_options", _S, "compiled: the inductor options torch.compile ran with, JSON (engine.compile settings and the backend's recommendations)."),
    Column("compile_cudagraphs", _S, "compiled: who replays the compiled step from CUDA graphs: inductor | ecosweep | none (engine.compile.cudagraphs)."),
    Column("compile_prefill", _B, "compiled: the prefill was compiled too (engine.compile.prefill)."),
    Column("torchao_type", _S, "torchao precisions (method torchao): int8_weight_only | int8_dynamic | fp8_weight_only | fp8 | int4_weight_only; null otherwise."),
    Column("quant_weight_type", _S, "What holds a quantized layer's weight: the bitsandbytes module (Linear4bit, Linear8bitLt) or the torchao tensor subclass (Int8Tensor, Float8Tensor, ...); null when unquantized."),
    Column("quant_kernel_path", _S, "The quantized kernel path that ran: backend, quant_weight_type, compiled or not (e.g. 'torchao Int8Tensor, not compiled'); null when unquantized."),
    Column("quant_fallback", _B, "True where the backend's fast kernels need torch.compile and the cell did not compile (torchao int8 weight-only, int8 dynamic, fp8 weight-only under eager or graph): its cost is the slow path's; null when unquantized."),
    Column("engine_note", _S, "Why engine_effective differs from engine, else null."),
    Column("attn_implementation", _S, "Attention implementation the model ran: sdpa | eager | ecosweep_sdpa (sdpa with grouped-query decode on the key/value heads; ecosweep's decoder always attends this way); a served cell's is the paged one transformers' continuous batching switched to (paged|sdpa, or paged flash attention where installed)."),
    Column("engine_tokens_equal", _B, "graph/compiled/hf_static: the engine's free-running tokens are exactly generate()'s greedy tokens on the cell's prompts (graph/compiled: every choice of its teacher-forced pass agreed; hf_static: one free-running call); null for eager or when not checked."),
    Column("engine_token_agreement_share", _F, "graph/compiled: fraction of greedy choices equal to generate()'s where both saw the same tokens before (0..1)."),
    Column("engine_logit_diff_sd", _F, "graph/compiled: largest |engine - generate()| logit over those choices, in standard deviations of generate()'s logits (rounding: < 0.1 in 16-bit)."),
    Column("engine_logit_floor_sd", _F, "graph/compiled, only when engine_logit_diff_sd exceeds rounding: how far generate() moves from itself with another attention kernel, same units; the cell passes up to 2x this."),
    Column("fidelity_reference_source", _S, "computed: the cell built and ran the fidelity reference itself | reused: read from the host's reuse.reference_dir, computed by the cell in fidelity_reference_cell_id for the same model, weights, prompts and device (reuse.fidelity_reference); null without a reference."),
    Column("fidelity_reference_cell_id", _S, "The cell that computed the fidelity reference this cell was compared with."),
    Column("engine_reference_source", _S, "graph/compiled: computed: the cell ran generate() for its token check | reused: generate()'s tokens and logits read from the host's reuse.reference_dir, computed by the cell in engine_reference_cell_id for the same model, precision, prompts and device (reuse.token_reference)."),
    Column("engine_reference_cell_id", _S, "The cell whose generate() run the token check compared with."),
    Column("fidelity_reference", _S, "What the cell was compared with: '<dtype> (same weights)' (the same weights unquantized), or 'itself (<dtype>)' for the reference cell; null when fidelity.enabled=false or in files written before fidelity."),
    Column("fidelity_greedy_agreement_share", _F, "Share of generated positions (teacher-forced on the reference's greedy continuation of the cell's prompts) where the cell's top token is the reference's (0..1)."),
    Column("fidelity_top1_match_share", _F, "Share of all positions, prompt included, where the cell's and the reference's top tokens agree (0..1)."),
    Column("fidelity_kl_nats_mean", _F, "Mean KL(reference || cell) of the next-token distributions over the generated positions, nats (random weights: the kernels' numerical error, not model quality)."),
    Column("fidelity_kl_nats_p95", _F, "95th percentile of that KL divergence, nats."),
    Column("fidelity_max_abs_logit_error", _F, "Largest |cell - reference| logit over the generated positions."),
    Column("fidelity_ppl", _F, "Perplexity of the cell on fidelity.text (weights=pretrained only), else null."),
    Column("fidelity_reference_ppl", _F, "Perplexity of the reference on fidelity.text, else null."),
    Column("outlier_features_count", _I, "Hidden dimensions planted as outlier features in the random weights (outlier_features.count; 0 = none)."),
    Column("int8_decomposed_cols_mean", _F, "LLM.int8() cells (threshold > 0): mean input columns its outlier decomposition multiplied in 16 bits per int8 matmul, over one generate() call counted before the windows; null otherwise."),
    Column("int8_decomposed_cols_max", _I, "LLM.int8() cells: the most columns one int8 matmul decomposed in that call."),
    Column("int8_decomposed_matmul_share", _F, "LLM.int8() cells: share of int8 matmuls in that call that decomposed at least one column (0..1)."),
    Column("int8_matmul_calls_count", _I, "LLM.int8() cells: int8 matmuls counted (layers x steps)."),
    Column("quant_method", _S, "none | bnb_4bit | bnb_8bit."),
    Column("dtype", _S, "Unquantized weight / activation dtype."),
    Column("bnb_4bit_quant_type", _S, "nf4 | fp4 for 4-bit cells, else null."),
    Column("bnb_4bit_compute_dtype", _S, "Compute dtype of 4-bit layers, else null."),
    Column("bnb_4bit_use_double_quant", _B, "Double quantization of 4-bit constants."),
    Column("llm_int8_threshold", _F, "Outlier threshold of 8-bit cells (6.0 LLM.int8(), 0.0 pure int8), else null."),
    Column("batch_size", _I, "Requests per generate() call."),
    Column("input_tokens", _I, "Prompt length per request, tokens."),
    Column("output_tokens", _I, "New tokens per request (fixed: EOS cannot stop a request early)."),
    # where it ran
    Column("hardware", _S, "Hardware profile name (conf/hardware)."),
    Column("device", _S, "cpu | cuda, as resolved."),
    Column("device_name", _S, "Detected device: CUDA device name or CPU model."),
    Column("gpu_uuid", _S, "Physical GPU UUID (NVML); a cell holding several GPUs names them all, joined with '+' in device order (cuda:0 first); null on CPU."),
    Column("gpu_count", _I, "GPUs the cell held, placed its model on and metered (ray.gpus_per_cell); 0 on CPU."),
    Column("compute_capability", _S, "CUDA compute capability, e.g. 9.0; null on CPU."),
    Column("gpu_memory_total_mib", _F, "GPU memory, MiB, summed over the cell's GPUs."),
    Column("driver_version", _S, "NVIDIA driver version."),
    Column("cuda_version", _S, "CUDA runtime torch was built with."),
    Column("host", _S, "Host name of the node that ran the cell."),
    Column("ray_node_id", _S, "Ray node that ran the cell's actor."),
    Column("cuda_visible_devices", _S, "CUDA_VISIBLE_DEVICES Ray gave the cell's actor (its GPU slot)."),
    Column("process_earlier_cells_count", _I, "Cells the process that measured this one had measured before it: 0 in a "
           "fresh process (ray.process_per=cell), the cell's place in its lane under ray.process_per=lane; null in "
           "files written before 2026-12-03."),
    Column("actor_earlier_lanes_count", _I, "Lanes the cell's Ray actor had measured before this cell's lane: 0 for "
           "an actor of the lane's own, more where ray.reuse_actors handed a finished lane's actor on; null in files "
           "written before 2026-12-07."),
    Column("cuda_allocated_mib_at_start", _F, "GPU memory torch still held in the cell's process when the cell "
           "began, MiB: 0 unless an earlier cell of a lane process leaked."),
    Column("process_prepared", _B, "The cell's fresh process was started, and imported torch and transformers, while "
           "the lane's previous cell ran (ray.prepare_next_process); false: started when the cell was; null in files "
           "written before 2026-12-03."),
    Column("process_prepared_imports_s", _F, "Seconds the cell's process spent importing torch and transformers "
           "before the cell arrived: outside the cell's wall time when process_prepared, inside its start_s "
           "otherwise; null where the process was not started that way (process_per=lane, prepare_next_process="
           "false, a lane of one cell)."),
    Column("process_ready_unix_s", _F, "When the cell's process had those imports done (unix seconds); for a "
           "prepared process before the previous cell's warm-up."),
    Column("cpu_count", _I, "Logical CPUs on that host."),
    Column("python_version", _S, "Python version in the actor."),
    Column("torch_version", _S, "torch version."),
    Column("transformers_version", _S, "transformers version."),
    Column("bitsandbytes_version", _S, "bitsandbytes version."),
    Column("ecosweep_version", _S, "ecosweep version."),
    # protocol
    Column("warmup_calls", _I, "Unmeasured generate() calls before the first repetition."),
    Column("warmup_s", _F, "Wall time of the warm-up, seconds."),
    Column("min_window_s", _F, "Protocol: minimum measurement window, seconds."),
    # time and throughput
    Column("generate_calls", _I, "generate() calls inside this repetition's window."),
    Column("tokens_generated", _I, "New tokens generated in the window: calls x batch_size x output_tokens."),
    Column("seconds", _F, "Window wall time, seconds (CUDA synchronised at both edges)."),
    Column("tok_s", _F, "Throughput: tokens_generated / seconds, new tokens per second."),
    Column("latency_s_per_request", _F, "Seconds per generate() call; every request of a batch finishes then."),
    Column("prefill_s", _F, "Time to first token of one call (prefill + first token), seconds, from its own window."),
    Column("decode_s", _F, "latency_s_per_request - prefill_s: the remaining output_tokens - 1 steps, seconds."),
    Column("prefill_tok_s", _F, "Prompt tokens processed per second in prefill: batch_size x input_tokens / prefill_s."),
    Column("decode_tok_s", _F, "Decode throughput: batch_size x (output_tokens - 1) / decode_s."),
    Column("gpu_memory_peak_mib", _F, "Peak memory torch allocated on the GPU during the cell, MiB (summed over the cell's GPUs)."),
    # energy
    Column("energy_source", _S, "nvml_counter | nvml_sampled | rapl | none: where energy_j comes from."),
    Column("energy_j", _F, "Gross energy of the window, joules, summed over the cell's GPUs (null when energy_source is none)."),
    Column("energy_j_by_gpu", pa.list_(_F), "Each GPU's own gross energy of the window, joules, in gpu_uuid order (one entry for a one-GPU cell); null without NVML."),
    Column("power_w_mean_by_gpu", pa.list_(_F), "Each GPU's energy_j_by_gpu / seconds, watts."),
    Column("idle_power_w_by_gpu", pa.list_(_F), "Each GPU's idle baseline power, watts; they sum to idle_power_w."),
    Column("power_w_mean", _F, "energy_j / seconds, watts."),
    Column("power_w_peak", _F, "Highest sampled instantaneous power in the window, watts (several GPUs: the sum of each one's peak, an upper bound)."),
    Column("energy_j_per_1k_tok", _F, "energy_j per 1000 generated tokens, joules."),
    Column("energy_j_per_request", _F, "energy_j / (generate_calls x batch_size), joules."),
    Column("energy_j_per_output_token", _F, "energy_j / tokens_generated, joules."),
    Column("prefill_energy_j", _F, "Energy of one prefill (first-token) call, joules, from its own window."),
    Column("decode_energy_j", _F, "Energy of one call minus prefill_energy_j, joules."),
    Column("idle_power_w", _F, "Idle baseline power of the cell's GPUs (all of them) with the cell's context alive, watts."),
    Column("idle_temperature_c", _F, "GPU temperature during the idle baseline, Celsius."),
    Column("idle_baseline_source", _S, "measured: the cell measured its own idle baseline (measurement.idle_window_s) | reused: an earlier cell's baseline of the same GPUs, which a reuse.idle_check_s check with this cell's context alive agreed with (reuse.idle_*); null in files written before reuse."),
    Column("idle_baseline_cell_id", _S, "The cell whose window gave the idle baseline (the cell itself when measured)."),
    Column("idle_baseline_run_id", _S, "The run (command) whose cell measured the idle baseline: this row's run_id, or an earlier command's where reuse.idle_across_commands offered the baseline it stored on this host; null in files written before 2026-12-07 (the cell's own run)."),
    Column("idle_baseline_age_s", _F, "Seconds from the idle baseline's window to this repetition's window."),
    Column("idle_settle_s", _F, "Seconds from the warm-up's end to the idle baseline's window (or the check that let an earlier one stand): measurement.idle_settle_s, or less where reuse.idle_settle_early ended it at the first check that agreed; NaN in files written before 2026-12-07."),
    Column("idle_checks_count", _I, "Idle checks taken before the baseline was settled (reuse.idle_settle_early: the checks back to back during the settle, the agreeing one included; 1 without it; 0 when no earlier baseline could be checked)."),
    Column("idle_check_power_w", _F, "Mean power of the short idle check that decided reuse, watts; NaN when no check ran (no earlier baseline, or reuse off)."),
    Column("idle_baseline_note", _S, "Why no earlier baseline was reused (e.g. the check disagreed: its power and the baseline's); null when reused or when there was none."),
    Column("net_energy_j", _F, "energy_j - idle_power_w x seconds: the dynamic energy, joules."),
    Column("net_energy_j_per_1k_tok", _F, "net_energy_j per 1000 generated tokens, joules."),
    Column("static_energy_share", _F, "idle_power_w x seconds / energy_j: the static fraction of the window's energy (0..1)."),
    Column("sampled_energy_j", _F, "Trapezoidal integral of the sampled instantaneous power over the window, joules."),
    Column("counter_vs_sampled_pct", _F, "100 x (energy_j - sampled_energy_j) / energy_j."),
    Column("energy_mismatch", _B, "True when |counter_vs_sampled_pct| > 5."),
    # device state during the window
    Column("samples", _I, "Sampler readings inside the window."),
    Column("gpu_util_pct_mean", _F, "Mean GPU utilisation, %."),
    Column("mem_util_pct_mean", _F, "Mean memory-controller utilisation, %."),
    Column("memory_used_mib_max", _F, "Highest device memory in use (all processes), MiB."),
    Column("sm_clock_mhz_mean", _F, "Mean SM clock, MHz."),
    Column("mem_clock_mhz_mean", _F, "Mean memory clock, MHz."),
    Column("temperature_c_start", _F, "GPU temperature at the window start, Celsius."),
    Column("temperature_c_max", _F, "Highest GPU temperature in the window, Celsius."),
    Column("throttle_reasons", _S, "Clock-event reasons seen in the window other than idle, comma-separated."),
    Column("throttled", _B, "True when a throttle reason other than idle was active in the window."),
    Column("contaminated", _B, "True when a foreign compute process used the device before or during the window."),
    Column("foreign_pids", _S, "PIDs of those foreign processes, comma-separated."),
    Column("sampler_cpu_pct", _F, "CPU used by the NVML sampler process over the window, % of one core."),
    # host state during the window
    Column("cpu_util_pct", _F, "Host CPU busy time over the window, % of all CPUs (psutil CPU times)."),
    Column("cpu_steal_pct", _F, "Host CPU steal time over the window, % of all CPUs (psutil CPU times)."),
    Column("cpu_load_1m", _F, "1-minute load average at the window end."),
]
# the kernel profile (once per cell, after its energy windows)
COLUMNS += _profile_columns()
# a served cell's load, energy per request and token, latency and goodput (scenario=serving)
COLUMNS += _serving_columns()
PROFILE_COLUMNS = [c.name for c in COLUMNS if c.name.startswith("profile_")]

SCHEMA = pa.schema([pa.field(c.name, c.type) for c in COLUMNS])
COLUMN_NAMES = [c.name for c in COLUMNS]


def rows_to_table(rows: Iterable[Dict[str, Any]]) -> pa.Table:
    """Rows (dicts) to a table with exactly SCHEMA; missing keys become null, unknown keys fail."""
    rows = list(rows)
    unknown = sorted({k for r in rows for k in r} - set(COLUMN_NAMES))
    if unknown:
        raise KeyError(f"row keys not in the results schema: {unknown}")
    columns = {c.name: [r.get(c.name) for r in rows] for c in COLUMNS}
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def column_table_markdown() -> str:
    """The README's column table (``| column | type | meaning |``), one row per column of the schema, in order."""
    rows = ["| column | type | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{c.name}` | {c.type} | {c.doc.replace('|', '/')} |" for c in COLUMNS]
    return "\n".join(rows)
