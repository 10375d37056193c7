"""A fresh process per cell whose imports are already done (``ray.process_per=cell`` with
``ray.prepare_next_process=true``, in a lane of several cells; opt-in until it has run on a GPU).

While a cell of the lane runs, its actor starts the process for the lane's next cell, which imports Python's share of
the work (torch, transformers, the next cell's model code and quantization library, ecosweep's worker) and waits;
it creates no CUDA context, so it is on no GPU's process list. Before its warm-up the running cell asks its actor to
go on, and the actor answers only once the next process is ready: the imports run beside the cell's model build,
checks and capture, never during its warm-up or windows. The next cell then begins in a process of its own, as
before, without paying for those imports (their seconds fall outside its wall time; rows: ``process_prepared``,
``process_prepared_imports_s``, ``process_ready_unix_s``; the cell's own wait in ``next_process_wait_s``).

Messages between the actor and a prepared process, over one duplex pipe: process → actor ``("ready",)``; actor →
process ``(cell, run_id, context)`` or ``None`` (end); process → actor
``("windows",)`` before the cell's warm-up, answered ``"go"``; process → actor ``("outcome", CellOutcome)``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Optional

from ecosweep.cells import Cell
from ecosweep.config.schema import StudyConfig
from ecosweep.run.worker import (
    CellContext,
    CellOutcome,
    CellProcessDied,
    _die_with_parent,
    _ray_node_id,
    end_child_process,
    execute_cell,
    import_cell_libraries,
    start_child_process,
)

# Seconds a cell waits before its warm-up for the next process's imports (they take 5-20 s); past it, the cell goes
# on and the next process's imports may overlap its first window (``next_process_wait_s`` shows the whole wait).
READY_TIMEOUT_S = 300.0


# Tests: seconds a process started ahead sleeps after its imports (slow imports: the cell before it waits for them).
SLOW_IMPORTS_ENV = "ECOSWEEP_TESTING_SLOW_IMPORTS_S"


def _serve_one_cell(conn: Any, ray_node_id: Optional[str], ahead: bool, expected: Optional[StudyConfig],
                    parent_pid: int) -> None:
    """The prepared process: import, say so, measure the one cell it is sent (or end on None), send its outcome.
    ``ahead``: started while the lane's previous cell ran; ``expected``: the settings of the cell it expects (its
    model's and precision's libraries are imported too; another cell may still come, e.g. a retry)."""
    _die_with_parent(parent_pid)
    start = time.perf_counter()
    import_cell_libraries(expected)
    if ahead:
        time.sleep(float(os.environ.get(SLOW_IMPORTS_ENV) or 0))
    imports_s = time.perf_counter() - start
    ready_unix_s = time.time()
    conn.send(("ready",))
    try:
        message = conn.recv()
    except EOFError:
        return
    if message is None:
        return
    cell, run_id, context = message

    def before_windows() -> None:
        conn.send(("windows",))
        conn.recv()

    facts = {"process_prepared": ahead, "process_prepared_imports_s": imports_s, "process_ready_unix_s": ready_unix_s}
    outcome = execute_cell(cell, run_id, ray_node_id, dataclasses.replace(context, before_windows=before_windows),
                           facts=facts)
    conn.send(("outcome", outcome))
    conn.close()


class PreparedProcess:
    """The actor's handle on one prepared process."""

    def __init__(self, ahead: bool = False, expected: Optional[Cell] = None) -> None:
        """``ahead``: started while the lane's previous cell runs (else when its own cell arrives); ``expected``:
        the cell it will most likely measure."""
        self.process, self.conn = start_child_process(
            _serve_one_cell, (_ray_node_id(), ahead, expected.settings if expected else None), "ecosweep-cell-prepared")
        self.ready = False

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until the process has imported (True), died or timed out (False)."""
        if self.ready:
            return True
        try:
            if not self.conn.poll(timeout_s):
                return False
            message = self.conn.recv()
        except (EOFError, OSError):
            return False
        self.ready = message[0] == "ready"
        return self.ready

    def measure(self, cell: Cell, run_id: str, context: CellContext, before_windows: Any) -> CellOutcome:
        """Send ``cell``; call ``before_windows()`` when the cell is about to warm up, then let it go on; its
        outcome. Raises CellProcessDied when the process exits without one."""
        try:
            if not self.wait_ready(READY_TIMEOUT_S):
                raise EOFError
            self.conn.send((cell, run_id, context))
            while True:
                message = self.conn.recv()
                if message[0] == "windows":
                    before_windows()
                    self.conn.send("go")
                elif message[0] == "outcome":
                    return message[1]
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.process.join(timeout=60)
            raise CellProcessDied(f"the process measuring {cell.label} exited with code {self.process.exitcode} "
                                  "before sending its results") from None
        finally:
            self.close()

    def close(self) -> None:
        """End the process (it exits by itself after its cell; an unused one is told to end)."""
        end_child_process(self.process, self.conn)


class PreparedProcesses:
    """A lane actor's fresh processes, each started while the cell before it runs."""

    def __init__(self) -> None:
        self.next: Optional[PreparedProcess] = None

    def run(self, cell: Cell, run_id: str, context: Optional[CellContext], next_cell: Optional[Cell]) -> CellOutcome:
        """Measure ``cell`` in the process prepared for it (or a new one); when the lane has a ``next_cell``, start
        its process now and hold this cell's warm-up until that one is ready."""
        current, self.next = self.next, None
        if current is None or not current.process.is_alive():  # none prepared, or it died while it waited
            if current is not None:
                current.close()
            current = PreparedProcess(expected=cell)
        upcoming = PreparedProcess(ahead=True, expected=next_cell) if next_cell is not None else None

        def before_windows() -> None:
            if upcoming is not None:
                upcoming.wait_ready(READY_TIMEOUT_S)

        try:
            return current.measure(cell, run_id, context or CellContext(), before_windows)
        finally:
            self.next = upcoming

    def close(self) -> None:
        if self.next is not None:
            self.next.close()
            self.next = None

