""""Did you mean": unknown keys on the command line, caught before Hydra composes anything.

Hydra answers ``batchsize=4`` with a hint to append ``+batchsize=4``, which would not help: the
schema has no such key. Here every plain ``key=value`` override is checked against the typed
schema (:mod:`ecosweep.config.schema`), and an unknown key gets the closest valid names.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, List, Optional

from ecosweep.config.schema import StudyConfig

# Keys that are not fields of the schema but are valid on the command line.
_OTHER_TOP_LEVEL = {"hydra", "experiment"}


def _fields(cls: Any) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name) for f in dataclasses.fields(cls)}


def _problem(key: str) -> Optional[str]:
    parts = key.split(".")
    if parts[0] in _OTHER_TOP_LEVEL:
        return None
    cls: Any = StudyConfig
    for depth, part in enumerate(parts):
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            return None  # below a dict (ray.resources.*) anything goes
        fields = _fields(cls)
        if part not in fields:
            where = ".".join(parts[:depth]) or "the top level"
            names = sorted(fields) + (sorted(_OTHER_TOP_LEVEL - {"hydra"}) if depth == 0 else [])
            close = difflib.get_close_matches(part, names, n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(('.'.join(parts[:depth] + [c])) for c in close)}?" if close else ""
            return (f"unknown key '{key}' ('{part}' is not a setting at {where}).{hint} Valid there: "
                    f"{', '.join(names)}.")
        cls = fields[part]
        origin = typing.get_origin(cls)
        if origin is typing.Union:  # Optional[X]
            args = [a for a in typing.get_args(cls) if a is not type(None)]
            cls = args[0] if len(args) == 1 else None
        elif origin is not None:
            cls = None
    return None


def unknown_key_problems(argv: List[str]) -> List[str]:
    """One sentence per command-line override whose key the schema does not have."""
    problems = []
    for arg in argv:
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            continue
        problem = _problem(arg.split("=", 1)[0].strip())
        if problem:
            problems.append(problem)
    return problems
