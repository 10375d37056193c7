"""Analysis inputs: raw repetitions (our Parquet) and summary tables (mean, sd, n), each reduced to one row per
*configuration* (hardware x model x quantization x engine x batch x tokens x weights) holding mean, sd, n and CIs of
each metric, so a published summary table and our own measurements are analysed by the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np
import pandas as pd

from ecosweep.analysis.contention import contention_note
from ecosweep.results.schema import FIDELITY_COLUMNS, INT8_DECOMPOSITION_COLUMNS, PROFILE_COLUMNS
from ecosweep.results.store import read_results
from ecosweep.stats import linear_trend_p, summarize, summarize_stats

METRICS = ["energy_j_per_1k_tok", "tok_s", "power_w_mean", "energy_j_per_request", "gpu_util_pct_mean",
           "decode_tok_s", "static_energy_share", "net_energy_j_per_1k_tok"]

# one value per configuration, not summarised: fidelity and LLM.int8()'s decomposition (before the energy
# windows), the kernel profile (after them)
FIDELITY_TABLE_COLUMNS = FIDELITY_COLUMNS + INT8_DECOMPOSITION_COLUMNS

PER_CELL_COLUMNS = FIDELITY_TABLE_COLUMNS + PROFILE_COLUMNS

KEYS = ["hardware", "model", "quantization", "engine", "batch_size", "input_tokens", "output_tokens", "weights",
        "gpu_count"]

ROW_KEYS = ["source", *KEYS]  # what identifies one row of the configurations table

def keys_across(axis: str) -> List[str]:
    """The configuration keys that hold still while ``axis`` (quantization, engine, batch_size) is compared.
    gpu_count is not among them: a precision on fewer GPUs is compared with fp16 on the GPUs it needs."""
    return [k for k in KEYS if k not in (axis, "gpu_count")]

def has_random_weights(configs: pd.DataFrame) -> bool:
    """Whether any configuration ran on random weights (plain or with planted outliers)."""
    return "weights" in configs and configs.weights.astype(str).str.startswith("random").any()

# Rows written before the engine axis, and published tables, measured generate(): the eager engine.
DEFAULT_ENGINE = "eager"

# Column names of summary tables in other layouts (the published tables) -> ours.
ALIASES = {"gpu": "hardware", "params_b": "params_b_nominal", "throughput_tok_s": "tok_s", "power_w": "power_w_mean",
           "energy_j_per_1k_tok": "energy_j_per_1k_tok"}

def with_engine(configs: pd.DataFrame) -> pd.DataFrame:
    """Configurations without an engine column (hand-made or older tables) were decoded eagerly; without a
    weights column, their weights are those of a published table."""
    engine = configs.engine.fillna(DEFAULT_ENGINE) if "engine" in configs else DEFAULT_ENGINE
    weights = configs.weights.fillna("published") if "weights" in configs else "published"
    return configs.assign(engine=engine, weights=weights)

def _read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)

def _is_raw_results(path: Path) -> bool:
    """A Parquet file of repetitions (our results schema), judged from its schema alone."""
    if path.suffix.lower() != ".parquet":
        return False
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return {"repetition", "cell_id"} <= set(pq.read_schema(path).names)
    except (pa.ArrowException, OSError):  # unreadable: let the results reader name it as damaged
        return True

def summary_from_table(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """A summary table (``<metric>_mean``, ``<metric>_std|_sd``, ``n``) in our layout."""
    out = pd.DataFrame()
    cols = {c: c for c in df.columns}
    for c in df.columns:
        base = c
        for suffix in ("_mean", "_std", "_sd"):
            if c.endswith(suffix):
                stem = c[: -len(suffix)]
                base = ALIASES.get(stem, stem) + ("_mean" if suffix == "_mean" else "_sd")
                break
        else:
            base = ALIASES.get(c, c)
        cols[c] = base
    df = df.rename(columns=cols)
    for key in KEYS + ["params_b_nominal"]:
        out[key] = df[key] if key in df else (np.nan if key == "params_b_nominal" else None)
    out["weights"] = df["weights"] if "weights" in df else "published"
    out["engine"] = df["engine"].fillna(DEFAULT_ENGINE) if "engine" in df else DEFAULT_ENGINE
    out["gpu_count"] = df["gpu_count"].fillna(1).astype(int) if "gpu_count" in df else 1  # published: one GPU
    out["n"] = df["n"].astype(int)
    for m in METRICS:
        if f"{m}_mean" in df:
            out[f"{m}_mean"] = df[f"{m}_mean"].astype(float)
            out[f"{m}_sd"] = df.get(f"{m}_sd", pd.Series(np.nan, index=df.index)).astype(float)
            out[f"{m}_n"] = out["n"]
    out["source"] = source
    out["raw"] = False
    return out

def _weights_label(rows: pd.DataFrame) -> pd.Series:
    """``weights`` of a configuration: random | pretrained, and for random weights with planted outlier
    features the planting (``random+outliers6x20``, from weights_source), which changes the weights."""
    planted = rows.get("weights_source", pd.Series("", index=rows.index)).fillna("").astype(str) \
        .str.extract(r"(\+outliers[0-9]+x[0-9.e+-]+)", expand=False).fillna("")
    return rows["weights"].fillna("") + planted

def _joined(rows: pd.DataFrame, column: str) -> Optional[str]:
    """The distinct values of a per-cell text column, comma-joined; None where it has none."""
    if column not in rows:
        return None
    return ",".join(sorted(rows[column].dropna().astype(str).unique())) or None

def _gpu_count(rows: pd.DataFrame) -> pd.Series:
    """GPUs each row's cell held; files written before cells over several GPUs: one where a GPU UUID is
    recorded, none otherwise."""
    held = rows["gpu_uuid"].notna().astype(int) if "gpu_uuid" in rows else pd.Series(0, index=rows.index)
    return rows["gpu_count"].fillna(held).astype(int) if "gpu_count" in rows else held

def summary_from_rows(rows: pd.DataFrame, source: str) -> pd.DataFrame:
    """Per-configuration summaries of raw repetitions (ok rows only), with raw values kept."""
    served = rows["scenario"].eq("serving") if "scenario" in rows else pd.Series(False, index=rows.index)
    ok = rows[(rows.status == "ok") & ~served].copy()  # served cells have their own section (analysis.serving)
    if ok.empty:
        return pd.DataFrame()
    ok["hardware"] = ok["device_name"].fillna(ok["hardware"])
    # engines are told apart by their variant (the compiled engine with ecosweep's decoder is not the compiled one)
    ok["engine"] = ok["engine_variant"].fillna(ok["engine"]).fillna(DEFAULT_ENGINE)
    ok["engine_kind"] = ok["engine_kind"].fillna(ok["engine"])
    ok["weights"] = _weights_label(ok)
    ok["gpu_count"] = _gpu_count(ok)
    records = []
    for key, g in ok.groupby(KEYS, dropna=False, sort=False):
        rec = dict(zip(KEYS, key))
        g = g.sort_values("repetition")
        rec.update(params_b_nominal=g.params_b_nominal.iloc[0], n=len(g), source=source, raw=True,
                   cell_ids=",".join(sorted(g.cell_id.unique())), hardware_profile=g.hardware.iloc[0],
                   quant_method=g.quant_method.iloc[0], dtype=g.dtype.iloc[0], params_count=g.params_count.iloc[0],
                   torchao_type=g.torchao_type.iloc[0] if "torchao_type" in g else None,
                   throttled_reps=int(g.throttled.fillna(False).sum()),
                   contaminated_reps=int(g.contaminated.fillna(False).sum()),
                   host_contention=contention_note(g),
                   energy_source=g.energy_source.iloc[0], engine_kind=g.engine_kind.iloc[0],
                   engine_effective=",".join(sorted(g.engine_effective.dropna().unique())) or rec["engine"],
                   attn_implementation=",".join(sorted(g.attn_implementation.dropna().unique())) or None,
                   quant_kernel_path=_joined(g, "quant_kernel_path"),
                   quant_fallback=bool(g.quant_fallback.fillna(False).any()) if "quant_fallback" in g else False,
                   gpu_uuids=",".join(sorted(g.gpu_uuid.dropna().unique())) if "gpu_uuid" in g else "",
                   drift_p=linear_trend_p(g.energy_j_per_1k_tok.tolist())
                   if g.energy_j_per_1k_tok.notna().sum() >= 4 else linear_trend_p(g.tok_s.tolist()))
        for column in PER_CELL_COLUMNS:  # one value per cell (computed once, outside its windows)
            rec[column] = g[column].dropna().iloc[0] if column in g and g[column].notna().any() else None
        for m in METRICS:
            s = summarize(g[m].astype(float).tolist())
            rec.update({f"{m}_mean": s.mean, f"{m}_sd": s.sd, f"{m}_n": s.n,
                        f"{m}_boot_low": s.boot_ci95_low, f"{m}_boot_high": s.boot_ci95_high})
            rec[f"{m}_values"] = g[m].astype(float).tolist()
        records.append(rec)
    return pd.DataFrame(records)

def is_raw_input(path: Path) -> bool:
    """A results folder or a Parquet file of raw result rows (not a summary table)."""
    return path.is_dir() or (path.suffix.lower() in (".csv", ".parquet") and _is_raw_results(path))

def read_raw_inputs(paths: Iterable[str | Path], damaged: Optional[list] = None) -> Dict[Path, pd.DataFrame]:
    """The raw result rows (every status) of each results folder or raw Parquet file among ``paths``, read
    once for the whole report; damaged files as in :func:`load_inputs`."""

    return {p: read_results([p], damaged).to_pandas() for p in map(Path, paths) if is_raw_input(p)}

def load_inputs(paths: Iterable[str | Path], damaged: Optional[list] = None,
                raw: Optional[Dict[Path, pd.DataFrame]] = None) -> pd.DataFrame:
    """Any mix of result folders / Parquet files (raw) and CSV / Parquet summary tables. Damaged
    result files are left out and recorded in ``damaged`` when it is given (else they raise). ``raw``: the
    raw inputs' rows already read (:func:`read_raw_inputs`), else they are read here."""
    paths = [Path(p) for p in paths]
    raw = read_raw_inputs(paths, damaged) if raw is None else raw
    parts = []
    for p in paths:
        if p in raw:
            parts.append(summary_from_rows(raw[p], str(p)))
        elif p.suffix.lower() in (".csv", ".parquet"):
            parts.append(summary_from_table(_read_table(p), str(p)))
        else:
            raise FileNotFoundError(f"not a results folder, Parquet file or CSV table: {p}")
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    for m in METRICS:
        if f"{m}_mean" in out:
            ci = [summarize_stats(mu, sd, int(n)) if pd.notna(mu) and pd.notna(n) else None
                  for mu, sd, n in zip(out[f"{m}_mean"], out[f"{m}_sd"], out[f"{m}_n"])]
            out[f"{m}_ci_low"] = [c.ci95_low if c else np.nan for c in ci]
            out[f"{m}_ci_high"] = [c.ci95_high if c else np.nan for c in ci]
            out[f"{m}_cv_pct"] = 100 * out[f"{m}_sd"] / out[f"{m}_mean"].abs()
    return out
