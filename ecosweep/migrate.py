"""Study folders written by older ecosweep versions, brought to this version's cell ids: one command,
``python -m ecosweep migrate STUDY_DIR...``, and nothing of it in the run path.

A cell id hashes what a cell measures (``ecosweep.cells.measured_identity``). Before 2026-11-27 it also hashed
the hardware profile's datasheet figures, so cells stored then sit under other ids: this module alone knows
those older identities (``OLDER_IDENTITIES``), and :func:`migrate_study` renames such cells to their ids
(files, rows and timings; a rename is safe to repeat). A study command refuses a study folder that still holds
them (:func:`unmigrated_cells`) rather than measuring its cells again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Dict, List, Tuple

from ecosweep.cells import cell_id, measured_identity, stable_digest
from ecosweep.config.compose import load_cell_config
from ecosweep.config.schema import StudyConfig
from ecosweep.results.store import StudyStore


def _with_datasheet(s: StudyConfig) -> str:
    """The id before 2026-11-27: the hardware profile hashed whole, its datasheet figures included."""
    identity = measured_identity(s)
    identity["hardware"] = dataclasses.asdict(s.hardware)
    return stable_digest(identity)


# Each older identity rule by the version that retired it: the id a cell had while the rule held.
OLDER_IDENTITIES: Dict[str, Callable[[StudyConfig], str]] = {
    "before 2026-11-27, datasheet figures hashed in": _with_datasheet,
}


def stored_cells(study_dir: Path) -> List[Tuple[str, StudyConfig]]:
    """(stored id, config) of every cell a study folder holds a config for."""
    return [(path.stem, load_cell_config(path)) for path in sorted((study_dir / "configs").glob("*.yaml"))]


def unmigrated_cells(study_dir: Path) -> List[Tuple[str, str, str]]:
    """(stored id, this version's id, the rule it was stored under) of each cell of ``study_dir`` stored under an
    older id: its config recomputes to another id, and an older rule gives the stored one."""
    found = []
    for stored, settings in stored_cells(study_dir):
        current = cell_id(settings)
        if stored == current:
            continue
        rule = next((name for name, older in OLDER_IDENTITIES.items() if older(settings) == stored), None)
        if rule is not None:
            found.append((stored, current, rule))
    return found


def migrate_study(study_dir: Path) -> List[Tuple[str, str]]:
    """Rename every cell of ``study_dir`` stored under an older id to its id; returns (old, new) pairs. A cell whose
    new id is taken already (measured again since) keeps its old files, and is reported by the next call too."""
    store = StudyStore(study_dir.parent, study_dir.name)
    renamed = []
    for old, new, _ in unmigrated_cells(study_dir):
        if store.cell_path(new).exists() or not store.cell_path(old).exists():
            continue
        store.rename_cell(old, new)
        renamed.append((old, new))
    return renamed
