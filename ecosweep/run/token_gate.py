"""The token check as a cell runs it, before any energy window: generate()'s reference for the cell's model,
precision and prompts (read from the host's reference store when ``reuse.token_reference`` allows, else run and
stored), the engine or server compared with it, the result in the cell's row columns. Raises
``TokenMismatchError`` when they do not decode the same thing (:mod:`ecosweep.workload.token_check`)."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ecosweep.config.schema import StudyConfig
from ecosweep.workload.generation import FixedLengthGeneration
from ecosweep.workload.references import ReferenceStore, token_identity
from ecosweep.workload.token_check import generate_reference, store_floor, tolerance_for, verify_tokens


def verify_against_generate(workload: Any, reference: FixedLengthGeneration, s: StudyConfig, name: str,
                            store: Optional[ReferenceStore], device: str, device_name: str, gpus: int,
                            cell_id: str, extra: Dict[str, Any]) -> None:
    """Compare ``workload`` with ``reference`` (generate() on the same model, prompts and lengths; ``s`` must
    describe that shape for the reference's identity); add the check's and the reference's columns to
    ``extra``."""
    import torch

    token_store = store if s.reuse.token_reference else None
    identity = token_identity(s, device_name, gpus)
    ref = generate_reference(reference, token_store, identity, cell_id)
    check = verify_tokens(workload, reference, name, tolerance_for(s.quantization.dtype, s.quantization.method), ref)
    store_floor(ref, check, token_store, identity)
    extra.update(check.columns(), **ref.columns())
    del ref
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # the reference's logits of every step
