"""Checks that need no model and no GPU, run before Ray starts or anything is written.

Everything that can fail a study for a reason known in advance fails it here, with one message
and exit status 2: an output root that cannot be created or written, too little free space for
the results, or (CPU cells on this machine) a model whose random weights cannot fit in its memory.
A tracking server that does not answer is not fatal (the study goes on with Parquet only): it is
said here, once.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, List, Optional

from ecosweep.config.compat import BYTES_PER_ELEMENT, weight_bytes_per_parameter
from ecosweep.errors import ConfigError
from ecosweep.migrate import unmigrated_cells
from ecosweep.results.folders import existing_ancestor, writable_folder_problem
from ecosweep.workload.fidelity import is_reference, reference_dtype

# Results of one cell (rows, trace, config, timing) stay well under this; the margin covers reports.
RESULT_BYTES_PER_CELL = 4 * 2**20
RESULT_MARGIN_BYTES = 64 * 2**20


def free_space_problem(path: Path, needed_bytes: int, what: str, why: str) -> Optional[str]:
    free = shutil.disk_usage(existing_ancestor(path.expanduser())).free
    if free >= needed_bytes:
        return None
    return (f"{what}={path} has {free / 2**30:.1f} GiB free, but {why} needs about {needed_bytes / 2**30:.1f} GiB; "
            f"free some space or point {what} at a larger disk.")


# Bytes one parameter takes once loaded: the 16-bit (or fp32) weights random ones are built in, and
# the quantized copy made from them (NF4 packs two weights a byte plus block scales).
QUANTIZED_BYTES_PER_PARAMETER = {"bnb_4bit": 0.55, "bnb_8bit": 1.0}


def cell_memory_bytes(s: object) -> int:
    """Memory a CPU cell's random-weight model needs at its peak: while it loads, its weights in
    ``quantization.dtype`` plus the quantized copy made from them; before that, for fidelity, the same
    weights plus their copy in the reference dtype (float32 on a CPU). The two phases do not overlap."""

    q, f = s.quantization, s.fidelity  # type: ignore[attr-defined]
    params = s.model.params_b * 1e9  # type: ignore[attr-defined]
    built = BYTES_PER_ELEMENT.get(q.dtype, 2)
    quantized = (weight_bytes_per_parameter(q.method, q.dtype, q.torchao_type) if q.method == "torchao"
                 else QUANTIZED_BYTES_PER_PARAMETER.get(q.method, 0.0))
    loading = built + quantized
    ref_dtype = reference_dtype(f.reference_dtype, "cpu")
    compared = f.enabled and not is_reference(q.method, q.dtype, ref_dtype)
    reference = built + BYTES_PER_ELEMENT.get(ref_dtype, 4) if compared else 0.0
    return int(params * max(loading, reference))


def runs_on_this_cpu(s: object) -> bool:
    """A cell that will run on this machine's CPU: local Ray, and a CPU device (asked, or auto on a
    machine without an NVIDIA driver)."""
    device = s.hardware.device  # type: ignore[attr-defined]
    local = s.ray.address is None and not os.environ.get("RAY_ADDRESS")  # type: ignore[attr-defined]
    return local and (device == "cpu" or (device == "auto" and not Path("/dev/nvidiactl").exists()))


def memory_problem(cells: Iterable[object]) -> Optional[str]:
    """The largest random-weight CPU cell against this machine's memory (cells run one at a time per lane)."""
    import psutil

    cpu_cells = [c.settings for c in cells if c.settings.weights == "random" and runs_on_this_cpu(c.settings)]  # type: ignore
    if not cpu_cells:
        return None
    biggest = max(cpu_cells, key=cell_memory_bytes)
    needed, total = cell_memory_bytes(biggest), psutil.virtual_memory().total
    if needed <= 0.9 * total:
        return None
    return (f"model={biggest.model.name} quantization={biggest.quantization.name} on the CPU needs about "  # type: ignore
            f"{needed / 2**30:.1f} GiB of memory to build its random weights ({biggest.model.params_b:g}B parameters "  # type: ignore
            f"in {biggest.quantization.dtype}), but this machine has {total / 2**30:.1f} GiB; choose a smaller "  # type: ignore
            "model (e.g. model=tiny-llama) or run it on a GPU.")


def check_output_roots_writable(cells: List[object]) -> None:
    """Raise ConfigError (exit 2, nothing written) when an output root cannot be written: checked before the
    study folders are locked, which creates them."""
    roots = sorted({c.settings.output_root for c in cells})  # type: ignore[attr-defined]
    problems = [p for p in (writable_folder_problem(Path(root), "output_root") for root in roots) if p]
    if problems:
        raise ConfigError(problems)


def unmigrated_problems(cells: List[object]) -> List[str]:
    """A study folder of these cells that holds cells under an older version's ids: measuring would repeat them
    (their ids are not found); ``python -m ecosweep migrate`` renames them once."""
    problems = []
    for folder in sorted({Path(c.settings.output_root).expanduser() / c.settings.study for c in cells}):  # type: ignore
        old = unmigrated_cells(folder) if (folder / "configs").is_dir() else []
        if old:
            problems.append(f"{folder} holds {len(old)} cell(s) under the ids an older ecosweep gave them (e.g. "
                            f"{old[0][0]}, now {old[0][1]}: {old[0][2]}); run `python -m ecosweep migrate {folder}` "
                            "once to rename them, then this command again (it would measure them again otherwise).")
    return problems


def check_before_running(cells: List[object], cells_to_measure: int) -> None:
    """Raise ConfigError (exit 2, no result written) for every problem found: an output root that lacks the
    space for ``cells_to_measure`` cells, or a model the host memory cannot hold. (Whether the roots can be
    written at all is :func:`check_output_roots_writable`'s, before the study folders are locked.)"""
    problems: List[str] = unmigrated_problems(cells)
    roots = sorted({c.settings.output_root for c in cells})  # type: ignore[attr-defined]
    for root in roots:
        problem = free_space_problem(Path(root), RESULT_MARGIN_BYTES + RESULT_BYTES_PER_CELL * cells_to_measure,
                                     "output_root", f"storing {cells_to_measure} cell(s)")
        if problem:
            problems.append(problem)
    if cells_to_measure:
        problem = memory_problem(cells)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError(problems)
