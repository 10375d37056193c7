"""Checks of the workload's shape (``scenario``) and a served stream's settings (``serving.*``), before anything
loads: each problem one sentence naming the bad value and what is valid (``validate.validate_study`` gathers
them)."""

from __future__ import annotations

import re
from typing import List

from ecosweep.config.checks import choice, positive
from ecosweep.config.lengths_file import LengthsFileError, read_lengths_file
from ecosweep.config.schema import (
    ARRIVALS,
    ECOSWEEP_DECODER_MODEL_TYPES,
    LENGTH_DISTRIBUTIONS,
    ON_OFF_AUTO,
    SCENARIOS,
    SERVERS,
    StudyConfig,
)

_SLO_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _slo_problems(s: StudyConfig) -> List[str]:
    problems: List[str] = []
    if not s.serving.slos:
        problems.append("serving.slos is empty: give at least one latency objective, e.g. "
                        "serving.slos={interactive: {ttft_ms: 500, tpot_ms: 30}}.")
    for name, slo in s.serving.slos.items():
        if not _SLO_NAME.match(name):
            problems.append(f"serving.slos.{name}: an SLO's name must be lower-case letters, digits and '_' "
                            "(it names report columns).")
        problems += positive(f"serving.slos.{name}.ttft_ms", slo.ttft_ms)
        problems += positive(f"serving.slos.{name}.tpot_ms", slo.tpot_ms)
    return problems


def _lengths_problems(s: StudyConfig) -> List[str]:
    v = s.serving
    if v.lengths == "uniform" and not 0 <= v.length_spread < 1:
        return [f"serving.length_spread={v.length_spread} is out of range: lengths=uniform needs 0 <= it < 1."]
    if v.lengths != "file":
        return [f"serving.lengths_file={v.lengths_file!r} is read only with serving.lengths=file (lengths="
                f"{v.lengths})."] if v.lengths_file else []
    if not v.lengths_file:
        return ["serving.lengths=file needs serving.lengths_file: a JSONL file of "
                "{\"input_tokens\": N, \"output_tokens\": M} lines."]
    try:
        pairs = read_lengths_file(v.lengths_file)
    except LengthsFileError as exc:
        return [str(exc)]
    longest = max(i + o for i, o in pairs)
    limit = s.model.max_position_embeddings
    if limit and longest > limit:
        return [f"serving.lengths_file={v.lengths_file!r} has a request of {longest} tokens, more than "
                f"model.max_position_embeddings={limit} of model={s.model.name}."]
    return []


def validate_serving(s: StudyConfig) -> List[str]:
    """The scenario's problems; a fixed-batch cell's serving.* settings are not read, so not checked."""
    name = s.scenario.name
    if name != "serving":  # fixed_batch, or a name the scenario group does not have
        return choice("scenario.name", name, SCENARIOS)
    v = s.serving
    problems: List[str] = []
    problems += choice("serving.arrival", v.arrival, ARRIVALS)
    problems += choice("serving.lengths", v.lengths, LENGTH_DISTRIBUTIONS)
    problems += choice("serving.cuda_graphs", v.cuda_graphs, ON_OFF_AUTO)
    problems += choice("serving.server", v.server, SERVERS)
    if v.arrival == "poisson":
        problems += positive("serving.request_rate_rps", v.request_rate_rps)
    problems += positive("serving.concurrency", v.concurrency, "an integer")
    problems += positive("serving.max_batch", v.max_batch, "an integer")
    if v.requests is not None:
        problems += positive("serving.requests", v.requests, "an integer")
    problems += positive("serving.request_timeout_s", v.request_timeout_s)
    if v.compile_level not in (0, 1, 2, 3):
        problems.append(f"serving.compile_level={v.compile_level} is out of range: 0 (none), 1, 2 or 3.")
    if v.max_memory_percent is not None and not 0 < v.max_memory_percent <= 1:
        problems.append(f"serving.max_memory_percent={v.max_memory_percent} is out of range: a share in (0, 1], "
                        "or null for transformers' default.")
    problems += _slo_problems(s) + _lengths_problems(s)
    return problems + _combination_problems(s) + _slot_server_problems(s)


def _slot_server_problems(s: StudyConfig) -> List[str]:
    """What ecosweep's slot server (serving.server=ecosweep) cannot serve: it is ecosweep's compact decoder, so
    the architectures that decoder implements; its graphs are plain CUDA graphs, so no compile level, and no
    LLM.int8() (whose outlier split reads the activations on the host) while they are on; its cache is sized
    from the stream, so no memory share."""
    v = s.serving
    if v.server != "ecosweep":
        return []
    problems: List[str] = []
    if s.model.model_type not in ECOSWEEP_DECODER_MODEL_TYPES:
        problems.append(f"serving.server=ecosweep serves with ecosweep's compact decoder, which implements "
                        f"{', '.join(ECOSWEEP_DECODER_MODEL_TYPES)}, not model={s.model.name} (model_type "
                        f"{s.model.model_type!r}); use serving.server=transformers.")
    if v.compile_level:
        problems.append(f"serving.compile_level={v.compile_level} sets transformers' compiling; serving.server="
                        "ecosweep replays plain CUDA graphs and compiles nothing. Use serving.compile_level=0 with it.")
    if v.max_memory_percent is not None:
        problems.append(f"serving.max_memory_percent={v.max_memory_percent} sizes transformers' paged cache; "
                        "serving.server=ecosweep sizes its slots from the stream (max_batch x the longest request). "
                        "Leave serving.max_memory_percent null with it.")
    if s.quantization.is_llm_int8 and v.cuda_graphs != "off":
        problems.append(f"quantization={s.quantization.name} (LLM.int8() with an outlier threshold) finds its "
                        "outliers on the host at every call, which a CUDA graph cannot replay; serve it with "
                        "serving.server=ecosweep serving.cuda_graphs=off, or with serving.server=transformers.")
    return problems


def _combination_problems(s: StudyConfig) -> List[str]:
    """Other settings a served cell cannot take."""
    problems: List[str] = []
    if s.engine.kind != "eager":
        problems.append(f"scenario=serving is served by its server (serving.server: transformers' continuous "
                        f"batching or ecosweep's slot server), which has its own decode loop; engine={s.engine.name} "
                        "applies to fixed batches. Use engine=eager (the default) and "
                        "serving.cuda_graphs / serving.compile_level for the server's graphs and compiling.")
    if s.batch_size != 1:
        problems.append(f"batch_size={s.batch_size} sizes fixed batches; scenario=serving batches up to "
                        "serving.max_batch requests as they arrive. Leave batch_size at 1 and set serving.max_batch.")
    if s.profile:
        problems.append("profile=true profiles one generate() call of a fixed batch; scenario=serving has none. "
                        "Profile the same model and precision with scenario=fixed_batch.")
    if (s.ray.gpus_per_cell or 1) > 1 or s.ray.gpus_by_quantization.get(s.quantization.name, 1) > 1:
        problems.append("scenario=serving runs on one GPU: continuous batching here does not split a model over "
                        "several (ray.gpus_per_cell must be 1).")
    return problems
