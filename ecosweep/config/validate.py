"""Range and consistency checks of a composed study config.

Every check returns a sentence that names the bad value and the valid choices or
range, so one message can list all problems of a study before anything runs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, List

from ecosweep.config.checks import at_least, choice
from ecosweep.config.compat import compiled_int_mm_problem, requested_gpus, torchao_problem
from ecosweep.config.compose import CONF_DIR
from ecosweep.config.schema import (
    ATTN_IMPLEMENTATIONS,
    BNB_4BIT_TYPES,
    CUDA_GRAPHS,
    DECODE_MODELS,
    DEVICES,
    DTYPES,
    ECOSWEEP_DECODER_MODEL_TYPES,
    ENGINE_KINDS,
    METERS,
    ONE_GPU_PER,
    PROCESS_PER,
    PROGRESS_MODES,
    QUANT_METHODS,
    TORCHAO_TYPES,
    WEIGHTS_CHOICES,
    EngineConfig,
    FidelityConfig,
    HardwareConfig,
    MeasurementConfig,
    ModelConfig,
    QuantizationConfig,
    RayConfig,
    ReportConfig,
    ReuseConfig,
    StudyConfig,
)
from ecosweep.config.validate_serving import validate_serving

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def validate_model(m: ModelConfig, weights: str) -> List[str]:
    problems: List[str] = []
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size"):
        problems += at_least(f"model.{key}", getattr(m, key), 1, "an integer")
    if m.num_attention_heads >= 1 and m.hidden_size % m.num_attention_heads:
        problems.append(
            f"model.hidden_size={m.hidden_size} must be divisible by "
            f"model.num_attention_heads={m.num_attention_heads}."
        )
    if m.num_key_value_heads >= 1 and m.num_attention_heads % m.num_key_value_heads:
        problems.append(
            f"model.num_attention_heads={m.num_attention_heads} must be divisible by "
            f"model.num_key_value_heads={m.num_key_value_heads}."
        )
    problems += at_least("model.params_b", m.params_b, 0.0)
    if weights == "pretrained" and not (m.path or m.hub_id):
        problems.append(
            f"weights=pretrained needs model.path (a local folder) or model.hub_id; "
            f"model={m.name} has neither."
        )
    return problems


def validate_quantization(q: QuantizationConfig) -> List[str]:
    problems = choice("quantization.method", q.method, QUANT_METHODS)
    problems += choice("quantization.dtype", q.dtype, DTYPES)
    if q.method == "bnb_4bit":
        problems += choice("quantization.bnb_4bit_quant_type", q.bnb_4bit_quant_type, BNB_4BIT_TYPES)
        problems += choice("quantization.bnb_4bit_compute_dtype", q.bnb_4bit_compute_dtype, DTYPES)
    if q.method == "bnb_8bit":
        if q.llm_int8_threshold is None or q.llm_int8_threshold < 0:
            problems.append(
                f"quantization.llm_int8_threshold={q.llm_int8_threshold} is out of range: "
                "it must be a number >= 0.0 (6.0 = LLM.int8(), 0.0 = pure int8)."
            )
    if q.method != "bnb_4bit" and q.bnb_4bit_quant_type is not None:
        problems.append(
            f"quantization={q.name} sets bnb_4bit_quant_type but its method is {q.method!r}; "
            "only method=bnb_4bit takes it."
        )
    if q.method != "bnb_8bit" and q.llm_int8_threshold is not None:
        problems.append(
            f"quantization={q.name} sets llm_int8_threshold but its method is {q.method!r}; "
            "only method=bnb_8bit takes it."
        )
    if q.method == "torchao":
        problems += choice("quantization.torchao_type", q.torchao_type, TORCHAO_TYPES)
    elif q.torchao_type is not None:
        problems.append(f"quantization={q.name} sets torchao_type but its method is {q.method!r}; only "
                        "method=torchao takes it.")
    return problems


# Engines that run ecosweep's own decode loop (and so take decode_model, fuse_projections, capture_warmup_steps).
LOOP_ENGINE_KINDS = ("graph", "compiled")


def validate_engine(e: EngineConfig) -> List[str]:
    problems = choice("engine.kind", e.kind, ENGINE_KINDS)
    if e.attn_implementation is not None:
        problems += choice("engine.attn_implementation", e.attn_implementation, ATTN_IMPLEMENTATIONS,
                            or_null="the checkpoint's default")
    problems += at_least("engine.capture_warmup_steps", e.capture_warmup_steps, 0, "an integer")
    if e.decode_model is not None:
        problems += choice("engine.decode_model", e.decode_model, DECODE_MODELS, or_null="transformers")
    loop = e.kind in LOOP_ENGINE_KINDS
    if not loop and e.decode_model not in (None, "transformers"):
        problems.append(f"engine.decode_model={e.decode_model!r} needs an engine that runs ecosweep's decode loop "
                        f"(engine=graph or engine=compiled); engine={e.name} (kind {e.kind}) decodes with generate().")
    if e.fuse_projections and e.decode_model != "ecosweep":
        problems.append("engine.fuse_projections=true fuses the projections of ecosweep's own decoder: it needs "
                        f"engine.decode_model=ecosweep (engine={e.name} has {e.decode_model or 'transformers'!r}).")
    if e.kind == "compiled" and e.compile is None:
        problems.append(f"engine={e.name} (kind compiled) has no engine.compile settings; use engine=compiled, which "
                        "sets them (conf/engine/compiled.yaml), or add them to your engine config.")
    if e.kind != "compiled" and e.compile is not None:
        problems.append(f"engine.compile is set but engine={e.name} is of kind {e.kind!r}; only kind compiled "
                        "compiles its step (use engine=compiled).")
    if e.compile is not None:
        problems += choice("engine.compile.cudagraphs", e.compile.cudagraphs, CUDA_GRAPHS)
        problems += _inductor_option_problems(e.compile.inductor_options)
    return problems


def _inductor_option_problems(options: dict) -> List[str]:
    """engine.compile.inductor_options names torch._inductor.config options (torch is imported only when some
    are given)."""
    if not options:
        return []
    try:
        import torch._inductor.config as inductor_config
    except ImportError:  # pragma: no cover - torch is a dependency
        return ["engine.compile.inductor_options needs torch, which is not installed."]
    unknown = []
    for name in options:
        node: object = inductor_config
        for part in str(name).split("."):
            if not hasattr(node, part):
                unknown.append(str(name))
                break
            node = getattr(node, part)
    if not unknown:
        return []
    return [f"engine.compile.inductor_options names {', '.join(sorted(unknown))}, which torch._inductor.config "
            "does not have; give option names as torch._inductor.config spells them (e.g. epilogue_fusion, "
            "triton.cudagraphs), or leave inductor_options empty."]


def validate_engine_with_model(e: EngineConfig, m: ModelConfig, q: QuantizationConfig) -> List[str]:
    """ecosweep's compact decoder knows three architectures, and fuses only 16-bit weights."""
    problems = []
    if e.decode_model == "ecosweep" and m.model_type not in ECOSWEEP_DECODER_MODEL_TYPES:
        problems.append(f"engine.decode_model=ecosweep implements {', '.join(ECOSWEEP_DECODER_MODEL_TYPES)}, not "
                        f"model={m.name} (model_type {m.model_type!r}); use engine.decode_model=transformers.")
    if e.fuse_projections and q.method != "none":
        problems.append(f"engine.fuse_projections=true fuses 16-bit weights; quantization={q.name} ({q.method}) "
                        "quantizes each projection on its own. Use engine.fuse_projections=false with it.")
    return problems


def validate_engine_with_quantization(e: EngineConfig, q: QuantizationConfig) -> List[str]:
    """Engine and quantization pairs that cannot run, known before anything loads."""
    captured = e.kind == "graph" or (e.kind == "compiled" and e.compile is not None and e.compile.cudagraphs != "none")
    if captured and q.is_llm_int8:
        return [
            f"engine={e.name} cannot run quantization={q.name} (LLM.int8(), llm_int8_threshold="
            f"{q.llm_int8_threshold}): its outlier decomposition chooses, from each activation's values at "
            "run time, which columns go to a separate fp16 matmul, and a CUDA graph replays fixed work only "
            "(a failed capture also leaves the process's CUDA random-number state unusable). Measure "
            "LLM.int8() with engine=eager (or engine=compiled engine.compile.cudagraphs=none), or use "
            f"quantization=int8_pure (threshold 0.0) with engine={e.name}."
        ]
    return []


def validate_hardware(h: HardwareConfig) -> List[str]:
    problems = choice("hardware.device", h.device, DEVICES)
    for key in ("compute_capability", "peak_mem_bandwidth_gb_s", "tdp_w", "peak_fp16_tflops", "memory_gb"):
        value = getattr(h, key)
        if value is not None and value <= 0:
            problems.append(f"hardware.{key}={value} is out of range: it must be > 0 or null.")
    return problems


def validate_quantization_on_hardware(q: QuantizationConfig, h: HardwareConfig) -> List[str]:
    """A quantization the hardware profile or the installed packages cannot run (known before any device is
    touched)."""
    if q.method == "torchao" and q.torchao_type in TORCHAO_TYPES:
        problem = torchao_problem(q, "cpu" if h.device == "cpu" else "cuda")
        if problem:
            return [problem + "."]
    need = q.min_compute_capability
    if need is not None and h.device == "cuda" and h.compute_capability is not None:
        if h.compute_capability < need:
            return [
                f"quantization={q.name} needs CUDA compute capability >= {need}, but "
                f"hardware={h.name} has {h.compute_capability}; choose fp16, nf4, int8 or "
                "another quantization this GPU runs."
            ]
    return []


def validate_engine_shape_on_hardware(s: StudyConfig) -> List[str]:
    """A precision, engine and batch size that a GPU profile's device cannot decode (hardware=auto: checked
    again in the cell, once the device is known, before the model loads)."""
    problem = compiled_int_mm_problem(s.quantization, s.engine.kind, s.batch_size, s.hardware.device)
    return [problem + "."] if problem else []


def validate_measurement(m: MeasurementConfig, repetitions: int) -> List[str]:
    problems = choice("measurement.meter", m.meter, METERS)
    for key in ("min_window_s", "prefill_min_window_s", "warmup_min_s", "idle_settle_s",
                "idle_window_s", "cooldown_timeout_s", "target_ci_pct"):
        problems += at_least(f"measurement.{key}", getattr(m, key), 0.0)
    if not 0 < m.sampler_hz <= 1000:
        problems.append(f"measurement.sampler_hz={m.sampler_hz} is out of range: it must be in (0, 1000].")
    if m.target_ci_pct > 0 and m.max_repetitions < repetitions:
        problems.append(
            f"measurement.max_repetitions={m.max_repetitions} is below repetitions={repetitions}; "
            "it must be >= repetitions."
        )
    return problems


def validate_ray(r: RayConfig) -> List[str]:
    problems = at_least("ray.max_concurrent_cpu_cells", r.max_concurrent_cpu_cells, 1, "an integer")
    problems += at_least("ray.actor_retries", r.actor_retries, 0, "an integer")
    problems += at_least("ray.cpus_per_cell", r.cpus_per_cell, 0.0)
    problems += choice("ray.progress", r.progress, PROGRESS_MODES)
    problems += choice("ray.one_gpu_per", r.one_gpu_per, ONE_GPU_PER)
    problems += choice("ray.process_per", r.process_per, PROCESS_PER)
    asked = {"ray.gpus_per_cell": r.gpus_per_cell,
             **{f"ray.gpus_by_quantization.{q}": n for q, n in (r.gpus_by_quantization or {}).items()}}
    for key, n in asked.items():
        if n is not None and (n < 0 or n != int(n)):
            problems.append(
                f"{key}={n:g} is not supported: a cell holds whole GPUs and meters each of them, so a fraction "
                "would share a GPU's power reading between cells. Use 1 (a whole GPU per cell, the default for "
                "CUDA cells), N > 1 (the model placed layer by layer across N GPUs, all N metered), 0 (CPU "
                "cells), or leave it unset.")
    return problems


def available_quantizations() -> List[str]:
    """The quantization configs under conf/quantization (their names)."""

    return sorted(p.stem for p in (CONF_DIR / "quantization").glob("*.yaml"))


def validate_multi_gpu(s: StudyConfig) -> List[str]:
    """A cell over several GPUs: only the eager engine places a model across devices."""
    n = requested_gpus(s)
    problems = []
    if s.ray.gpus_by_quantization:
        known = available_quantizations()
        unknown = sorted(set(s.ray.gpus_by_quantization) - set(known))
        if unknown:
            problems.append(f"ray.gpus_by_quantization names {', '.join(unknown)}, not a quantization; choose "
                            f"among: {', '.join(known)}.")
    if n is not None and n > 1 and s.outlier_features.count > 0:
        problems.append(f"outlier_features.count={s.outlier_features.count} with {n:g} GPUs per cell is not "
                        "supported: outliers are planted in a model built on one GPU, and a model over several GPUs "
                        "is drawn tensor by tensor. Use outlier_features.count=0 or one GPU per cell.")
    if n is None or n <= 1 or s.engine.kind == "eager":
        return problems
    by_quantization = s.quantization.name in (s.ray.gpus_by_quantization or {})
    asked = f"ray.gpus_by_quantization.{s.quantization.name}" if by_quantization else "ray.gpus_per_cell"
    return problems + [f"engine={s.engine.name} (kind {s.engine.kind}) with {asked}={n:g} is not supported: the "
            "model of a cell over several GPUs is placed layer by layer, and a CUDA graph or a compiled static-cache "
            "step captures one device's stream, not the copies between GPUs. Use engine=eager for cells over "
            "several GPUs, or ray.gpus_per_cell=1 where the model fits one GPU."]


def cost_settings_problems(r: ReportConfig, name: Callable[[str], str] = lambda key: f"report.{key}") -> List[str]:
    """One sentence per bad carbon/cost setting, naming it (as ``name(key)``: how the user set it) and its range."""
    problems = []
    for key in ("grid_gco2e_per_kwh", "usd_per_kwh", "usd_per_gpu_hour"):
        value = getattr(r, key)
        if value is None or not math.isfinite(value) or value < 0:
            problems.append(f"{name(key)}={value} is out of range: it must be a number >= 0.")
    if r.pue is None or not math.isfinite(r.pue) or r.pue < 1:
        problems.append(f"{name('pue')}={r.pue} is out of range: a power usage effectiveness is >= 1 "
                        "(1.0: every watt goes to the IT equipment; typical data centres 1.1-1.6).")
    return problems


def validate_fidelity(f: FidelityConfig, weights: str) -> List[str]:
    problems = choice("fidelity.reference_dtype", f.reference_dtype, ["auto", *DTYPES])
    problems += at_least("fidelity.text_max_tokens", f.text_max_tokens, 2, "an integer")
    if f.text:
        path = Path(f.text).expanduser()
        if not path.is_file():
            problems.append(f"fidelity.text={f.text!r} is not a readable file; give a UTF-8 text file, or "
                            "fidelity.text=null to measure fidelity without perplexity.")
        if weights != "pretrained":
            problems.append(f"fidelity.text={f.text!r} needs weights=pretrained: perplexity on a text means "
                            "nothing for random weights (and they have no tokenizer); drop fidelity.text or "
                            "use weights=pretrained with model.path or a cached hub model.")
    return problems


def validate_reuse(r: ReuseConfig) -> List[str]:
    problems = at_least("reuse.idle_check_s", r.idle_check_s, 0.05, "a number of seconds")
    for key in ("idle_tolerance_w", "idle_tolerance_pct", "idle_max_age_s", "max_reference_mib"):
        problems += at_least(f"reuse.{key}", getattr(r, key), 0.0)
    return problems


def validate_study(s: StudyConfig) -> List[str]:
    """All problems of one cell's config, as sentences; empty when it is valid."""
    problems: List[str] = []
    if s.study is not None and not _SAFE_NAME.match(s.study):
        problems.append(
            f"study={s.study!r} is not a valid study name: use letters, digits, '_', '-' and '.' only."
        )
    problems += choice("weights", s.weights, WEIGHTS_CHOICES)
    problems += at_least("batch_size", s.batch_size, 1, "an integer")
    problems += at_least("input_tokens", s.input_tokens, 1, "an integer")
    problems += at_least("output_tokens", s.output_tokens, 1, "an integer")
    problems += at_least("repetitions", s.repetitions, 1, "an integer")
    problems += at_least("warmup", s.warmup, 0, "an integer")
    problems += at_least("seed", s.seed, 0, "an integer")
    max_pos = s.model.max_position_embeddings
    if max_pos and s.input_tokens + s.output_tokens > max_pos:
        problems.append(
            f"input_tokens + output_tokens = {s.input_tokens + s.output_tokens} exceeds "
            f"model.max_position_embeddings={max_pos} of model={s.model.name}."
        )
    problems += validate_model(s.model, s.weights)
    problems += validate_quantization(s.quantization)
    problems += validate_engine(s.engine)
    problems += validate_engine_with_quantization(s.engine, s.quantization)
    problems += validate_engine_with_model(s.engine, s.model, s.quantization)
    problems += validate_hardware(s.hardware)
    problems += validate_quantization_on_hardware(s.quantization, s.hardware)
    problems += validate_engine_shape_on_hardware(s)
    problems += validate_measurement(s.measurement, s.repetitions)
    problems += validate_ray(s.ray) + validate_multi_gpu(s)
    problems += cost_settings_problems(s.report)
    problems += validate_fidelity(s.fidelity, s.weights)
    problems += validate_reuse(s.reuse)
    problems += validate_serving(s)
    o = s.outlier_features
    problems += at_least("outlier_features.count", o.count, 0, "an integer")
    if o.count > s.model.hidden_size:
        problems.append(f"outlier_features.count={o.count} exceeds model.hidden_size={s.model.hidden_size}.")
    if o.count > 0 and s.weights != "random":
        problems.append(f"outlier_features.count={o.count} plants outliers in random weights only; weights="
                        f"{s.weights} carries its own (set outlier_features.count=0).")
    if o.count > 0 and not o.scale > 0:
        problems.append(f"outlier_features.scale={o.scale} is out of range: it must be a number > 0.")
    return problems
