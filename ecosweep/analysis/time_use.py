"""Where a study's GPU time went, from its cells' timing files (``results.timing``): the report's methods section."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List

import pandas as pd

from ecosweep.results.timing import has_breakdown, read_timings, study_breakdown


def time_use_table(folder: Path) -> pd.DataFrame:
    """The measured cells' wall time by phase group (seconds, share of the cells' summed wall time); empty when
    the folder has no cell with a full breakdown."""
    breakdown = study_breakdown(read_timings(Path(folder) / "timings"))
    if breakdown is None:
        return pd.DataFrame()
    return pd.DataFrame([{"phase": label, "seconds": seconds, "share_pct": 100 * seconds / breakdown.wall_s}
                         for label, seconds in breakdown.groups_s()])


def time_use_section(inputs: Iterable[Path]) -> List[str]:
    """Markdown: per study folder among ``inputs``, the time table and one line on what it covers."""
    out: List[str] = []
    for folder in inputs:
        timings = read_timings(Path(folder) / "timings") if Path(folder).is_dir() else []
        if not timings:
            continue
        breakdown = study_breakdown(timings)
        without = sum(1 for t in timings if not has_breakdown(t))
        lines = [f"### Where the time went: {Path(folder).name}\n"]
        if breakdown is not None:
            lines.append(f"{breakdown.cells} measured cell(s), {breakdown.wall_s:.1f} s from launch to stored"
                         f"{breakdown.gpu_note()}; energy windows {100 * breakdown.windows_share:.1f} % of it. "
                         "Phases per cell: `timings/<cell_id>.json` (README, 'Where a cell's time goes').\n")
            table = time_use_table(folder)
            table["seconds"] = table["seconds"].map(lambda v: f"{v:.1f}")
            table["share_pct"] = table["share_pct"].map(lambda v: f"{v:.1f}")
            lines.append(table.to_markdown(index=False, tablefmt="pipe", disable_numparse=True) + "\n")
        if without:
            lines.append(f"{without} cell(s) have no full time breakdown (measured before ecosweep recorded one, "
                         "or copied from another study).\n")
        out += lines
    return out
