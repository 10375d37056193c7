"""Does an engine decode what generate() decodes? Checked once per cell, before any energy window.

The graph and compiled engines are fed generate()'s own tokens step by step (through their captured
graphs) and their logits are compared with generate()'s at every step; that one pass also gives where
their free-running tokens would first differ. Other workloads (the slot server) run free and are compared
up to each request's first differing token. An engine passes within rounding, or, past rounding, within
FLOOR_FACTOR times the spread of generate() against itself with another attention kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ecosweep.errors import EcosweepError
from ecosweep.workload.generation import FixedLengthGeneration, eos_token_ids
from ecosweep.workload.graph_decode import GraphDecodeGeneration
from ecosweep.workload.references import ReferenceStore


class TokenMismatchError(EcosweepError):
    """An engine's greedy tokens differ from generate()'s for the same model and prompts."""


# How far an engine's logits may stray from generate()'s, in standard deviations of generate()'s
# logits at the step, before the engine is judged to compute something else. Measured on the CPU
# tiny model: a correct loop stays within 2e-6 sd in float32 and 0.07 sd in bf16 / nf4 / int8 (the
# 16-bit rounding of logits and kernels that sum in another order); a mask one position off moves
# them by 0.35 to 1.1 sd.
LOGIT_TOLERANCE_SD = {"float32": 1e-3, "16bit": 0.25}
# Past that tolerance an engine still passes when it differs from generate() by no more than this many
# times generate() differs from itself with the other attention kernel (eager vs sdpa). Kernels that
# quantize activations (bitsandbytes int8) turn a rounding difference in one input into a different
# integer, so their spread is wider than rounding; a wrong loop (mask, positions, stale cache) is not
# explained by any kernel and stays outside.
FLOOR_FACTOR = 2.0


@dataclass(frozen=True)
class TokenCheck:
    """How an engine's greedy decoding compares with generate()'s on the cell's own prompts.

    ``tokens_equal``: a free-running call of the engine would give generate()'s tokens (the graph and
    compiled engines: every greedy choice of their teacher-forced pass agreed, which is where free running
    would first part; the slot server: it ran free). ``agreement``: the fraction of greedy choices that agree
    where both saw the same tokens before (the graph and compiled engines are fed generate()'s tokens at every
    step; the slot server is compared up to each request's first difference). ``logit_diff_sd``: the largest
    |engine - generate()| logit over those
    choices, in standard deviations of generate()'s logits: where it is small, a differing choice
    can only be a near tie between two tokens, which random weights produce often.
    """

    tokens_equal: bool
    first_mismatch_step: Optional[int]  # first new-token index where the free-running calls differ
    choices: int
    agreement: float
    logit_diff_sd: float
    tolerance_sd: float
    # how far generate() strays from itself with another attention kernel (same comparison); measured
    # only when logit_diff_sd exceeds tolerance_sd, else None
    floor_sd: Optional[float] = None

    @property
    def allowed_sd(self) -> float:
        """What the engine may differ by: rounding, or FLOOR_FACTOR x generate()'s own kernel-to-kernel spread."""
        return max(self.tolerance_sd, FLOOR_FACTOR * self.floor_sd) if self.floor_sd is not None else self.tolerance_sd

    @property
    def passed(self) -> bool:
        """Judged on the logits where both saw the same tokens: equal free-running tokens alone can hide an
        engine that goes wrong only on its second call (a cache not reset, say)."""
        return self.logit_diff_sd <= self.allowed_sd

    def columns(self) -> Dict[str, Any]:
        return {"engine_tokens_equal": self.tokens_equal, "engine_token_agreement_share": self.agreement,
                "engine_logit_diff_sd": self.logit_diff_sd, "engine_logit_floor_sd": self.floor_sd}


class _StepComparison:
    """Accumulates per-step comparisons of (batch, vocab) scores whose rows saw identical inputs."""

    def __init__(self, eos: Any):
        self.eos = eos
        self.choices = self.agreeing = 0
        self.max_diff_sd = 0.0

    def add(self, reference: Any, engine: Any, rows: Any = None) -> Any:
        """Compare one step; returns the engine's greedy choices of the compared rows (EOS suppressed)."""
        import torch

        reference, engine = reference.float().clone(), engine.float().to(reference.device)
        if self.eos is not None and len(self.eos):
            reference.index_fill_(1, self.eos.to(reference.device), -torch.inf)
            engine = engine.clone().index_fill_(1, self.eos.to(reference.device), -torch.inf)
        if rows is not None:
            reference, engine = reference[rows], engine[rows]
        if reference.shape[0] == 0:
            return engine.argmax(-1)
        finite = torch.isfinite(reference)
        sd = float(reference[finite].std()) or 1.0
        self.max_diff_sd = max(self.max_diff_sd, float((engine - reference).abs()[finite].max()) / sd)
        self.choices += reference.shape[0]
        chosen = engine.argmax(-1)
        self.agreeing += int((chosen == reference.argmax(-1)).sum())
        return chosen


def _add_common_prefixes(steps: _StepComparison, ref_tokens: Any, ref_scores: Any, tokens: Any, scores: Any) -> None:
    """Compare two free-running calls step by step, each request only while both have produced the same
    tokens: its context is identical up to and including its first differing step."""
    differs = (ref_tokens != tokens).cpu()
    for step in range(ref_tokens.shape[1]):
        same_so_far = ~differs[:, :step].any(dim=1)
        steps.add(ref_scores[step], scores[step], rows=same_so_far.to(ref_scores[step].device))


def _free_running_from_choices(ref_tokens: Any, chosen: Any) -> Any:
    """The free-running tokens implied by teacher-forced choices (batch, steps): generate()'s tokens up to each
    request's first differing choice, which is its own there. Past it the free-running call would see other
    inputs, so those tokens are unknown; they are marked -1 (never a token id), which keeps the comparison's
    first difference where the engine's own call would have it."""
    tokens = ref_tokens.clone()
    differs = chosen != ref_tokens
    for row in range(tokens.shape[0]):
        where = differs[row].nonzero()
        if len(where):
            first = int(where[0])
            tokens[row, first] = chosen[row, first]
            tokens[row, first + 1:] = -1
    return tokens


def _first_difference(reference: Any, engine: Any) -> Optional[int]:
    steps = (reference.cpu() != engine.cpu()).any(dim=0).nonzero()
    return int(steps[0]) if len(steps) else None


@dataclass
class GenerateReference:
    """generate()'s free-running tokens (batch, output_tokens) and each step's logits on the cell's model, and
    where they came from: computed here, or reused from a cell of the same model, precision and prompts."""

    tokens: Any
    scores: List[Any]
    source: str = "computed"
    cell_id: str = ""
    # generate()'s spread against itself with the other attention kernel (attention_floor_sd), once a check has
    # needed it: it depends on the model, precision and prompts only, so it is stored with the run
    floor_sd: Optional[float] = None

    def columns(self) -> Dict[str, Any]:
        return {"engine_reference_source": self.source, "engine_reference_cell_id": self.cell_id}


def generate_reference(reference: FixedLengthGeneration, store: Optional[ReferenceStore] = None,
                       identity: Optional[Dict[str, Any]] = None, cell_id: str = "") -> GenerateReference:
    """generate()'s side of the token check: read from ``store`` when a cell computed it for ``identity``
    (``references.token_identity``), else computed (and stored there)."""
    if store is not None and identity is not None:
        stored = store.load(identity, str(reference.input_ids.device))
        if stored is not None:
            floor = stored.payload.get("floor_sd")
            return GenerateReference(stored.payload["tokens"], list(stored.payload["scores"]), "reused",
                                     stored.cell_id, None if floor is None else float(floor))
    tokens, scores = reference.generate_with_scores()
    if store is not None and identity is not None:
        store.save(identity, {"tokens": tokens, "scores": scores}, cell_id)
    return GenerateReference(tokens, scores, "computed", cell_id)


def store_floor(ref: GenerateReference, check: "TokenCheck", store: Optional[ReferenceStore],
                identity: Optional[Dict[str, Any]]) -> None:
    """Keep the floor a check measured beside generate()'s run in ``store``, so the next check of the same
    model, precision and prompts (another engine, a re-run) reads it instead of running generate() once more."""
    if store is None or identity is None or check.floor_sd is None or ref.floor_sd is not None:
        return
    store.save(identity, {"tokens": ref.tokens, "scores": ref.scores, "floor_sd": check.floor_sd}, ref.cell_id)


def check_tokens(workload: Any, reference: FixedLengthGeneration, tolerance_sd: float,
                 ref: Optional[GenerateReference] = None) -> TokenCheck:
    """Compare ``workload`` (graph or compiled) with generate() on the same model and prompts (``ref``:
    generate()'s run, computed here when not given)."""
    import torch

    ref = ref or generate_reference(reference)
    ref_tokens, ref_scores = ref.tokens, ref.scores
    eos = torch.tensor(eos_token_ids(reference.model), dtype=torch.long)
    eos = eos[(eos >= 0) & (eos < ref_scores[0].shape[-1])]
    steps = _StepComparison(eos)
    if isinstance(workload, GraphDecodeGeneration):
        # A prefill first, so that the compared pass is not the engine's first call (state a call leaves behind,
        # a cache not reset, shows in the second). Fed generate()'s tokens, the engine's greedy choices are its
        # free-running tokens up to its first differing choice, and that choice is its free-running one there
        # (the same inputs into the same deterministic step), so one pass gives both the logits and the
        # free-running comparison: a whole free-running call (2026-12-07, H100: 1.1 s a cell) adds nothing.
        workload.prefill()
        chosen = [steps.add(ref_scores[step], scores).to(ref_tokens.device)
                  for step, scores in workload.teacher_forced_scores(ref_tokens)]
        free_running = _free_running_from_choices(ref_tokens, torch.stack(chosen, dim=1))
    else:
        free_running, eng_scores = workload.generate_with_scores()
        _add_common_prefixes(steps, ref_tokens, ref_scores, free_running, eng_scores)
    first = _first_difference(ref_tokens, free_running)
    agreement = steps.agreeing / steps.choices if steps.choices else float("nan")
    floor = None
    if steps.max_diff_sd > tolerance_sd:
        floor = ref.floor_sd if ref.floor_sd is not None else attention_floor_sd(reference, ref_tokens, ref_scores, eos)
    return TokenCheck(first is None, first, steps.choices, agreement, steps.max_diff_sd, tolerance_sd, floor)


def attention_floor_sd(reference: FixedLengthGeneration, ref_tokens: Any, ref_scores: Any, eos: Any) -> float:
    """How far generate() strays from itself when only the attention kernel changes (eager attention
    against the model's own, or sdpa against eager), compared as the compiled engine is: up to each
    request's first differing token. In standard deviations of the logits, like logit_diff_sd."""
    model = reference.model
    current = model.config._attn_implementation
    model.set_attn_implementation("eager" if current != "eager" else "sdpa")
    try:
        other_tokens, other_scores = reference.generate_with_scores()
    finally:
        model.set_attn_implementation(current)
    steps = _StepComparison(eos)
    _add_common_prefixes(steps, ref_tokens, ref_scores, other_tokens, other_scores)
    return steps.max_diff_sd


def tolerance_for(dtype: str, quant_method: str) -> float:
    """LOGIT_TOLERANCE_SD for a cell: float32 only when nothing is quantized or 16-bit."""
    return LOGIT_TOLERANCE_SD["float32" if dtype == "float32" and quant_method == "none" else "16bit"]


def verify_tokens(workload: Any, reference: FixedLengthGeneration, engine_name: str,
                  tolerance_sd: float, ref: Optional[GenerateReference] = None) -> TokenCheck:
    """:func:`check_tokens`, raising TokenMismatchError (before anything is measured) when the
    engine's logits stray beyond rounding from generate()'s."""
    check = check_tokens(workload, reference, tolerance_sd, ref)
    if not check.passed:
        raise TokenMismatchError(
            f"engine={engine_name} ({workload.engine_effective}) does not decode what generate() decodes on "
            f"the cell's prompts: its logits differ from generate()'s by up to {check.logit_diff_sd:.3g} standard "
            f"deviations (rounding allows {tolerance_sd:g}; generate() itself moves by {check.floor_sd:.3g} with "
            f"another attention kernel, so up to {check.allowed_sd:.3g} would pass), "
            f"{100 * (1 - check.agreement):.1f} % of its greedy "
            f"choices differ where both saw the same tokens, and free-running tokens first differ at new token "
            f"{check.first_mismatch_step}. Its energy would not be the same workload's, so nothing was measured "
            "for this cell; engine.verify_tokens=false skips this check."
        )
    return check
