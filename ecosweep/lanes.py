"""Lanes: the cells that share one actor, and so one set of GPUs, measured one after another
(``ray.one_gpu_per``), the GPUs a cell's actor reserves, and what a cluster cannot host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ecosweep.cells import Cell, measured_identity, stable_digest
from ecosweep.config.compat import requested_gpus


@dataclass(frozen=True)
class LaneSpec:
    """Cells that share one actor, and so one set of GPUs, measured one after another in this order."""

    key: str
    cells: Tuple[Cell, ...]
    gpus: float  # GPUs its actor reserves (0: a CPU cell's lane)


def lane_key(cell: Cell) -> str:
    """Cells with the same key share one GPU, measured one after another (``ray.one_gpu_per``).

    ``cell``: every cell its own key. ``comparison``: the cell's measured identity without
    quantization, engine and batch size, so the two sides of every comparison the report makes
    (a precision against fp16, an engine against eager, a batch against batch 1) meet on one
    device. ``precision``: the same, but batch size stays in the key: each batch size's
    precisions and engines share a GPU, and batch sizes spread over GPUs (changes against batch 1
    then cross devices, which the report flags). ``study``: the study.
    """
    s = cell.settings
    mode = s.ray.one_gpu_per
    if mode == "study":
        return f"study:{s.study}"
    if mode in ("comparison", "precision"):
        varying = ("quantization", "engine") if mode == "precision" else ("quantization", "engine", "batch_size")
        identity = {k: v for k, v in measured_identity(s).items() if k not in varying}
        return f"{mode}:" + stable_digest(identity)
    return f"cell:{cell.id}"


def gpus_per_cell(cell: Cell, cluster_gpus: float) -> float:
    """GPUs a cell's actor reserves: what it asks for (``ray.gpus_by_quantization``, ``ray.gpus_per_cell``)
    when set, else one whole GPU for CUDA cells and none for CPU cells."""
    s = cell.settings
    explicit = requested_gpus(s)
    if explicit is not None:
        return explicit
    if s.hardware.device == "cuda" or (s.hardware.device == "auto" and cluster_gpus > 0):
        return 1.0
    return 0.0


def group_lanes(cells: List[Cell], cluster_gpus: float) -> List[LaneSpec]:
    """Group cells into lanes in the order their first cell appears. CPU cells reserve no device,
    so each is its own lane; GPU cells share a lane when their ``lane_key`` (and the resources
    their actor asks for) agree."""
    members: Dict[str, List[Cell]] = {}
    gpus: Dict[str, float] = {}
    for cell in cells:
        need = gpus_per_cell(cell, cluster_gpus)
        if need > 0:
            key = f"{lane_key(cell)}|gpus={need:g}|{sorted(cell.settings.ray.resources.items())}"
        else:
            key = f"cell:{cell.id}"
        members.setdefault(key, []).append(cell)
        gpus[key] = need
    return [LaneSpec(key, tuple(cells_of), gpus[key]) for key, cells_of in members.items()]


def resource_problems(cells: List[Cell], resources: Dict[str, float], node_gpus: Optional[float] = None) -> List[str]:
    """One sentence per kind of cell the cluster (``ray.cluster_resources()``; its largest node has
    ``node_gpus`` GPUs, default all of them) cannot host: more GPUs per cell than it or one node has (a
    cell's GPUs are one actor's, on one node), or a custom resource it lacks."""
    gpus = float(resources.get("GPU", 0))
    node_gpus = gpus if node_gpus is None else node_gpus
    problems = []
    for cell in cells:
        need = gpus_per_cell(cell, gpus)
        if gpus >= need > node_gpus:
            problems.append(
                f"cell {cell.id} ({cell.label}) needs {need:g} GPUs per cell on one node, but the largest node of "
                f"the Ray cluster has {node_gpus:g} (the cluster {gpus:g} in all); a cell's GPUs belong to one "
                "actor on one node: use ray.gpus_per_cell <= the GPUs of a node.")
        if need > gpus:
            hint = ("use fewer GPUs per cell (ray.gpus_per_cell), a cluster with more GPUs per node" if need > 1
                    else "use hardware=cpu or hardware=auto on a machine without GPUs")
            problems.append(
                f"cell {cell.id} ({cell.label}, hardware={cell.settings.hardware.name}) needs "
                f"{need:g} GPU per cell but the Ray cluster has {gpus:g} GPUs; {hint}."
            )
        for name, amount in cell.settings.ray.resources.items():
            if float(resources.get(name, 0)) < amount:
                problems.append(
                    f"ray.resources asks for {name}={amount:g} per cell but the cluster offers "
                    f"{float(resources.get(name, 0)):g}; start the nodes with --resources."
                )
    return sorted(set(problems))
