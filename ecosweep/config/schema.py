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


@dataclass
class ModelConfig:
    """A causal LM, described by its architecture so random weights can be built offline."""

    name: str = MISSING
    hub_id: Optional[str] = None  # Hugging Face id for weights=pretrained
    path: Optional[str] = None  # local checkpoint folder; wins over hub_id when set
    model_type: str = MISSING  # transformers model_type: llama, mistral, qwen2, phi3, ...
    params_b: float = MISSING  # nominal parameter count, billions
    hidden_size: int = MISSING
    intermediate_size: int = MISSING
    num_hidden_layers: int = MISSING
    num_attention_heads: int = MISSING
    num_key_value_heads: int = MISSING
    vocab_size: int = MISSING
    tie_word_embeddings: bool = False
    max_position_embeddings: Optional[int] = None  # None: the architecture's default


@dataclass
class QuantizationConfig:
    """How weights are stored and computed. ``method`` none | bnb_4bit | bnb_8bit (bitsandbytes) | torchao."""

    name: str = MISSING
    method: str = "none"
    dtype: str = "float16"  # unquantized weights, activations, and non-quantized modules
    bnb_4bit_quant_type: Optional[str] = None  # nf4 | fp4
    bnb_4bit_compute_dtype: Optional[str] = None  # always explicit for 4-bit
    bnb_4bit_use_double_quant: bool = False
    llm_int8_threshold: Optional[float] = None  # 6.0 = LLM.int8(); 0.0 = pure int8
    min_compute_capability: Optional[float] = None  # e.g. 8.0 for bfloat16 on NVIDIA
    # method torchao: int8_weight_only | int8_dynamic (int8 activations and weights) | fp8_weight_only |
    # fp8 (dynamic fp8 activations and weights) | int4_weight_only
    torchao_type: Optional[str] = None

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
    cudagraphs: str = "inductor"
    # a graph break fails the cell before anything is measured; false: breaks allowed, counted in the rows
    fullgraph: bool = True
    # inductor benchmarks each Triton kernel's launch configuration around its heuristic choice (gpt-fast's setting)
    coordinate_descent_tuning: bool = True
    # inductor also autotunes matmul templates (Triton, CUTLASS) against cuBLAS: slower compiles
    max_autotune: bool = False
    # compile the prefill too (its own graph, no CUDA graph); false: the prefill runs uncompiled
    prefill: bool = False
    # apply the quantization backend's recommended inductor settings (torchao: recommended_inductor_config_setter)
    backend_recommended: bool = True
    # further inductor options by name (torch._inductor.config), e.g. {epilogue_fusion: false}
    inductor_options: Dict[str, Any] = field(default_factory=dict)


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

    name: str = "eager"
    kind: str = "eager"  # eager | graph | compiled | hf_static
    # attention kernel: null keeps the checkpoint's default (sdpa); sdpa | eager | ecosweep_sdpa
    # (sdpa that runs a single decode token of a grouped-query model on its key/value heads,
    # instead of copying every key/value head for each query head as transformers' sdpa does
    # whenever an attention mask is passed, as a static cache needs)
    attn_implementation: Optional[str] = None
    # graph, compiled and hf_static: run the engine once against generate() on the cell's own prompts
    # before measuring, and fail the cell when the greedy tokens differ
    verify_tokens: bool = True
    # graph and compiled: decode steps run (and discarded) before the capture
    capture_warmup_steps: int = 3
    # graph and compiled: the model code that decodes: transformers (the checkpoint's own modules and a
    # StaticCache; null means this) | ecosweep (ecosweep's compact decoder for Llama, Mistral and Qwen2:
    # the checkpoint's own linear layers, with the KV cache, rotary tables and masks as tensors)
    decode_model: Optional[str] = None
    # ecosweep decode model with 16-bit weights: one matmul for q, k and v and one for gate and up
    fuse_projections: bool = False
    # compiled: how the decode step is compiled (null for every other kind)
    compile: Optional[CompileConfig] = None


@dataclass
class HardwareConfig:
    """A hardware profile: what to run on and the datasheet figures analysis needs."""

    name: str = MISSING
    device: str = "auto"  # auto | cpu | cuda
    gpu_name_pattern: Optional[str] = None  # substring of the CUDA device name this profile describes
    compute_capability: Optional[float] = None
    peak_mem_bandwidth_gb_s: Optional[float] = None  # GB/s (10^9 bytes per second)
    tdp_w: Optional[float] = None  # board power limit, watts
    peak_fp16_tflops: Optional[float] = None  # dense fp16 tensor rate, 10^12 FLOP/s
    memory_gb: Optional[float] = None


@dataclass
class MeasurementConfig:
    """The measurement protocol. All durations in seconds."""

    name: str = "default"
    meter: str = "auto"  # auto | nvml | cpu | none
    min_window_s: float = 5.0
    prefill_min_window_s: float = 2.0
    warmup_min_s: float = 5.0
    max_repetitions: int = 30
    target_ci_pct: float = 2.0
    idle_settle_s: float = 5.0
    idle_window_s: float = 5.0
    sampler_hz: float = 20.0
    align_counter_ticks: bool = True
    cooldown_temp_c: Optional[float] = None
    cooldown_timeout_s: float = 120.0


@dataclass
class TrackingConfig:
    """MLflow tracking; ``uri`` None means a sqlite store under the output root."""

    enabled: bool = True
    uri: Optional[str] = None


@dataclass
class OutlierFeaturesConfig:
    """Outlier features planted in random weights (for LLM.int8() to decompose, as in trained >= 6.7B models)."""

    count: int = 0  # hidden dimensions scaled in every decoder layer's input norms; 0 = none (plain random weights)
    scale: float = 20.0  # their factor: normalised states then carry values of about this size there


@dataclass
class FidelityConfig:
    """Quantized cells against their unquantized reference, outside the energy windows."""

    enabled: bool = True  # compare every cell that is not its own reference
    reference_dtype: str = "auto"  # auto: float16 on a GPU, float32 on a CPU; or float32 | float16 | bfloat16
    text: Optional[str] = None  # a UTF-8 text file: perplexity of cell and reference on it (weights=pretrained)
    text_max_tokens: int = 4096  # of that text, at most this many tokens


@dataclass
class ReportConfig:
    """How the report turns energy and GPU time into carbon and money (sources in the README)."""

    grid_gco2e_per_kwh: float = 436.0  # grid carbon intensity, g CO2e per kWh (world 2022, Ember)
    pue: float = 1.58  # data-centre power usage effectiveness, >= 1 (Uptime Institute 2023 average)
    usd_per_kwh: float = 0.10  # electricity price, US dollars per kWh
    usd_per_gpu_hour: float = 2.49  # one GPU for one hour, US dollars (on-demand H100, early 2026)


@dataclass
class RayConfig:
    """Where and how cells run."""

    address: Optional[str] = None
    num_cpus: Optional[int] = None
    num_gpus: Optional[int] = None
    max_concurrent_cpu_cells: int = 1
    cpus_per_cell: float = 1.0
    # whole GPUs a cell holds; None: 1 for CUDA cells, 0 for CPU cells; N > 1: the model placed layer by layer
    # across N GPUs (eager engine), every one of them metered, energy summed
    gpus_per_cell: Optional[float] = None
    # GPUs per cell for cells of these quantizations (conf/quantization names), over gpus_per_cell: e.g.
    # {fp16: 2} puts a 70B model's 16-bit cells on two GPUs and its 4- and 8-bit ones on one
    gpus_by_quantization: Dict[str, float] = field(default_factory=dict)
    actor_retries: int = 1
    resources: Dict[str, float] = field(default_factory=dict)
    progress: str = "auto"
    # cell: each GPU cell takes any free GPU; comparison: cells that differ only in quantization, engine
    # or batch size share one GPU, one after another; precision: the same with batch sizes on separate
    # GPUs; study: every GPU cell of the command on one GPU
    one_gpu_per: str = "cell"


@dataclass
class SweepConfig:
    """What a grid leaves out (``sweep.exclude``): Hydra sweeps every combination of their values, and some
    combinations cannot run (LLM.int8() under a CUDA graph). Each rule maps settings to a value, or a list of
    values any of which matches; a group is matched by its option name (``quantization: int8``). A grid cell
    that matches every setting of a rule is left out, and the command says how many were."""

    exclude: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class StudyConfig:
    """The root config: one cell's worth of settings (a sweep varies them)."""

    study: Optional[str] = None  # null: named from the command (its models and a hash of its overrides)
    weights: str = "random"
    allow_download: bool = False
    batch_size: int = 1
    input_tokens: int = 128
    output_tokens: int = 64
    repetitions: int = 10
    warmup: int = 3
    seed: int = 0
    output_root: str = "outputs"
    retry_failed: bool = True
    reuse_cells: bool = True  # copy a cell another study under output_root already measured
    dry_run: bool = False  # plan, validate and list the cells; run nothing
    profile: bool = False  # one extra call per cell traced with the PyTorch profiler, after its energy windows
    model: ModelConfig = MISSING
    quantization: QuantizationConfig = MISSING
    engine: EngineConfig = field(default_factory=EngineConfig)
    hardware: HardwareConfig = MISSING
    measurement: MeasurementConfig = MISSING
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    outlier_features: OutlierFeaturesConfig = field(default_factory=OutlierFeaturesConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)


# Settings that say how the whole command runs, not what a cell measures: one value per command (a sweep that
# varies one is refused), read once into ``cells.RunOptions``.
RUN_WIDE_SETTINGS = ("dry_run", "tracking", "report", "ray.address", "ray.num_cpus", "ray.num_gpus", "ray.progress",
                     "sweep")


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
ENGINE_KINDS: List[str] = EngineKind.values()
ATTN_IMPLEMENTATIONS: List[str] = AttnImplementation.values()
DECODE_MODELS: List[str] = DecodeModel.values()
CUDA_GRAPHS: List[str] = CudaGraphs.values()
# Settings that take one of a Choice's values (validation and `ecosweep settings` read it from here).
CHOICES_BY_SETTING: Dict[str, Type[Choice]] = {
    "weights": Weights, "quantization.method": QuantMethod, "quantization.torchao_type": TorchaoType,
    "quantization.dtype": Dtype, "quantization.bnb_4bit_quant_type": Bnb4bitType,
    "quantization.bnb_4bit_compute_dtype": Dtype, "hardware.device": Device, "measurement.meter": Meter,
    "ray.progress": ProgressMode, "ray.one_gpu_per": OneGpuPer, "engine.kind": EngineKind,
    "engine.attn_implementation": AttnImplementation, "engine.decode_model": DecodeModel,
    "engine.compile.cudagraphs": CudaGraphs,
}


def register_configs() -> None:
    """Register the root schema so ``conf/config.yaml`` composes onto typed nodes."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="ecosweep_schema", node=StudyConfig)
