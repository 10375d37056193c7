"""Study progress: a live status line on a terminal, plain log lines otherwise."""

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

    ``mode``: live (rewrites one status line), plain (a line per event), off, or auto
    (live when the stream is a terminal).
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
        self._live_len = 0

    def eta_s(self) -> Optional[float]:
        finished = self.done + self.failed
        if not finished:
            return None
        elapsed = self.clock() - self.start
        return elapsed / finished * (self.total - finished)

    def status(self) -> str:
        eta = self.eta_s()
        running = "; ".join(self.running.values()) or "-"
        return (f"[{self.done + self.failed}/{self.total} cells: {self.done} ok, {self.failed} failed] "
                f"running: {running} | elapsed {_fmt_s(self.clock() - self.start)}"
                f" | ETA {_fmt_s(eta) if eta is not None else '?'}")

    def _emit(self, line: str) -> None:
        if self.mode == "off":
            return
        if self.mode == "live":
            self.stream.write("\r" + " " * self._live_len + "\r")
            self.stream.write(line + "\n")
            status = self.status()
            self._live_len = len(status)
            self.stream.write(status)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def started(self, cell_id: str, label: str, slot: str) -> None:
        self.running[cell_id] = f"{label} @ {slot}"
        self._emit(f"start  {cell_id} {label} on {slot}")

    def finished(self, cell_id: str, label: str, status: str, seconds: float, note: str = "") -> None:
        self.running.pop(cell_id, None)
        if status == "ok":
            self.done += 1
        else:
            self.failed += 1
        self._emit(f"{status:6s} {cell_id} {label} in {_fmt_s(seconds)}{' ' + note if note else ''} "
                   f"({self.done + self.failed}/{self.total})")

    def retrying(self, cell_id: str, label: str, attempt: int, why: str) -> None:
        self.running.pop(cell_id, None)
        self._emit(f"retry  {cell_id} {label} (attempt {attempt}): {why}")

    def tick(self) -> None:
        """Refresh the live status line (no-op in plain mode)."""
        if self.mode == "live":
            status = self.status()
            self.stream.write("\r" + status + " " * max(0, self._live_len - len(status)))
            self._live_len = len(status)
            self.stream.flush()

    def close(self) -> None:
        if self.mode == "live":
            self.stream.write("\n")
            self.stream.flush()
