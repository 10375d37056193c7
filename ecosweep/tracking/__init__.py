"""Experiment tracking (MLflow) as a mirror of the Parquet results.

Only the driver talks to the tracking backend. A tracking failure never stops a study:
the tracker warns once, says how to backfill, and goes quiet; Parquet stays complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, TextIO

from ecosweep.tracking.mlflow_tracker import MlflowTracker

if TYPE_CHECKING:  # pragma: no cover
    from ecosweep.cells import Cell, RunOptions
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


def make_tracker(options: "RunOptions", cells: List["Cell"], out: TextIO):
    """The command's tracker (``options.tracking``), with the study parent run of ``cells``' study."""
    if not options.tracking.enabled:
        return NullTracker()

    study = cells[0].settings  # the parent run is the study's; its cells log into their own study's experiment
    return MlflowTracker.for_study(options.tracking, study.output_root, study.study, out)
