"""One process that measures a lane's cells in turn (``ray.process_per=lane``), instead of a fresh process per cell.

The lane's actor keeps its GPU; the process it starts keeps Python, torch, transformers and the quantization
libraries imported and the CUDA context alive, so only the first cell of the lane pays for them. Between cells the
process lets go of what the cell held (its model and workload are local to ``execute_cell``; garbage collected,
CUDA's cache emptied, dynamo's compiled code reset) and every row says how many cells its process measured before
(``process_earlier_cells_count``) and what GPU memory torch still held when the cell began
(``cuda_allocated_mib_at_start``): 0 unless something leaked (cuBLAS's workspaces are let go too). A process
that dies is replaced for the lane's next cell.
"""

from __future__ import annotations

import gc
import sys
from typing import Any, Dict, Optional

from ecosweep.cells import Cell
from ecosweep.run.worker import (
    CellContext,
    CellOutcome,
    CellProcessDied,
    _die_with_parent,
    _ray_node_id,
    end_child_process,
    execute_cell,
    start_child_process,
)


def release_cell_state() -> None:
    """Let go of what the last cell left in this process: garbage, CUDA's cached blocks, dynamo's compiled frames
    (a later cell compiles its own model again, from inductor's on-disk cache where shapes match)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        # cuBLAS keeps a workspace per handle and stream in torch's allocator (32 MiB each on Hopper): a cell's
        # capture streams left 96-128 MiB allocated for the next cell of an H100 lane (2026-12-07)
        clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
        if clear_workspaces is not None:
            clear_workspaces()
        torch.cuda.empty_cache()


def process_facts(cells_before: int) -> Dict[str, Any]:
    """What a cell inherits from its process (row columns)."""
    torch = sys.modules.get("torch")
    held = 0.0
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        held = sum(torch.cuda.memory_allocated(i) for i in range(torch.cuda.device_count())) / 2**20
    return {"process_earlier_cells_count": cells_before, "cuda_allocated_mib_at_start": held}


def _serve_lane(conn: Any, ray_node_id: Optional[str], parent_pid: int) -> None:
    """The lane process: measure each cell the actor sends until it sends None (or goes away)."""
    _die_with_parent(parent_pid)
    done = 0
    while True:
        try:
            message = conn.recv()
        except EOFError:
            break
        if message is None:
            break
        cell, run_id, context = message
        conn.send(execute_cell(cell, run_id, ray_node_id, context, facts=process_facts(done)))
        done += 1
        release_cell_state()
    conn.close()


class LaneProcess:
    """The actor's side: starts the lane process on first use (and again after it died), hands it one cell at a
    time. Raises CellProcessDied when the process exits without an outcome."""

    def __init__(self) -> None:
        self._process: Any = None
        self._conn: Any = None

    def run(self, cell: Cell, run_id: str, context: Optional[CellContext] = None) -> CellOutcome:
        if self._process is None or not self._process.is_alive():
            self.close()
            self._process, self._conn = start_child_process(_serve_lane, (_ray_node_id(),), "ecosweep-lane")
        try:
            self._conn.send((cell, run_id, context or CellContext()))
            return self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self._process.join(timeout=60)
            code = self._process.exitcode
            self.close()
            raise CellProcessDied(f"the lane process measuring {cell.label} exited with code {code} before "
                                  "sending its results") from None

    def close(self) -> None:
        """End the lane process (after its current cell)."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is not None:
            end_child_process(process, conn)
