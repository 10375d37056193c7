"""Whether a folder can be written, found out without leaving anything behind (output roots, report folders)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List, Optional


def existing_ancestor(path: Path) -> Path:
    """``path``, or its nearest parent that exists."""
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
