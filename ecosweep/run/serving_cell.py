"""A served cell (``scenario=serving``) inside its process: the model loaded and its fidelity checked as for a
fixed batch, the request stream drawn, transformers' continuous batching started, then ``ServingProtocol`` under
the cell's meter. Returns the rows, the power trace and the per-request rows."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Tuple

from ecosweep.cells import Cell
from ecosweep.config.schema import ServingConfig, StudyConfig
from ecosweep.measure.phases import PhaseClock
from ecosweep.measure.protocol import IdleContext, ProtocolResult
from ecosweep.measure.serving_protocol import ServingProtocol
from ecosweep.run.metered import run_metered
from ecosweep.run.model_prep import load_with_fidelity
from ecosweep.workload.references import ReferenceStore
from ecosweep.workload.request_stream import RequestSpec, request_stream
from ecosweep.workload.serving import ServingWorkload

MIN_REQUESTS = 32
POISSON_STREAM_S = 30.0


def requests_per_repetition(v: ServingConfig) -> int:
    """``serving.requests``, or where it is null a stream sized from the load: four full batches at once (or
    through the closed loop), or ``POISSON_STREAM_S`` of arrivals; at least ``MIN_REQUESTS``."""
    if v.requests is not None:
        return v.requests
    if v.arrival == "poisson":
        return max(MIN_REQUESTS, round(v.request_rate_rps * POISSON_STREAM_S))
    return max(MIN_REQUESTS, 4 * v.max_batch)


def stream_of(s: StudyConfig) -> List[RequestSpec]:
    """The cell's requests for every repetition (seeded: the same for every precision and run)."""
    v = s.serving
    return request_stream(v.arrival, v.lengths, requests_per_repetition(v), s.input_tokens, s.output_tokens, s.seed,
                          v.request_rate_rps, v.length_spread, v.lengths_file, s.model.max_position_embeddings)


def warmup_stream(specs: List[RequestSpec], max_batch: int) -> List[RequestSpec]:
    """A full batch of the stream's first requests, all at once: the server's shapes and graphs before the windows."""
    return [dataclasses.replace(spec, request_id=f"warm{spec.request_id}", arrival_s=0.0)
            for spec in specs[:max_batch]]


def prepare_serving(s: StudyConfig, device: str, extra: Dict[str, Any], clock: PhaseClock,
                    cell_id: str) -> Tuple[ServingWorkload, List[RequestSpec]]:
    """The cell's model behind a started continuous-batching server, and its request stream."""
    loaded = load_with_fidelity(s, device, extra, clock, cell_id, ReferenceStore.for_settings(s))
    specs = stream_of(s)
    longest = max(spec.input_tokens + spec.output_tokens for spec in specs)
    with clock.phase("capture_s"):  # the server's start (its cache allocated; graphs come with the warm-up)
        workload = ServingWorkload(loaded.model, loaded.vocab_size, s.serving, device, s.seed, longest)
        workload.start()
    extra.update(serving_mean_input_tokens=sum(x.input_tokens for x in specs) / len(specs),
                 serving_mean_output_tokens=sum(x.output_tokens for x in specs) / len(specs))
    return workload, specs


def measure_serving(cell: Cell, workload: ServingWorkload, specs: List[RequestSpec], device: str,
                    base_row: Dict[str, Any], clock: PhaseClock,
                    idle_baselines: Dict[str, Any]) -> Tuple[ProtocolResult, Any, List[Dict[str, Any]]]:
    """``ServingProtocol`` under the cell's meter: (the protocol's result, the power trace, the request rows)."""
    s = cell.settings
    protocols: List[ServingProtocol] = []

    def protocol(meter: Any, observes_device: bool, idle: IdleContext) -> ServingProtocol:
        protocols.append(ServingProtocol(workload, specs, warmup_stream(specs, s.serving.max_batch), s.serving, meter,
                                         s.measurement, s.repetitions, s.warmup, observes_device=observes_device,
                                         idle=idle))
        return protocols[0]

    try:
        result, trace = run_metered(cell, device, 1, base_row, clock, idle_baselines, protocol)
    finally:
        workload.close()
    for row in result.rows:
        row.update(workload.facts())
    return result, trace, protocols[0].request_rows
