"""A profile of a cell's own process outside its measurement (``profile_process=true``): where the seconds of its
imports, model build, checks, capture and teardown go, function by function.

cProfile runs while the cell prepares and after its meter stops, and is paused from the warm-up to the last
window: its overhead (it slows Python-heavy code such as an eager ``generate()`` loop) never reaches a measured
window, and the warm-up and idle baseline, which last as long as the protocol says, are not in it. The result is
two tables of the top functions by cumulative time (ecosweep's own, then every function), as text, stored beside
the cell's timing file (``timings/<cell_id>.profile.txt``).
"""

from __future__ import annotations

import cProfile
import io
import pstats
from contextlib import contextmanager
from typing import Iterator, Optional

# How many functions each of the stored tables lists (by cumulative time): ecosweep's own, then every one.
TOP_FUNCTIONS = 80


class ProcessProfile:
    """cProfile over a cell's process, or nothing (``enabled`` false). ``paused()`` holds it off around the
    measurement; ``report()`` ends it and returns the table (None when it was not enabled)."""

    def __init__(self, enabled: bool):
        self._profiler: Optional[cProfile.Profile] = cProfile.Profile() if enabled else None
        if self._profiler is not None:
            self._profiler.enable()

    @contextmanager
    def paused(self) -> Iterator[None]:
        if self._profiler is None:
            yield
            return
        self._profiler.disable()
        try:
            yield
        finally:
            self._profiler.enable()

    def report(self, top: int = TOP_FUNCTIONS) -> Optional[str]:
        if self._profiler is None:
            return None
        self._profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(self._profiler, stream=out).sort_stats(pstats.SortKey.CUMULATIVE)
        out.write("cProfile of the cell's process outside its warm-up, idle baseline and windows, by cumulative "
                  f"time (seconds)\n\n## ecosweep's own functions (top {top})\n")
        stats.print_stats("ecosweep", top)
        out.write(f"\n## every function (top {top})\n")
        stats.print_stats(top)
        self._profiler = None
        return out.getvalue()
