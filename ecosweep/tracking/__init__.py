"""Experiment tracking (MLflow) as a mirror of the Parquet results.

Only the driver talks to the tracking backend. A tracking failure never stops a study:
the tracker warns once, says how to backfill, and goes quiet; Parquet stays complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, TextIO

if TYPE_CHECKING:  # pragma: no cover
    from ecosweep.planner import Cell
    from ecosweep.results.store import StudyStore


class NullTracker:
    """Tracking off (tracking=none)."""

    def log_cell(self, cell: "Cell", rows: Optional[List[Dict[str, Any]]], store: "StudyStore") -> None:
        """Mirror one cell: ``rows`` as just stored (None: a cell copied from another study, read from
        ``store``), with the files ``store`` holds for it as artifacts."""

    def close(self, run: object) -> None:
        pass

    def finish(self, run: object) -> None:
        pass


def make_tracker(cells: List["Cell"], run_id: str, out: TextIO):
    settings = cells[0].settings
    if not settings.tracking.enabled:
        return NullTracker()
    from ecosweep.tracking.mlflow_tracker import MlflowTracker

    return MlflowTracker.for_study(settings, out)
