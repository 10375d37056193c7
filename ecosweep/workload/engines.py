"""Decode engines: build a cell's workload for its engine and say what ran.

``eager``     transformers' generate() (FixedLengthGeneration).
``graph``     ecosweep's greedy loop with one CUDA graph replay per token (GraphDecodeGeneration).
``compiled``  the same loop with its step compiled by torch.compile, replayed from CUDA graphs
              (CompiledDecodeGeneration).
``hf_static`` generate() with transformers' static cache, compiled where transformers agrees to
              (HfStaticGeneration; the ``compiled`` engine before 2026-12-02).

Whatever was asked, :func:`engine_facts` reports what actually ran (``engine_effective``), the model code
and attention implementation, and what compiling did; :mod:`ecosweep.workload.token_check` fails a cell
whose engine does not decode what generate() decodes on the cell's own prompts.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ecosweep.config.schema import EngineConfig, QuantizationConfig
from ecosweep.workload.compiled_decode import CompiledDecodeGeneration
from ecosweep.workload.generation import FixedLengthGeneration
from ecosweep.workload.graph_decode import GraphDecodeGeneration


def build_workload(engine: EngineConfig, model: Any, vocab_size: int, batch_size: int, input_tokens: int,
                   output_tokens: int, seed: int, device: str,
                   quantization: Optional[QuantizationConfig] = None) -> Any:
    """The cell's workload for ``engine`` (all share the interface CellProtocol drives)."""
    common = dict(model=model, vocab_size=vocab_size, batch_size=batch_size, input_tokens=input_tokens,
                  output_tokens=output_tokens, seed=seed, device=device)
    loop = dict(capture_warmup_steps=engine.capture_warmup_steps, decode_model=engine.decode_model,
                fuse_projections=engine.fuse_projections)
    if engine.kind == "eager":
        return FixedLengthGeneration(**common)
    if engine.kind == "graph":
        return GraphDecodeGeneration(**common, capture=True, **loop)
    if engine.kind == "compiled":
        if engine.compile is None or quantization is None:
            raise ValueError("engine kind compiled needs engine.compile settings and the cell's quantization")
        return CompiledDecodeGeneration(**common, compile_config=engine.compile, quantization=quantization, **loop)
    if engine.kind == "hf_static":
        return HfStaticGeneration(**common)
    raise ValueError(f"unknown engine kind {engine.kind!r}")


class HfStaticGeneration(FixedLengthGeneration):
    """generate() with ``cache_implementation="static"``; transformers compiles the decode step when
    its criteria hold (a CUDA device, a quantizer that supports compilation) and silently runs eager
    otherwise. After the first call, ``engine_effective`` says which happened."""

    engine_effective = "unknown"  # until the first call

    def __init__(self, **kw: Any):
        super().__init__(**kw, cache_implementation="static")
        self.compile_note: Optional[str] = None

    def generate(self) -> int:
        tokens = super().generate()
        if self.engine_effective == "unknown":
            self._observe_compilation()
        return tokens

    def generate_with_scores(self) -> Any:
        result = super().generate_with_scores()
        if self.engine_effective == "unknown":
            self._observe_compilation()
        return result

    def _observe_compilation(self) -> None:
        """generate() keeps its compiled forward in ``_compiled_call`` once it chose to compile; dynamo's
        counters say whether anything was actually compiled (it can fall back to eager quietly)."""
        try:
            from torch._dynamo.utils import counters

            graphs = int(counters["stats"]["unique_graphs"])
        except Exception:  # counters are internal: without them, trust generate()'s choice
            graphs = 1
        compiled = getattr(self.model, "_compiled_call", None) is not None and graphs > 0
        self.engine_effective = "hf_static_compiled" if compiled else "eager_static_cache"
        if not compiled:
            quantizer = getattr(self.model, "hf_quantizer", None)
            if self.model.device.type != "cuda":
                why = f"transformers compiles generate() only on an accelerator, not on {self.model.device.type}"
            elif quantizer is not None and not getattr(quantizer, "is_compileable", True):
                why = f"transformers does not compile models quantized by {type(quantizer).__name__}"
            else:
                why = "transformers' auto-compile criteria did not hold"
            self.compile_note = f"asked for compiled, ran eager with a static cache: {why}"


def engine_facts(workload: Any, engine: EngineConfig) -> Dict[str, Any]:
    """Row columns saying what ran: ``engine_kind``, ``engine_effective``, ``decode_model``,
    ``attn_implementation``, what compiling did (compiled engine: ``compile_*``) and, where what ran is not
    what was asked, ``engine_note`` saying why."""
    facts = {"engine_kind": engine.kind, "engine_effective": workload.engine_effective,
             "decode_model": getattr(workload, "decode_model", None),
             "attn_implementation": getattr(workload.model.config, "_attn_implementation", None),
             "engine_note": getattr(workload, "compile_note", None)}
    if getattr(workload, "decode_model", None) == "ecosweep":  # its own attention: SDPA on the key/value heads
        facts["attn_implementation"] = "ecosweep_sdpa"
    facts.update(getattr(workload, "compile_facts", {}) or {})
    if isinstance(workload, CompiledDecodeGeneration):
        facts["compile_recompiles_count"] = workload.recompiles()
    return facts
