"""A cell's model, loaded with its fidelity checked: the part of a cell's preparation that every scenario shares
(a fixed batch builds its engine on it, a served cell its server)."""

from __future__ import annotations

from typing import Any, Dict

from ecosweep.config.schema import StudyConfig
from ecosweep.measure.phases import PhaseClock
from ecosweep.workload.fidelity import cell_fidelity, prepare_reference
from ecosweep.workload.kernel_path import quantized_weight_type
from ecosweep.workload.models import LoadedModel, load_model
from ecosweep.workload.references import ReferenceStore


def load_with_fidelity(s: StudyConfig, device: str, extra: Dict[str, Any], clock: PhaseClock, cell_id: str,
                       store: ReferenceStore) -> LoadedModel:
    """Load the cell's model (for a quantized cell, its unquantized reference first, computed or read back from
    ``store`` when ``reuse.fidelity_reference`` allows) and compare the two. Adds what it learns to ``extra``
    (row columns) and its wall times to ``clock`` (``fidelity_reference_s``, ``load_s``, ``fidelity_s``)."""
    import torch

    with clock.phase("fidelity_reference_s"):
        reference = prepare_reference(s, device, store if s.reuse.fidelity_reference else None, cell_id,
                                      str(extra.get("device_name", "")))
    with clock.phase("load_s"):
        loaded = load_model(s, device)
    extra.update(params_count=loaded.params_count, weights_source=loaded.source,
                 quant_weight_type=quantized_weight_type(loaded.model))
    with clock.phase("fidelity_s"):
        fidelity = cell_fidelity(s, loaded.model, reference, device)
        if reference is not None:
            extra.update(reference.columns())
        del reference
        if fidelity is not None:
            extra.update(fidelity.columns())
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    return loaded
