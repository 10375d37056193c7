"""Checks that need no model and no GPU, run before Ray starts or anything is written.

Everything that can fail a study for a reason known in advance fails it here, with one message
and exit status 2: an output root that cannot be created or written, too little free space for
the results or for the random-weight checkpoints the cells will build. A tracking server that
does not answer is not fatal (the study goes on with Parquet only): it is said here, once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from ecosweep.errors import ConfigError

# Results of one cell (rows, trace, config, timing) stay well under this; the margin covers reports.
RESULT_BYTES_PER_CELL = 4 * 2**20
RESULT_MARGIN_BYTES = 64 * 2**20
BYTES_PER_PARAMETER = {"float32": 4, "float16": 2, "bfloat16": 2}


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_folder_problem(path: Path, what: str) -> Optional[str]:
    """Whether ``path`` exists or can be created, and a file can be written in it. Leaves nothing behind:
    folders it had to create to find out are removed again."""
    path = path.expanduser()
    created: List[Path] = []
    step = "created"
    try:
        missing = []
        probe = path
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        if not probe.is_dir():
            return f"{what}={path} cannot be created: {probe} is a file, not a folder."
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
        step = "written to"
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ecosweep-write-test-"):
            pass
    except OSError as exc:
        return (f"{what}={path} cannot be {step} ({exc.strerror or type(exc).__name__}"
                f"{f': {exc.filename}' if exc.filename else ''}); choose a folder you can write, e.g. "
                f"{what}=$HOME/ecosweep-outputs.")
    finally:
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass
    return None


def free_space_problem(path: Path, needed_bytes: int, what: str, why: str) -> Optional[str]:
    free = shutil.disk_usage(_existing_ancestor(path.expanduser())).free
    if free >= needed_bytes:
        return None
    return (f"{what}={path} has {free / 2**30:.1f} GiB free, but {why} needs about {needed_bytes / 2**30:.1f} GiB; "
            f"free some space or point {what} at a larger disk.")


def checkpoints_to_build(cells: Iterable[object]) -> Dict[Tuple[str, str], Tuple[str, int]]:
    """Random-weight checkpoints the cells will build that are not in the model cache yet:
    {(cache folder, checkpoint key): (model name, bytes)}."""
    from ecosweep.workload.models import is_random_checkpoint_built, random_checkpoint_key

    todo: Dict[Tuple[str, str], Tuple[str, int]] = {}
    for cell in cells:
        s = cell.settings  # type: ignore[attr-defined]
        if s.weights != "random":
            continue
        key = random_checkpoint_key(s.model, s.quantization.dtype, s.seed)
        if (s.model_cache, key) in todo or is_random_checkpoint_built(s.model_cache, key):
            continue
        size = int(s.model.params_b * 1e9 * BYTES_PER_PARAMETER.get(s.quantization.dtype, 2))
        todo[(s.model_cache, key)] = (s.model.name, size)
    return todo


def check_before_running(cells: List[object], cells_to_measure: int) -> None:
    """Raise ConfigError (exit 2, nothing written) for every problem found."""
    problems: List[str] = []
    roots = sorted({c.settings.output_root for c in cells})  # type: ignore[attr-defined]
    for root in roots:
        problem = writable_folder_problem(Path(root), "output_root")
        if problem is None:
            problem = free_space_problem(Path(root), RESULT_MARGIN_BYTES + RESULT_BYTES_PER_CELL * cells_to_measure,
                                         "output_root", f"storing {cells_to_measure} cell(s)")
        if problem:
            problems.append(problem)
    local = all(c.settings.ray.address is None for c in cells) and not os.environ.get("RAY_ADDRESS")  # type: ignore
    if local and cells_to_measure:  # on a cluster the checkpoints are built on the worker nodes
        by_cache: Dict[str, List[Tuple[str, int]]] = {}
        for (cache, _key), model in checkpoints_to_build(cells).items():
            by_cache.setdefault(cache, []).append(model)
        for cache, models in sorted(by_cache.items()):
            problem = writable_folder_problem(Path(cache), "model_cache")
            if problem is None:
                names = ", ".join(sorted({name for name, _ in models}))
                problem = free_space_problem(Path(cache), int(1.05 * sum(size for _, size in models)), "model_cache",
                                             f"building the random-weight checkpoint(s) of {names}")
            if problem:
                problems.append(problem)
    if problems:
        raise ConfigError(problems)
