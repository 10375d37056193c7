"""A served cell (``scenario=serving``) inside its process: the model loaded and its fidelity checked as for a
fixed batch, the request stream drawn, its server started (``serving.server``), then ``ServingProtocol`` under
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
from ecosweep.run.token_gate import verify_against_generate
from ecosweep.workload.generation import FixedLengthGeneration
from ecosweep.workload.references import ReferenceStore
from ecosweep.workload.request_stream import RequestSpec, request_stream
from ecosweep.workload.serving import ServingWorkload
from ecosweep.workload.slot_server import ServedTokenCheck, SlotServingWorkload

MIN_REQUESTS = 32
TOKEN_CHECK_REQUESTS = 4  # prompts the slot server decodes beside generate() before its windows
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
                    cell_id: str) -> Tuple[Any, List[RequestSpec]]:
    """The cell's model behind its started server (``serving.server``), and its request stream. ecosweep's slot
    server is checked against generate() first, as a fixed batch's engine is (``engine.verify_tokens``)."""
    store = ReferenceStore.for_settings(s)
    loaded = load_with_fidelity(s, device, extra, clock, cell_id, store)
    specs = stream_of(s)
    longest = max(spec.input_tokens + spec.output_tokens for spec in specs)
    server = SlotServingWorkload if s.serving.server == "ecosweep" else ServingWorkload
    # the server's start: transformers' allocates its cache (graphs come with the warm-up); ecosweep's allocates
    # its slots and captures a decode graph per row count
    with clock.phase("capture_s"):
        workload = server(loaded.model, loaded.vocab_size, s.serving, device, s.seed, longest)
        workload.start()
    if isinstance(workload, SlotServingWorkload) and s.engine.verify_tokens:
        with clock.phase("token_check_s"):
            check_slot_server(workload, loaded, s, device, store, cell_id, extra)
    extra.update(serving_mean_input_tokens=sum(x.input_tokens for x in specs) / len(specs),
                 serving_mean_output_tokens=sum(x.output_tokens for x in specs) / len(specs))
    return workload, specs


def check_slot_server(workload: SlotServingWorkload, loaded: Any, s: StudyConfig, device: str,
                      store: ReferenceStore, cell_id: str, extra: Dict[str, Any]) -> None:
    """generate() against the slot server on ``TOKEN_CHECK_REQUESTS`` prompts of the cell's lengths, served in
    its slots through its captured steps (raises TokenMismatchError before anything is measured)."""
    batch = min(TOKEN_CHECK_REQUESTS, s.serving.max_batch)
    shaped = dataclasses.replace(s, batch_size=batch)  # the reference's shape, for its identity in the store
    reference = FixedLengthGeneration(model=loaded.model, vocab_size=loaded.vocab_size, batch_size=batch,
                                      input_tokens=s.input_tokens, output_tokens=s.output_tokens, seed=s.seed,
                                      device=device)
    served = ServedTokenCheck(workload, reference.input_ids, s.output_tokens)
    verify_against_generate(served, reference, shaped, "serving.server=ecosweep", store, device,
                            str(extra.get("device_name", "")), 1, cell_id, extra)


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
