"""Study progress: a live status line on a terminal (tqdm), plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Dict, Optional, TextIO


def _fmt_s(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """Counts cells done / failed / total, shows the cell on each slot and an ETA.

    ``mode``: live (a tqdm bar of cells under the event lines, with the running cells and the ETA), plain (a
    line per event, each finished cell's with the ETA: what a log of a detached run shows), off, or auto (live
    when the stream is a terminal).
    """

    def __init__(self, total: int, mode: str = "auto", stream: Optional[TextIO] = None,
                 clock=time.monotonic):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "live" if getattr(self.stream, "isatty", lambda: False)() else "plain"
        self.mode = mode
        self.total = total
        self.done = 0
        self.failed = 0
        self.running: Dict[str, str] = {}  # cell id -> "label @ slot"
        self.clock = clock
        self.start = clock()
        self._bar = None
        if self.mode == "live":
            from tqdm import tqdm

            # smoothing=0: the ETA from the mean time per finished cell, as plain mode's eta_s()
            # disable=False: TQDM_DISABLE (set for the ML libraries' bars in cell processes) is not for this one
            self._bar = tqdm(total=total, unit="cell", file=self.stream, smoothing=0, dynamic_ncols=True, disable=False,
                             bar_format="{n_fmt}/{total_fmt} cells |{bar:20}| {elapsed}<{remaining} {postfix}")

    def eta_s(self) -> Optional[float]:
        """Seconds until every cell is done, from the mean time per finished cell; None before the first."""
        finished = self.done + self.failed
        if not finished:
            return None
        elapsed = self.clock() - self.start
        return elapsed / finished * (self.total - finished)

    def _emit(self, line: str) -> None:
        if self.mode == "off":
            return
        if self._bar is not None:
            self._bar.write(line, file=self.stream)  # above the bar, which tqdm draws again below it
            self._refresh_bar()
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _refresh_bar(self) -> None:
        running = "; ".join(self.running.values()) or "-"
        self._bar.set_postfix_str(f"{self.done} ok, {self.failed} failed | running: {running}")  # type: ignore[union-attr]

    def started(self, cell_id: str, label: str, slot: str) -> None:
        self.running[cell_id] = f"{label} @ {slot}"
        self._emit(f"start  {cell_id} {label} on {slot}")

    def finished(self, cell_id: str, label: str, status: str, seconds: float, note: str = "") -> None:
        self.running.pop(cell_id, None)
        if status == "ok":
            self.done += 1
        else:
            self.failed += 1
        if self._bar is not None:
            self._bar.update(1)
        finished = self.done + self.failed
        note = f" {note}" if note else ""
        line = f"{status:6s} {cell_id} {label} in {_fmt_s(seconds)}{note} ({finished}/{self.total})"
        eta = self.eta_s()
        if self._bar is None and eta is not None and finished < self.total:  # the live bar shows its own
            line += f", ETA {_fmt_s(eta)}"
        self._emit(line)

    def retrying(self, cell_id: str, label: str, attempt: int, why: str) -> None:
        self.running.pop(cell_id, None)
        self._emit(f"retry  {cell_id} {label} (attempt {attempt}): {why}")

    def tick(self) -> None:
        """Refresh the live bar's elapsed time and ETA (no-op in plain mode)."""
        if self._bar is not None:
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
