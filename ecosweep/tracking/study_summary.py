"""What a study's parent run says about it: the grid and what ran, cell counts, the report's
comparisons as metric names, the study's time span. Read from the stored results and report (never
from the run in memory), so a study run and a backfill describe a study the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from ecosweep.results.store import read_results


def study_span_ms(store: Any, cell_ids: List[str]) -> tuple:
    """First cell start and last cell end of a stored study (ms), from the cells' timings; (None, None)
    when none has them."""
    starts, ends = [], []
    for cid in cell_ids:
        path = store.timing_path(cid)
        if path.exists():
            timing = json.loads(path.read_text())
            if timing.get("actor_started_unix_s") and timing.get("finished_unix_s"):
                starts.append(timing["actor_started_unix_s"])
                ends.append(timing["finished_unix_s"])
    return (int(min(starts) * 1000), int(max(ends) * 1000)) if starts else (None, None)


def study_rows(study_dir: Path) -> Any:

    return read_results([study_dir], damaged=[]).to_pandas()


def study_facts(rows: Any) -> Dict[str, str]:
    """The study's grid and what ran, as strings (the values of a column, comma-joined)."""
    if rows.empty:
        return {}
    def values(col: str) -> str:
        if col not in rows:
            return ""
        vals = rows[col].dropna().unique().tolist()
        return ",".join(str(v) for v in sorted(vals, key=lambda v: (isinstance(v, str), v)))
    facts = {"models": values("model"), "quantizations": values("quantization"),
             "engines": values("engine") or "eager", "engines_effective": values("engine_effective"),
             "batch_sizes": values("batch_size"), "input_tokens": values("input_tokens"),
             "output_tokens": values("output_tokens"), "hardware": values("device_name"),
             "weights": values("weights"), "min_window_s": values("min_window_s"),
             "energy_source": values("energy_source")}
    return {k: v[:500] for k, v in facts.items() if v}


def cell_counts(rows: Any) -> Dict[str, float]:
    if rows.empty:
        return {}
    by_cell = rows.groupby("cell_id").status.agg(lambda s: "ok" if (s == "ok").all() else s.iloc[0])
    return {"cells": float(len(by_cell)), "cells_ok": float((by_cell == "ok").sum()),
            "cells_failed": float((by_cell != "ok").sum())}


def report_dir(study_dir: Path) -> Optional[Path]:
    """Where the study's report is: its report/ folder, or the study folder itself (where study runs
    before 2026-11-27 wrote it)."""
    for folder in (study_dir / "report", study_dir):
        if (folder / "report.md").exists():
            return folder
    return None


def metric_key(*parts: Any) -> str:
    """An MLflow metric name from parts: letters, digits and _ - . / only."""
    import re

    return ".".join(re.sub(r"[^A-Za-z0-9_\-/]", "_", str(p)) for p in parts)


def headline_metrics(report: Optional[Path]) -> Dict[str, float]:
    """The report's comparisons as metrics: delta_pct.[<hardware>.]<model>.<quantization>[.<engine>].bs<N>
    (hardware where the report compares several, e.g. a study beside the published table), with p. and
    same_device. (1 = both sides on one GPU) under the same name."""
    if report is None:
        return {}
    import numpy as np
    import pandas as pd

    out: Dict[str, float] = {}
    for name, prefix, label_col in (("comparisons.csv", "delta_pct", "quantization"),
                                    ("engine_comparisons.csv", "engine_delta_pct", "engine")):
        path = report / name
        if not path.exists() or path.stat().st_size < 2:
            continue
        try:
            table = pd.read_csv(path)
        except Exception:  # an empty table has no header
            continue
        several_hardware = "hardware" in table and table.hardware.nunique() > 1
        for _, r in table.iterrows():
            engine = r.get("engine", "eager")
            parts = ([r.hardware] if several_hardware else []) + [r.model, r.quantization]
            if label_col == "engine" or (isinstance(engine, str) and engine != "eager"):
                parts.append(engine)
            key = metric_key(prefix, *parts, f"bs{int(r.batch_size)}")
            out[key] = r.delta_pct
            out[key.replace(prefix, prefix.replace("delta_pct", "p"), 1)] = r.p
            same = r.get("same_device")
            if isinstance(same, (bool, np.bool_)) or same in ("True", "False"):
                out[key.replace(prefix, prefix.replace("delta_pct", "same_device"), 1)] = float(same in (True, "True"))
    return out


def _report_table(report: Optional[Path], name: str) -> Any:
    """One of the report's CSV tables, or None where it has none (absent or empty)."""
    import pandas as pd

    path = report / name if report is not None else None
    if path is None or not path.exists() or path.stat().st_size < 2:
        return None
    try:
        return pd.read_csv(path)
    except Exception:  # an empty table has no header
        return None


def serving_metrics(report: Optional[Path]) -> Dict[str, float]:
    """A served study's numbers (the report's Served load section): per cell
    serving.j_per_request.<model>.<quantization>.<load> and serving.steady_j_per_token.<...>; per SLO the lowest
    J per request among the loads that meet it, serving.best_j_per_request.<model>.<slo>, with its goodput."""
    out: Dict[str, float] = {}
    cells = _report_table(report, "serving.csv")
    if cells is not None:
        for _, r in cells.iterrows():
            parts = [r.model, r.quantization, r.serving_load]
            out[metric_key("serving", "j_per_request", *parts)] = r.energy_j_per_request_mean
            out[metric_key("serving", "steady_j_per_token", *parts)] = r.steady_energy_j_per_output_token_mean
    best = _report_table(report, "serving_best_within_slo.csv")
    if best is not None and "energy_j_per_request" in best:
        for _, r in best.dropna(subset=["energy_j_per_request"]).iterrows():
            out[metric_key("serving", "best_j_per_request", r.model, r.slo)] = r.energy_j_per_request
            out[metric_key("serving", "best_goodput_rps", r.model, r.slo)] = r.goodput_rps
    return {k: float(v) for k, v in out.items() if v == v}  # NaN (no energy measured) is not logged


def serving_choices(report: Optional[Path]) -> Dict[str, str]:
    """Which precision and load the report names per SLO: serving_best.<model>.<slo> = '<quantization> at <load>'."""
    best = _report_table(report, "serving_best_within_slo.csv")
    if best is None or "quantization" not in best:
        return {}
    return {metric_key("serving_best", r.model, r.slo): f"{r.quantization} at {r.serving_load}"
            for _, r in best.dropna(subset=["quantization"]).iterrows()}

