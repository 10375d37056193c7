"""#34's acceptance from two or more studies of the same cells on one GPU (e.g. `lane2` and `reuse_off1`): per
study, the share of the cells' summed wall time spent in energy windows; per cell spec (model, precision, engine,
batch size), each study's mean J per 1k tokens with its 95 % t CI over the repetitions, and whether each study's
mean lies inside every other study's CI. Also each study's first-cell imports per library (`imports_detail_s`)
where the timing files have them.

    python experiments/harness_efficiency/compare_studies.py outputs/h200x1/lane2 outputs/h200x1/reuse_off1

Prints Markdown tables (pasted into a run's README); reads Parquet rows and timing files, measures nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from ecosweep.results.timing import read_timings, study_breakdown
from ecosweep.stats import t_ci

SPEC = ["model", "quantization", "engine", "batch_size"]


def windows_table(studies: list[Path]) -> list[str]:
    lines = ["| study | cells | cells' wall s | windows s | windows share |", "|---|---|---|---|---|"]
    for study in studies:
        breakdown = study_breakdown(read_timings(study / "timings"))
        if breakdown is None:
            lines.append(f"| `{study.name}` | 0 | - | - | - |")
            continue
        windows = breakdown.phases_s["windows_s"]
        lines.append(f"| `{study.name}` | {breakdown.cells} | {breakdown.wall_s:.1f} | {windows:.1f} | "
                     f"{100 * breakdown.windows_share:.1f} % |")
    return lines


def energy_table(studies: list[Path]) -> list[str]:
    stats = {}
    for study in studies:
        rows = pd.concat(pd.read_parquet(p) for p in sorted((study / "cells").glob("*.parquet")))
        rows = rows[rows.status == "ok"]
        for spec, cell in rows.groupby(SPEC):
            values = cell.energy_j_per_1k_tok.dropna()
            mean, sd, n = float(values.mean()), float(values.std(ddof=1)), len(values)
            stats[(spec, study.name)] = (mean, sd, n, *t_ci(mean, sd, n))
    specs = sorted({spec for spec, _ in stats})
    header = "| precision | engine | batch | " + " | ".join(f"`{s.name}` J/1k (95 % CI, n)" for s in studies) + \
             " | each mean inside the others' CIs |"
    lines = [header, "|" + "---|" * (4 + len(studies))]
    for spec in specs:
        cells, inside = [], True
        for study in studies:
            got = stats.get((spec, study.name))
            if got is None:
                cells.append("-")
                continue
            mean, sd, n, low, high = got
            cells.append(f"{mean:,.1f} ({low:,.1f}-{high:,.1f}, {n})")
            for other in studies:
                theirs = stats.get((spec, other.name))
                if other != study and theirs is not None and not theirs[3] <= mean <= theirs[4]:
                    inside = False
        present = sum((spec, s.name) in stats for s in studies)
        verdict = "yes" if inside and present > 1 else ("-" if present < 2 else "**no**")
        lines.append(f"| {spec[1]} | {spec[2]} | {spec[3]} | " + " | ".join(cells) + f" | {verdict} |")
    return lines


def imports_table(studies: list[Path]) -> list[str]:
    lines = []
    for study in studies:
        timings = [t for t in read_timings(study / "timings") if t.get("imports_detail_s") and t.get("wall_s")]
        if not timings:
            continue
        first = min(timings, key=lambda t: t["launched_unix_s"])
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in
                          sorted(first["imports_detail_s"].items(), key=lambda kv: -kv[1]))
        lines.append(f"- `{study.name}` first cell ({first['label']}): imports {first['imports_s']:.1f} s = {parts}; "
                     f"process start {first['start_s']:.1f} s")
    return lines


def main(paths: list[str]) -> None:
    studies = [Path(p) for p in paths]
    for block in (windows_table(studies), energy_table(studies), imports_table(studies)):
        if block:
            print("\n".join(block), end="\n\n")


if __name__ == "__main__":
    main(sys.argv[1:])
