"""Wall time per named phase of a cell, as the cell's process goes through them."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator


class PhaseClock:
    """Seconds per phase (``clock``: perf_counter by default; tests pass a fake one). A phase entered twice adds
    up (the windows of every repetition are one ``windows_s``). ``details``: for a phase, the seconds of its
    named parts (``imports_s``: per library), informative only; the parts are inside the phase's own total."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.seconds: Dict[str, float] = {}
        self.details: Dict[str, Dict[str, float]] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.clock()
        try:
            yield
        finally:
            self.add(name, self.clock() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def detail(self, name: str, parts_s: Dict[str, float]) -> None:
        """Record what phase ``name``'s time went to (seconds per part; parts measured again add up)."""
        into = self.details.setdefault(name, {})
        for part, seconds in parts_s.items():
            into[part] = into.get(part, 0.0) + seconds
