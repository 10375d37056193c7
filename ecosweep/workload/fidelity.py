"""What a precision does to the model's outputs: a quantized cell against its unquantized reference.

The reference is the cell's own model with the same weights in ``fidelity.reference_dtype`` (auto:
float16 on a GPU, float32 on a CPU): for random weights the very tensors the cell quantizes, cast;
for pretrained ones the same checkpoint. On the cell's own prompts the reference decodes greedily
(its continuation), then both models read prompt + continuation in one forward pass each (teacher
forcing: one early difference does not decide the rest), and every position's next-token
distribution is compared. All of it runs while the cell prepares, before its energy windows; its
time is the timings' ``fidelity_s``, never part of a measured window.

With random weights the next-token distributions are close to uniform, so these numbers measure the
numerical error of the quantized kernels, not the loss of model quality; with ``weights=pretrained``
and ``fidelity.text`` they come with the perplexity of both sides on the user's text.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Dict, Optional

from ecosweep.config.compat import bytes_per_element
from ecosweep.workload.generation import FixedLengthGeneration
from ecosweep.workload.models import load_reference_model, pretrained_source
from ecosweep.workload.placement import gpu_count
from ecosweep.workload.references import ReferenceStore, fidelity_identity

# KL divergences are computed this many sequences at a time (bounds the float32 copies of the logits).
_ROWS_PER_CHUNK = 4


@dataclass(frozen=True)
class Fidelity:
    """One quantized cell against its reference; shares in 0..1, KL in nats, logit errors in logit units."""

    fidelity_reference: str  # what the cell was compared with, e.g. "float16 (same weights)"
    fidelity_greedy_agreement_share: float  # cell's argmax == reference's greedy token, over generated positions
    fidelity_top1_match_share: float  # cell's argmax == reference's argmax, over every position (prompt too)
    fidelity_kl_nats_mean: float  # mean KL(reference || cell) of the next-token distributions, generated positions
    fidelity_kl_nats_p95: float  # its 95th percentile
    fidelity_max_abs_logit_error: float  # largest |cell - reference| logit over generated positions
    fidelity_ppl: float = math.nan  # perplexity of the cell on fidelity.text (pretrained weights only)
    fidelity_reference_ppl: float = math.nan  # perplexity of the reference on the same text

    def columns(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class ReferenceRun:
    """The reference's view of the cell's prompts: prompt + greedy continuation, and its logits there."""

    sequences: Any  # (batch, input + output) token ids
    logits: Any  # (batch, input + output - 1, vocab) float32: position i predicts token i + 1
    input_tokens: int
    label: str
    text_ids: Any = None  # fidelity.text through the model's tokenizer (1-D), when one is given
    ppl: float = math.nan  # the reference's perplexity on it
    skipped: Optional[str] = None  # why no reference ran (it does not fit the cell's GPUs); then nothing above
    source: str = "computed"  # computed | reused (read from the host's references: ecosweep.workload.references)
    cell_id: str = ""  # the cell that computed it

    def columns(self) -> Dict[str, Any]:
        """Where the reference came from (row columns); nothing when it was skipped."""
        if self.skipped:
            return {}
        return {"fidelity_reference_source": self.source, "fidelity_reference_cell_id": self.cell_id}

    def payload(self) -> Dict[str, Any]:
        """What a reference store keeps of it."""
        return {"sequences": self.sequences, "logits": self.logits, "input_tokens": self.input_tokens,
                "label": self.label, "text_ids": self.text_ids, "ppl": self.ppl}

    @classmethod
    def from_payload(cls, payload: Dict[str, Any], cell_id: str) -> "ReferenceRun":
        return cls(payload["sequences"], payload["logits"], int(payload["input_tokens"]), payload["label"],
                   payload.get("text_ids"), float(payload["ppl"]), source="reused", cell_id=cell_id)


def reference_dtype(fidelity_dtype: str, device: str) -> str:
    if fidelity_dtype != "auto":
        return fidelity_dtype
    return "float16" if device.startswith("cuda") else "float32"


def is_reference(method: str, dtype: str, ref_dtype: str) -> bool:
    """Whether a cell is its own reference (unquantized, in the reference dtype): nothing to compare."""
    return method == "none" and dtype == ref_dtype


def self_reference(ref_dtype: str) -> Fidelity:
    """The reference cell's own columns: identical to itself by definition (tests compute it)."""
    return Fidelity(f"itself ({ref_dtype})", 1.0, 1.0, 0.0, 0.0, 0.0)


def _logits(model: Any, sequences: Any) -> Any:
    import torch

    with torch.inference_mode():
        return model(input_ids=sequences, attention_mask=torch.ones_like(sequences)).logits[:, :-1].float()


def run_reference(model: Any, batch_size: int, input_tokens: int, output_tokens: int, seed: int, device: str,
                  label: str) -> ReferenceRun:
    """The reference's greedy continuation of the cell's own prompts (the eager workload: exactly
    ``output_tokens`` new tokens, EOS suppressed) and its logits over prompt + continuation."""
    import torch

    workload = FixedLengthGeneration(model, int(model.config.vocab_size), batch_size, input_tokens, output_tokens,
                                     seed, device)
    workload.generate()
    sequences = torch.cat([workload.input_ids, workload.last_tokens], dim=1)
    return ReferenceRun(sequences, _logits(model, sequences), input_tokens, label)


def compare(model: Any, ref: ReferenceRun) -> Fidelity:
    """The cell's model on the reference's sequences, position by position."""
    import torch

    logits = _logits(model, ref.sequences)
    first = ref.input_tokens - 1  # the position that predicts the first generated token
    generated = ref.sequences[:, ref.input_tokens:]
    agree = (logits[:, first:].argmax(-1) == generated).float().mean().item()
    top1 = (logits.argmax(-1) == ref.logits.argmax(-1)).float().mean().item()
    kls, max_err = [], 0.0
    for start in range(0, logits.shape[0], _ROWS_PER_CHUNK):
        cell = logits[start:start + _ROWS_PER_CHUNK, first:]
        base = ref.logits[start:start + _ROWS_PER_CHUNK, first:]
        log_p, log_q = torch.log_softmax(base, -1), torch.log_softmax(cell, -1)
        kls.append((log_p.exp() * (log_p - log_q)).sum(-1).flatten())
        max_err = max(max_err, (cell - base).abs().max().item())
    kl = torch.cat(kls).clamp_min(0.0)  # rounding can give -1e-9
    return Fidelity(ref.label, agree, top1, kl.mean().item(), torch.quantile(kl, 0.95).item(), max_err)


def perplexity(model: Any, token_ids: Any, window: int) -> float:
    """exp(mean next-token negative log-likelihood) over ``token_ids`` (1-D), in windows of ``window`` tokens."""
    import torch

    nll, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, token_ids.numel() - 1, window):
            chunk = token_ids[start:start + window + 1].unsqueeze(0)
            if chunk.shape[1] < 2:
                break
            logits = model(input_ids=chunk[:, :-1]).logits.float()
            nll += torch.nn.functional.cross_entropy(logits[0], chunk[0, 1:], reduction="sum").item()
            count += chunk.shape[1] - 1
    return math.exp(nll / count)


def text_token_ids(source: str, text_path: str, max_tokens: int, device: str, local_only: bool) -> Any:
    """The user's text through the model's own tokenizer, at most ``max_tokens`` tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    text = Path(text_path).expanduser().read_text(encoding="utf-8")
    ids = tokenizer(text, return_tensors="pt").input_ids[0][:max_tokens]
    return ids.to(device)


def reference_too_big(params_b: float, ref_dtype: str, free_bytes: Optional[float]) -> Optional[str]:
    """Why the unquantized reference cannot be loaded beside nothing else on the cell's GPUs (its weights
    need more than 90 % of their free memory: a 70B model in 16 bits on the one GPU its NF4 copy fits), or
    None where it fits or the device's memory is not counted (a CPU)."""

    need = params_b * 1e9 * bytes_per_element(ref_dtype)
    if free_bytes is None or need <= 0.9 * free_bytes:
        return None
    return (f"skipped: the {ref_dtype} reference ({need / 1e9:.0f} GB) does not fit the cell's GPUs "
            f"({free_bytes / 1e9:.0f} GB free)")


def _free_gpu_bytes(s: Any, device: str) -> Optional[float]:
    if not device.startswith("cuda"):
        return None
    import torch

    return float(sum(torch.cuda.mem_get_info(i)[0] for i in range(gpu_count(s, device))))


def prepare_reference(s: Any, device: str, store: Optional[ReferenceStore] = None, cell_id: str = "",
                      device_name: str = "") -> Optional[ReferenceRun]:
    """For a cell that is not its own reference: load the reference (same weights, reference dtype), run it
    on the cell's prompts (and ``fidelity.text``), free it. None when fidelity is off or the cell is the
    reference. Runs before the cell's model is loaded, so the two never share the device's memory; a
    reference too large for the cell's GPUs is skipped (the run says why) rather than failing the cell.

    With ``store`` (``reuse.fidelity_reference``) a reference an earlier cell of this host computed for the same
    weights, prompts and device is read instead, and one computed here is stored for the next cells."""
    q, f = s.quantization, s.fidelity
    ref_dtype = reference_dtype(f.reference_dtype, device)
    if not f.enabled or is_reference(q.method, q.dtype, ref_dtype):
        return None
    too_big = reference_too_big(s.model.params_b, ref_dtype, _free_gpu_bytes(s, device))
    if too_big:
        return ReferenceRun(None, None, s.input_tokens, "", skipped=too_big)
    identity = fidelity_identity(s, device_name, gpu_count(s, device), ref_dtype, q.dtype)
    stored = store.load(identity, device) if store is not None else None
    if stored is not None:
        return ReferenceRun.from_payload(stored.payload, stored.cell_id)
    run = _compute_reference(s, device, ref_dtype)
    run.cell_id = cell_id
    if store is not None:
        store.save(identity, run.payload(), cell_id)
    return run


def _compute_reference(s: Any, device: str, ref_dtype: str) -> ReferenceRun:
    import torch

    f = s.fidelity
    model = load_reference_model(s, device, ref_dtype)
    try:
        run = run_reference(model, s.batch_size, s.input_tokens, s.output_tokens, s.seed, device,
                            f"{ref_dtype} (same weights)")
        if f.text:
            run.text_ids = text_token_ids(pretrained_source(s), f.text, f.text_max_tokens, device,
                                          not s.allow_download)
            run.ppl = perplexity(model, run.text_ids, _window(model))
    finally:
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return run


def cell_fidelity(s: Any, model: Any, ref: Optional[ReferenceRun], device: str) -> Optional[Fidelity]:
    """The cell's columns: compared with ``ref``, or its own reference's identity; None when fidelity is off."""
    f = s.fidelity
    if not f.enabled:
        return None
    if ref is None:
        return self_reference(reference_dtype(f.reference_dtype, device))
    if ref.skipped:  # the measurement goes on; the rows say why it has no fidelity
        nan = math.nan
        return Fidelity(ref.skipped, nan, nan, nan, nan, nan)
    result = compare(model, ref)
    if ref.text_ids is not None:  # the same tokens the reference read
        result = replace(result, fidelity_ppl=perplexity(model, ref.text_ids, _window(model)),
                         fidelity_reference_ppl=ref.ppl)
    return result


def _window(model: Any) -> int:
    return int(min(2048, getattr(model.config, "max_position_embeddings", None) or 2048))
