"""Typed schemas of the Hydra config tree, one dataclass per group.

These dataclasses are registered in Hydra's ConfigStore (see :func:`register_configs`)
as the base of ``conf/config.yaml``, so every YAML file and every command-line
override is type-checked while Hydra composes it. Range and consistency checks that a
type cannot express live in :mod:`ecosweep.config.validate`, which runs before any
model loads or any GPU time is spent. Constructors here have no side effects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional, Type

from omegaconf import MISSING


def setting(default: Any = MISSING, help: str = "", *, default_factory: Any = None) -> Any:
    """A schema field with its help (``python -m ecosweep settings`` and every error about it show it)."""
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    """A causal LM, described by its architecture so random weights can be built offline."""

    name: str = setting(MISSING, "the model's name in labels, rows and reports")
    hub_id: Optional[str] = setting(None, "Hugging Face id for weights=pretrained (null: random weights only)")
    path: Optional[str] = setting(None, "local checkpoint folder for weights=pretrained; wins over hub_id")
    model_type: str = setting(MISSING, "transformers model_type: llama, mistral, qwen2, phi3, ...")
    params_b: float = setting(MISSING, "nominal parameter count, billions (the published size)")
    hidden_size: int = setting(MISSING, "architecture: width of the residual stream")
    intermediate_size: int = setting(MISSING, "architecture: width of the MLP")
    num_hidden_layers: int = setting(MISSING, "architecture: decoder layers")
    num_attention_heads: int = setting(MISSING, "architecture: query heads")
    num_key_value_heads: int = setting(MISSING, "architecture: key/value heads (grouped-query attention when fewer)")
    vocab_size: int = setting(MISSING, "architecture: vocabulary size")
    tie_word_embeddings: bool = setting(False, "architecture: the output layer shares the embedding's weights")
    max_position_embeddings: Optional[int] = setting(None,
        "architecture: longest context (null: the architecture's default)")


@dataclass
class QuantizationConfig:
    """How weights are stored and computed. ``method`` none | bnb_4bit | bnb_8bit (bitsandbytes) | torchao."""

    name: str = setting(MISSING, "the precision's name in labels, rows and reports")
    method: str = setting("none", "none | bnb_4bit | bnb_8bit (bitsandbytes) | torchao")
    dtype: str = setting("float16", "unquantized weights, activations and the modules left unquantized")
    bnb_4bit_quant_type: Optional[str] = setting(None, "4-bit data type: nf4 (NormalFloat) | fp4")
    bnb_4bit_compute_dtype: Optional[str] = setting(None, "dtype 4-bit weights are dequantized to for the matmuls")
    bnb_4bit_use_double_quant: bool = setting(False, "quantize the block scales too (nf4_dq)")
    llm_int8_threshold: Optional[float] = setting(None,
        "outlier threshold: 6.0 = LLM.int8() decomposition, 0.0 = pure int8")
    min_compute_capability: Optional[float] = setting(None, "refused on an NVIDIA GPU below this compute capability")
    # method torchao: int8_weight_only | int8_dynamic (int8 activations and weights) | fp8_weight_only |
    # fp8 (dynamic fp8 activations and weights) | int4_weight_only
    torchao_type: Optional[str] = setting(None,
        "method torchao: int8_weight_only | int8_dynamic | fp8_weight_only | fp8 | int4_weight_only")

    @property
    def is_llm_int8(self) -> bool:
        """LLM.int8(): int8 with the outlier decomposition (threshold > 0), not pure int8."""
        return self.method == "bnb_8bit" and (self.llm_int8_threshold or 0) > 0

    @property
    def backend(self) -> str:
        """The library that quantizes: none | bitsandbytes | torchao."""
        return {"none": "none", "torchao": "torchao"}.get(self.method, "bitsandbytes")


@dataclass
class CompileConfig:
    """How the ``compiled`` engine compiles its decode step (``engine.compile.*``). Every field changes the kernels
    that run, so every field enters the cell id."""

    # who replays the compiled step from CUDA graphs: inductor (its CUDA-graph trees, torch.compile's
    # "reduce-overhead") | ecosweep (ecosweep's own torch.cuda.graph capture around the compiled step) | none
    cudagraphs: str = setting("inductor", "inductor (CUDA-graph trees) | ecosweep (torch.cuda.graph) | none")
    # a graph break fails the cell before anything is measured; false: breaks allowed, counted in the rows
    fullgraph: bool = setting(True, "a graph break fails the cell before measuring (false: allowed and counted)")
    # inductor benchmarks each Triton kernel's launch configuration around its heuristic choice (gpt-fast's setting)
    coordinate_descent_tuning: bool = setting(True,
        "tune each Triton kernel's launch configuration (gpt-fast's setting)")
    # inductor also autotunes matmul templates (Triton, CUTLASS) against cuBLAS: slower compiles
    max_autotune: bool = setting(False, "also autotune matmul templates against cuBLAS (slower compiles)")
    # compile the prefill too (its own graph, no CUDA graph); false: the prefill runs uncompiled
    prefill: bool = setting(False, "compile the prefill too (its own graph, no CUDA graph)")
    # apply the quantization backend's recommended inductor settings (torchao: recommended_inductor_config_setter)
    backend_recommended: bool = setting(True, "the quantization backend's recommended inductor settings (torchao's)")
    # further inductor options by name (torch._inductor.config), e.g. {epilogue_fusion: false}
    inductor_options: Dict[str, Any] = setting(default_factory=dict,
                                               help="further torch._inductor.config options by name")


@dataclass
class EngineConfig:
    """How the tokens of a cell are decoded (the ``engine`` group).

    ``eager``: transformers' ``generate()``, one kernel launch at a time from the host (the
    published protocol). ``graph``: ecosweep's own fixed-length greedy loop - an uncaptured
    prefill into a static KV cache, then every decode step replayed from one CUDA graph (on a
    CPU the same loop runs uncaptured). ``compiled``: the same loop with its decode step compiled by
    ``torch.compile`` (inductor, whole graph) and replayed from CUDA graphs. ``hf_static``:
    ``generate()`` with transformers' static cache, which compiles the decode step where transformers
    agrees to (rows record what ran in ``engine_effective``; the ``compiled`` engine before 2026-12-02).
    """

    name: str = setting("eager", "the engine's name in labels, rows and reports")
    kind: str = setting("eager",
        "eager: generate() | graph: ecosweep's CUDA-graph loop | compiled: transformers' compile")
    # attention kernel: null keeps the checkpoint's default (sdpa); sdpa | eager | ecosweep_sdpa
    # (sdpa that runs a single decode token of a grouped-query model on its key/value heads,
    # instead of copying every key/value head for each query head as transformers' sdpa does
    # whenever an attention mask is passed, as a static cache needs)
    attn_implementation: Optional[str] = setting(None, "the checkpoint's default (sdpa)")
    # graph, compiled and hf_static: run the engine once against generate() on the cell's own prompts
    # before measuring, and fail the cell when the greedy tokens differ
    verify_tokens: bool = setting(True, "(generate() is its own reference: nothing to verify)")
    # graph and compiled: decode steps run (and discarded) before the capture
    capture_warmup_steps: int = setting(3, "compiled steps run before the step is captured or timed")
    # graph and compiled: the model code that decodes: transformers (the checkpoint's own modules and a
    # StaticCache; null means this) | ecosweep (ecosweep's compact decoder for Llama, Mistral and Qwen2:
    # the checkpoint's own linear layers, with the KV cache, rotary tables and masks as tensors)
    decode_model: Optional[str] = setting(None,
        "transformers | ecosweep (the compact decoder: engine.decode_model=ecosweep)")
    # ecosweep decode model with 16-bit weights: one matmul for q, k and v and one for gate and up
    fuse_projections: bool = setting(False, "decode_model=ecosweep, 16-bit weights: fused q/k/v and gate/up matmuls")
    # compiled: how the decode step is compiled (null for every other kind)
    compile: Optional[CompileConfig] = None


@dataclass
class HardwareConfig:
    """A hardware profile: what to run on and the datasheet figures analysis needs."""

    name: str = setting(MISSING, "the profile's name (auto: detected at run time)")
    device: str = setting("auto", "auto | cpu | cuda")
    gpu_name_pattern: Optional[str] = setting(None,
        "substring of the CUDA device name this profile describes (checked in the cell)")
    compute_capability: Optional[float] = setting(None, "the GPU's CUDA compute capability")
    peak_mem_bandwidth_gb_s: Optional[float] = setting(None, "datasheet memory bandwidth, GB/s (roofline)")
    tdp_w: Optional[float] = setting(None, "board power limit, watts")
    peak_fp16_tflops: Optional[float] = setting(None, "dense fp16 tensor rate, 10^12 FLOP/s")
    memory_gb: Optional[float] = setting(None, "device memory, GB")


@dataclass
class MeasurementConfig:
    """The measurement protocol. All durations in seconds."""

    name: str = setting("default", "the protocol's name (default | short | quick), recorded with the rows")
    meter: str = setting("auto", "auto: NVML on CUDA, RAPL on CPU where readable, else none")
    min_window_s: float = setting(5.0, "each repetition repeats generate() until its window is this long")
    prefill_min_window_s: float = setting(2.0, "the prefill (first-token) window, repeated the same way")
    warmup_min_s: float = setting(5.0, "warm-up runs at least `warmup` calls and at least this long")
    max_repetitions: int = setting(30, "adaptive extension stops here")
    target_ci_pct: float = setting(2.0,
        "extend until the 95 % CI half-width of energy/1k tok is within this % of the mean; 0 = off")
    idle_settle_s: float = setting(5.0, "wait after warm-up before the idle baseline")
    idle_window_s: float = setting(5.0, "idle baseline window, the cell's CUDA context alive")
    sampler_hz: float = setting(20.0, "power/utilisation sampling rate of the sampler process")
    align_counter_ticks: bool = setting(True,
        "open and close energy windows on NVML counter steps (+<=0.2 s per window); validated on H200 (README)")
    cooldown_temp_c: Optional[float] = setting(None,
        "before each repetition wait until the GPU is at or below this temperature")
    cooldown_timeout_s: float = setting(120.0, "... but no longer than this")


@dataclass
class TrackingConfig:
    """MLflow tracking; ``uri`` None means a sqlite store under the output root."""

    enabled: bool = setting(True, "mirror every cell and study into MLflow (false: Parquet only)")
    uri: Optional[str] = setting(None, "null: sqlite:///<output_root>/mlflow.db ; or http://host:5000")


@dataclass
class OutlierFeaturesConfig:
    """Outlier features planted in random weights (for LLM.int8() to decompose, as in trained >= 6.7B models)."""

    count: int = setting(0, "hidden dimensions scaled in every layer's input norms; 0 = plain random weights")
    scale: float = setting(20.0,
        "their factor (trained 6.7B models: ~6 dimensions, values up to ~20; Dettmers et al. 2022)")


@dataclass
class FidelityConfig:
    """Quantized cells against their unquantized reference, outside the energy windows."""

    enabled: bool = setting(True, "compare each quantized cell with its unquantized reference")
    reference_dtype: str = setting("auto", "auto: float16 on a GPU, float32 on a CPU | float32 | float16 | bfloat16")
    text: Optional[str] = setting(None,
        "a UTF-8 text file: perplexity of cell and reference on it (weights=pretrained only)")
    text_max_tokens: int = setting(4096, "tokens of fidelity.text read for perplexity, at most")


@dataclass
class ReportConfig:
    """How the report turns energy and GPU time into carbon and money (sources in the README)."""

    grid_gco2e_per_kwh: float = setting(436.0,
        "g CO2e per kWh of the grid: world average 2022, Ember Global Electricity Review 2023")
    pue: float = setting(1.58,
        "facility / IT energy: average annual PUE, Uptime Institute Global Data Center Survey 2023")
    usd_per_kwh: float = setting(0.10,
        "electricity, US$ per kWh: between US 2023 industrial (~8 ct) and commercial (~13 ct), EIA")
    usd_per_gpu_hour: float = setting(2.49,
        "one GPU for an hour, US$: low end of on-demand H100 SXM listings, early 2026 ($2.49-3.99)")


@dataclass
class RayConfig:
    """Where and how cells run."""

    address: Optional[str] = setting(None, "null: $RAY_ADDRESS when set (ray job submit), else a fresh local Ray")
    num_cpus: Optional[int] = setting(None, "local Ray only; null = all")
    num_gpus: Optional[int] = setting(None, "local Ray only; null = all visible (a number gives logical GPUs)")
    max_concurrent_cpu_cells: int = setting(1, "CPU cells measured at once on this machine (they share its cores)")
    cpus_per_cell: float = setting(1.0, "CPUs each cell's actor reserves (and torch threads on a CPU)")
    # whole GPUs a cell holds; None: 1 for CUDA cells, 0 for CPU cells; N > 1: the model placed layer by layer
    # across N GPUs (eager engine), every one of them metered, energy summed
    gpus_per_cell: Optional[float] = setting(None, "null: 1 whole GPU per CUDA cell, 0 per CPU cell")
    # GPUs per cell for cells of these quantizations (conf/quantization names), over gpus_per_cell: e.g.
    # {fp16: 2} puts a 70B model's 16-bit cells on two GPUs and its 4- and 8-bit ones on one
    gpus_by_quantization: Dict[str, float] = setting(default_factory=dict, help=
        "GPUs per cell by precision, e.g. {fp16: 2}: 16-bit cells on two GPUs, others on ray.gpus_per_cell")
    actor_retries: int = setting(1, "re-launch a cell whose actor died (segfault, os._exit, node loss)")
    resources: Dict[str, float] = setting(default_factory=dict, help=
        "custom resources each cell actor requires, e.g. {ecosweep_exclusive: 1}")
    progress: str = setting("auto", "auto | live | plain | off")
    # cell: each GPU cell takes any free GPU; comparison: cells that differ only in quantization, engine
    # or batch size share one GPU, one after another; precision: the same with batch sizes on separate
    # GPUs; study: every GPU cell of the command on one GPU
    process_per: str = setting("cell",
        "cell: a fresh process per cell of a shared lane (its imports and CUDA context its own) | lane: one process "
        "measures the lane's cells in turn, imports and context paid once (rows: process_earlier_cells_count, "
        "cuda_allocated_mib_at_start)")
    prepare_next_process: bool = setting(False,
        "process_per=cell in a lane of several cells: true starts the next cell's fresh process while this cell runs, "
        "so its imports (torch, transformers, its model's code) are done when it begins; this cell waits for them "
        "before its warm-up, so they never fall in its windows (rows: process_prepared, process_prepared_imports_s; "
        "phase next_process_wait_s) | false (default until checked on a GPU): each process starts with its cell")
    reuse_actors: bool = setting(False,
        "true: the actor of a finished lane of several cells goes on to the next lane waiting for the same resources "
        "(its GPU; under process_per=lane its process, imports and CUDA context too) instead of a new actor and "
        "process per lane (rows: actor_earlier_lanes_count, process_earlier_cells_count) | false (default until "
        "checked on a GPU): a new actor per lane")
    one_gpu_per: str = setting("cell",
        "cell: any free GPU per cell | comparison: cells differing only in quantization, engine or batch size share "
        "one GPU, in turn | precision: as comparison, one GPU per batch size | study: all on one GPU (each cell still"
        " its own process)")


@dataclass
class SweepConfig:
    """What a grid leaves out (``sweep.exclude``): Hydra sweeps every combination of their values, and some
    combinations cannot run (LLM.int8() under a CUDA graph). Each rule maps settings to a value, or a list of
    values any of which matches; a group is matched by its option name (``quantization: int8``). A grid cell
    that matches every setting of a rule is left out, and the command says how many were."""

    exclude: List[Dict[str, Any]] = setting(default_factory=list, help=
        "grid combinations a sweep leaves out: each {setting: value or [values]}, matched by option name for groups, "
        "e.g. [{quantization: int8, engine: [graph, compiled]}]")


@dataclass
class ReuseConfig:
    """What a cell may take from the cells measured before it instead of measuring it again; none of it changes what
    a cell measures (it is not in the cell id), and every row says what it reused (``*_source`` columns). Off:
    every cell measures all of it itself."""

    idle_baseline: bool = setting(True,
        "reuse the idle baseline an earlier cell of this command measured on the same GPU(s) while a short check "
        "with this cell's context alive agrees with it (else measure it again)")
    idle_check_s: float = setting(1.0, "the check window's length, seconds")
    idle_settle_early: bool = setting(True,
        "with an earlier baseline to reuse, end the settle (measurement.idle_settle_s) at the first check that agrees "
        "with it: checks of reuse.idle_check_s back to back from the end of the warm-up, for at most the settle's "
        "length; false: wait the whole settle, then one check")
    idle_tolerance_w: float = setting(5.0,
        "the check agrees when its mean power is within this many watts of the baseline's ...")
    idle_tolerance_pct: float = setting(5.0, "... or within this % of it, whichever is wider")
    idle_max_age_s: float = setting(900.0, "a baseline older than this is measured again, seconds")
    idle_across_commands: bool = setting(True,
        "offer the first cell on each GPU the latest baseline an earlier command measured on the same host and GPU(s) "
        "(kept in reuse.reference_dir), under the same check and reuse.idle_max_age_s; false: only this command's")
    fidelity_reference: bool = setting(True,
        "compute the fidelity reference (the 16-bit model's continuation and logits) once per model, weights, "
        "prompts and device, store it in reuse.reference_dir and reuse it for every precision")
    token_reference: bool = setting(True,
        "compute generate()'s side of the token check once per model, precision, prompts and device, store it in "
        "reuse.reference_dir and reuse it for every engine of that precision")
    reference_dir: Optional[str] = setting(None,
        "the folder on each cell's host that holds the references; null: ecosweep-references-<user> in the system's "
        "temporary folder")
    max_reference_mib: float = setting(2048.0,
        "a reference larger than this (MiB: logits of every position) is computed each time, not stored")


@dataclass
class ScenarioConfig:
    """The workload's shape (the ``scenario`` group). ``fixed_batch``: ``batch_size`` identical requests that start
    and end together, repeated (every cell before 2026-12-03; their ids are unchanged). ``serving``: a stream of
    requests served by transformers' continuous batching (paged KV cache, requests joining and leaving a running
    batch), shaped by the ``serving.*`` settings."""

    name: str = setting("fixed_batch", "fixed_batch | serving (serving.* settings shape the stream)")


@dataclass
class SloConfig:
    """A latency objective a request meets when both its time to first token and its time per output token are
    within these limits (MLPerf Inference's pairs for Llama-3.1-8B are the defaults)."""

    ttft_ms: float = setting(MISSING, "time to first token limit, milliseconds")
    tpot_ms: float = setting(MISSING, "time per output token limit (after the first), milliseconds")


def _mlperf_slos() -> Dict[str, "SloConfig"]:
    return {"interactive": SloConfig(ttft_ms=500.0, tpot_ms=30.0),
            "conversational": SloConfig(ttft_ms=2000.0, tpot_ms=100.0)}


@dataclass
class ServingConfig:
    """A served request stream (``scenario=serving``; ignored otherwise): how requests arrive, how long they are,
    how many run at once, and the latency objectives goodput counts against. Lengths are exact (EOS suppressed)."""

    arrival: str = setting("all_at_once",
        "all_at_once (every request queued at t = 0: ML.ENERGY's default) | poisson (seeded, at request_rate_rps) | "
        "closed_loop (concurrency requests in flight, a new one sent as each finishes)")
    request_rate_rps: float = setting(4.0, "arrival=poisson: mean requests per second")
    concurrency: int = setting(16, "arrival=closed_loop: requests kept in flight")
    max_batch: int = setting(64, "most sequences the server batches at once (continuous batching's max requests)")
    requests: Optional[int] = setting(None,
        "requests sent in each repetition (one whole run of them); null: sized from the load, 4 x max_batch (at least "
        "32) at once or in a closed loop, 30 s of arrivals (at least 32) for poisson")
    lengths: str = setting("fixed",
        "fixed (input_tokens / output_tokens exactly) | uniform (each uniform within +/- length_spread of them) | "
        "chat (lognormal, modelled on ShareGPT: see README) | file (lengths_file)")
    length_spread: float = setting(0.5, "lengths=uniform: half-width as a fraction of the mean (0.5: 64..192 for 128)")
    lengths_file: Optional[str] = setting(None,
        "lengths=file: a JSONL file of {\"input_tokens\": N, \"output_tokens\": M} per line, used in order "
        "(cycled when shorter than requests)")
    request_timeout_s: float = setting(600.0,
        "a request not finished this long after it was sent is cancelled and counted timed_out")
    slos: Dict[str, SloConfig] = setting(default_factory=_mlperf_slos, help=
        "latency objectives by name, each {ttft_ms, tpot_ms}; goodput_rps_<name> counts the requests meeting one")
    server: str = setting("transformers",
        "transformers (its continuous batching: a paged KV cache scheduled from Python each step) | ecosweep "
        "(max_batch fixed KV-cache slots, prompts prefilled together, each decode step one CUDA graph replay: "
        "ecosweep/workload/slot_server.py; Llama, Mistral and Qwen2 architectures)")
    cuda_graphs: str = setting("auto",
        "the server's CUDA graphs: auto (transformers decides; ecosweep: on on a GPU) | on | off")
    compile_level: int = setting(0,
        "transformers' continuous-batching compile level: 0 none, 1 default dynamic, 2 max-autotune dynamic, "
        "3 max-autotune static")
    max_memory_percent: Optional[float] = setting(None,
        "share of free GPU memory the paged KV cache may take, 0-1; null: transformers' default (0.9)")


@dataclass
class StudyConfig:
    """The root config: one cell's worth of settings (a sweep varies them)."""

    study: Optional[str] = setting(None,
        "results land in <output_root>/<study>/; null: named from the command, its models and a hash of its overrides"
        " (tiny-llama-3b9c2e): the same command resumes it")
    weights: str = setting("random", "random: built from the architecture; pretrained: hub id or model.path")
    allow_download: bool = setting(False, "pretrained weights may be fetched from the hub only when true")
    batch_size: int = setting(1, "requests per generate() call")
    input_tokens: int = setting(128, "prompt length, exactly, per request")
    output_tokens: int = setting(64, "new tokens, exactly, per request (EOS cannot end a request early)")
    repetitions: int = setting(10, "measured repetitions per cell (before adaptive extension)")
    warmup: int = setting(3, "unmeasured generate() calls before measuring (at least)")
    seed: int = setting(0, "prompts and random weights")
    output_root: str = setting("outputs", "where study folders go (env ECOSWEEP_OUTPUT_ROOT, else ./outputs)")
    retry_failed: bool = setting(True, "re-running a study reruns its failed cells")
    reuse_cells: bool = setting(True,
        "a cell another study under output_root measured (same cell id) is copied, not re-measured")
    dry_run: bool = setting(False, "true: list the planned cells (and which are done) without running anything")
    profile: bool = setting(False,
        "true: one more call per cell, after its energy windows, traced with the PyTorch profiler: GPU busy/idle "
        "share, launches and time by kernel class per token (profile_* columns)")
    profile_process: bool = setting(False,
        "true: cProfile the cell's own process while it imports, builds, checks and captures (paused from the "
        "warm-up to the last window, so no window pays for it) and store the top functions by cumulative time in "
        "timings/<cell_id>.profile.txt: where the time outside the windows goes")
    model: ModelConfig = MISSING
    quantization: QuantizationConfig = MISSING
    engine: EngineConfig = field(default_factory=EngineConfig)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    hardware: HardwareConfig = MISSING
    measurement: MeasurementConfig = MISSING
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    outlier_features: OutlierFeaturesConfig = field(default_factory=OutlierFeaturesConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    reuse: ReuseConfig = field(default_factory=ReuseConfig)


# Settings that say how the whole command runs, not what a cell measures: one value per command (a sweep that
# varies one is refused), read once into ``cells.RunOptions``.
RUN_WIDE_SETTINGS = ("dry_run", "tracking", "report", "ray.address", "ray.num_cpus", "ray.num_gpus", "ray.progress",
                     "ray.process_per", "ray.prepare_next_process", "ray.reuse_actors", "sweep", "reuse")


class Choice(str, Enum):
    """A setting's valid values, each with its help: validation names every choice with its help when a value
    is not one of them, and ``python -m ecosweep settings`` lists them. The settings themselves stay plain
    strings (a cell id hashes them as such)."""

    def __new__(cls, value: str, help_text: str = "") -> "Choice":
        member = str.__new__(cls, value)
        member._value_ = value
        member.help = help_text  # type: ignore[attr-defined]
        return member

    @classmethod
    def values(cls) -> List[str]:
        return [m.value for m in cls]


class Weights(Choice):
    RANDOM = "random", "built from the architecture with random weights (no checkpoint needed)"
    PRETRAINED = "pretrained", "the checkpoint's trained weights (a local path, or the Hub with allow_download)"


class QuantMethod(Choice):
    NONE = "none", "unquantized, in quantization.dtype"
    BNB_4BIT = "bnb_4bit", "bitsandbytes 4-bit (NF4 or FP4, quantization.bnb_4bit_quant_type)"
    BNB_8BIT = "bnb_8bit", "bitsandbytes int8 (LLM.int8(); llm_int8_threshold 0.0 is pure int8)"
    TORCHAO = "torchao", "torchao (quantization.torchao_type; pip install -e '.[torchao]')"


class TorchaoType(Choice):
    INT8_WEIGHT_ONLY = "int8_weight_only", "int8 weights, 16-bit activations (fast kernels under engine=compiled)"
    INT8_DYNAMIC = "int8_dynamic", "int8 weights and per-token int8 activations (on a GPU: eager, or batch > 16)"
    FP8_WEIGHT_ONLY = "fp8_weight_only", "fp8 weights (compute capability 8.9 or newer)"
    FP8 = "fp8", "fp8 weights and dynamic fp8 activations, per-row scales (a GPU of compute capability >= 8.9)"
    INT4_WEIGHT_ONLY = "int4_weight_only", ("int4 weights in groups of 128, bfloat16 activations, tinygemm kernels "
                                            "(CUDA only)")


class Dtype(Choice):
    FLOAT32 = "float32", "32-bit float"
    FLOAT16 = "float16", "16-bit float (fp16)"
    BFLOAT16 = "bfloat16", "bfloat16"


class Bnb4bitType(Choice):
    NF4 = "nf4", "4-bit NormalFloat"
    FP4 = "fp4", "4-bit float"


class Device(Choice):
    AUTO = "auto", "a GPU where Ray offers one, else the CPU"
    CPU = "cpu", "the CPU"
    CUDA = "cuda", "an NVIDIA GPU"


class Meter(Choice):
    AUTO = "auto", "NVML on a GPU, RAPL on a CPU where readable, else none"
    NVML = "nvml", "the GPU's NVML energy counter and power samples (a CUDA cell)"
    CPU = "cpu", "RAPL package energy under /sys/class/powercap"
    NONE = "none", "no energy: time and tokens only"


class ProgressMode(Choice):
    AUTO = "auto", "live on a terminal, plain otherwise"
    LIVE = "live", "a bar of cells under the event lines"
    PLAIN = "plain", "one line per event (start, ok, failed, retry), each finished cell's with the ETA"
    OFF = "off", "nothing"


class ProcessPer(Choice):
    CELL = "cell", "a fresh process per cell of a shared lane (the default)"
    LANE = "lane", "one process measures a lane's cells in turn: imports and CUDA context paid once per lane"


class OneGpuPer(Choice):
    CELL = "cell", "each GPU cell takes any free GPU"
    COMPARISON = "comparison", ("cells that differ only in quantization, engine or batch size share one GPU, one "
                                "after another: every comparison the report makes is one device's")
    PRECISION = "precision", "as comparison, but each batch size is its own lane (batch sizes in parallel)"
    STUDY = "study", "every GPU cell of the command on one GPU"


class EngineKind(Choice):
    EAGER = "eager", "transformers generate(), one launch per kernel (the published protocol)"
    GRAPH = "graph", "ecosweep's decode loop replaying one CUDA graph per step (launch-free)"
    COMPILED = "compiled", ("ecosweep's decode loop with its step compiled by torch.compile (inductor, whole graph), "
                            "replayed from CUDA graphs")
    HF_STATIC = "hf_static", ("generate() with transformers' static cache, compiled where transformers agrees (the "
                              "compiled engine before 2026-12-02)")


class DecodeModel(Choice):
    TRANSFORMERS = "transformers", "the checkpoint's own transformers modules over a StaticCache"
    ECOSWEEP = "ecosweep", ("ecosweep's compact decoder (Llama, Mistral, Qwen2): the checkpoint's linear layers, "
                            "KV cache, rotary tables and masks as tensors, nothing on the host inside a step")


class CudaGraphs(Choice):
    INDUCTOR = "inductor", "inductor's CUDA-graph trees replay the compiled step (torch.compile 'reduce-overhead')"
    ECOSWEEP = "ecosweep", "ecosweep captures the compiled step in one torch.cuda.graph, as the graph engine does"
    NONE = "none", "no CUDA graph: the compiled step's kernels are launched from the host every token"


class AttnImplementation(Choice):
    SDPA = "sdpa", "transformers' scaled_dot_product_attention"
    EAGER = "eager", "transformers' eager attention (matmuls and softmax)"
    ECOSWEEP_SDPA = "ecosweep_sdpa", "SDPA decoding grouped-query models on their key/value heads (graph default)"


class Scenario(Choice):
    FIXED_BATCH = "fixed_batch", ("batch_size identical requests that start and end together (every cell before "
                                  "2026-12-03)")
    SERVING = "serving", "a request stream under transformers' continuous batching (serving.*)"


class Arrival(Choice):
    ALL_AT_ONCE = "all_at_once", "every request queued at t = 0 (ML.ENERGY's default)"
    POISSON = "poisson", "exponential gaps at serving.request_rate_rps, seeded"
    CLOSED_LOOP = "closed_loop", "serving.concurrency requests in flight; a new one sent as each finishes"


class LengthDistribution(Choice):
    FIXED = "fixed", "input_tokens and output_tokens exactly"
    UNIFORM = "uniform", "uniform within +/- serving.length_spread of input_tokens and output_tokens"
    CHAT = "chat", "lognormal lengths modelled on ShareGPT conversations (means 161 in / 338 out; README)"
    FILE = "file", "(input_tokens, output_tokens) pairs from serving.lengths_file (JSONL)"


class Server(Choice):
    TRANSFORMERS = "transformers", "transformers' continuous batching (paged KV cache)"
    ECOSWEEP = "ecosweep", "ecosweep's slot server: fixed KV-cache slots, one CUDA graph replay per decode step"


class OnOffAuto(Choice):
    AUTO = "auto", "the server decides (transformers' rules; ecosweep's server: on on a GPU)"
    ON = "on", "always"
    OFF = "off", "never"


# The same choices as plain lists, for the modules that only test membership.
WEIGHTS_CHOICES: List[str] = Weights.values()
QUANT_METHODS: List[str] = QuantMethod.values()
TORCHAO_TYPES: List[str] = TorchaoType.values()
DTYPES: List[str] = Dtype.values()
BNB_4BIT_TYPES: List[str] = Bnb4bitType.values()
DEVICES: List[str] = Device.values()
METERS: List[str] = Meter.values()
PROGRESS_MODES: List[str] = ProgressMode.values()
ONE_GPU_PER: List[str] = OneGpuPer.values()
PROCESS_PER: List[str] = ProcessPer.values()
ENGINE_KINDS: List[str] = EngineKind.values()
ATTN_IMPLEMENTATIONS: List[str] = AttnImplementation.values()
DECODE_MODELS: List[str] = DecodeModel.values()
CUDA_GRAPHS: List[str] = CudaGraphs.values()
SCENARIOS: List[str] = Scenario.values()
ARRIVALS: List[str] = Arrival.values()
LENGTH_DISTRIBUTIONS: List[str] = LengthDistribution.values()
ON_OFF_AUTO: List[str] = OnOffAuto.values()
SERVERS: List[str] = Server.values()
# Architectures ecosweep's compact decoder implements (engine.decode_model=ecosweep, serving.server=ecosweep).
ECOSWEEP_DECODER_MODEL_TYPES = ("llama", "mistral", "qwen2")
# Settings that take one of a Choice's values (validation and `ecosweep settings` read it from here).
CHOICES_BY_SETTING: Dict[str, Type[Choice]] = {
    "weights": Weights, "quantization.method": QuantMethod, "quantization.torchao_type": TorchaoType,
    "quantization.dtype": Dtype, "quantization.bnb_4bit_quant_type": Bnb4bitType,
    "quantization.bnb_4bit_compute_dtype": Dtype, "hardware.device": Device, "measurement.meter": Meter,
    "ray.progress": ProgressMode, "ray.one_gpu_per": OneGpuPer, "ray.process_per": ProcessPer,
    "engine.kind": EngineKind,
    "engine.attn_implementation": AttnImplementation, "engine.decode_model": DecodeModel,
    "engine.compile.cudagraphs": CudaGraphs, "scenario.name": Scenario, "serving.arrival": Arrival,
    "serving.lengths": LengthDistribution, "serving.cuda_graphs": OnOffAuto, "serving.server": Server,
}


def register_configs() -> None:
    """Register the root schema so ``conf/config.yaml`` composes onto typed nodes."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="ecosweep_schema", node=StudyConfig)
