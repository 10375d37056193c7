"""Analysis tables from raw repetitions (our Parquet) and summary tables (mean, sd, n).

Everything is reduced to one row per *configuration* (hardware x model x quantization x
batch x tokens x weights) holding mean, sd, n and CIs of each metric; comparisons,
crossover, batch scaling and roofline work on that table, so a published summary table
and our own measurements are analysed by the same code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import pandas as pd

from ecosweep.analysis.contention import contention_note
from ecosweep.stats import compare, holm, linear_trend_p, summarize, summarize_stats
from ecosweep.results.schema import FIDELITY_COLUMNS, INT8_DECOMPOSITION_COLUMNS, KERNEL_CLASSES, PROFILE_COLUMNS
from ecosweep.config.compat import weight_bytes_per_parameter
from ecosweep.results.store import read_results

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
# What may run for each engine asked for without a warning (graph runs uncaptured on a CPU by design).
EXPECTED_EFFECTIVE = {"eager": {"eager"}, "graph": {"graph", "graph_uncaptured"}, "compiled": {"compiled"},
                      "hf_static": {"hf_static_compiled"}}
# Column names of summary tables in other layouts (the published tables) -> ours.
ALIASES = {"gpu": "hardware", "params_b": "params_b_nominal", "throughput_tok_s": "tok_s", "power_w": "power_w_mean",
           "energy_j_per_1k_tok": "energy_j_per_1k_tok"}


def _with_engine(configs: pd.DataFrame) -> pd.DataFrame:
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
    ok = rows[rows.status == "ok"].copy()
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


def kernel_classes_seen(configs: pd.DataFrame) -> List[str]:
    """The ``profile_ms_per_tok_<class>`` columns with time in some profiled configuration (profile=true), in
    ``KERNEL_CLASSES`` order; empty when nothing was profiled."""
    if "profile_wall_ms_per_tok" not in configs or not configs.profile_wall_ms_per_tok.notna().any():
        return []
    columns = [f"profile_ms_per_tok_{c}" for c in KERNEL_CLASSES]
    return [c for c in columns if c in configs and configs[c].fillna(0).gt(0).any()]


def kernel_gap(configs: pd.DataFrame, treatment: str, baseline: str) -> pd.DataFrame:
    """Where the extra time of ``treatment`` over ``baseline`` goes, per profiled pair of configurations that
    differ only in quantization (profile=true on both): milliseconds per generated token of the whole token
    (1000 / tok/s), of GPU time (the kernel classes) and of each class, and host-side launches per token, each
    treatment minus baseline; ``largest_class`` is the class that adds the most GPU time and
    ``largest_class_share`` its share of the extra GPU time. Empty where no such pair was profiled."""
    classes = kernel_classes_seen(configs)
    if not classes:
        return pd.DataFrame()
    keys = [k for k in ROW_KEYS if k != "quantization" and k in configs]
    profiled = configs[configs.profile_wall_ms_per_tok.notna()]
    pairs = profiled[profiled.quantization == treatment].merge(
        profiled[profiled.quantization == baseline], on=keys, suffixes=("", "_base"))
    records = []
    for _, r in pairs.iterrows():
        extra = {c.removeprefix("profile_ms_per_tok_"): r[c] - r[f"{c}_base"] for c in classes}
        extra_gpu = sum(extra.values())
        largest = max(extra, key=extra.get)
        records.append({**{k: r[k] for k in keys}, "quantization": treatment, "baseline": baseline,
                        "extra_ms_per_tok": 1e3 / r.tok_s_mean - 1e3 / r.tok_s_mean_base,
                        "extra_gpu_ms_per_tok": extra_gpu,
                        "extra_launches_per_tok": r.profile_launches_per_tok - r.profile_launches_per_tok_base,
                        "largest_class": largest, "largest_class_ms_per_tok": extra[largest],
                        "largest_class_share": extra[largest] / extra_gpu if extra_gpu > 0 else math.nan,
                        **{f"extra_ms_per_tok_{c}": v for c, v in extra.items()}})
    return pd.DataFrame(records)


def idle_ms_per_token(configs: pd.DataFrame) -> pd.Series:
    """The GPU's idle time per generated token in each profiled configuration, milliseconds: the measured call's
    time per token (1000 / tok_s_mean, no profiler) x ``profile_gpu_idle_share``, the share it is taken against.
    The busy part is the kernel classes' time, so classes + idle make up the measured time per token. Zero on a
    CPU (no idle share)."""
    return (1e3 / configs.tok_s_mean * configs.profile_gpu_idle_share).fillna(0.0)


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


def _summary(row: pd.Series, metric: str):
    """Mean, sd and n of ``metric`` in one configuration row (sd and n NaN/0 when the table has none)."""
    n = row.get(f"{metric}_n", 0)
    return summarize_stats(row[f"{metric}_mean"], row.get(f"{metric}_sd", math.nan),
                           int(n) if pd.notna(n) else 0)


def _baseline_for(candidates: pd.DataFrame, row: pd.Series) -> Optional[pd.Series]:
    """The baseline row for ``row``: one from the same input (results folder or table) when there
    is one, so a comparison stays within one run; among those, one on as many GPUs as ``row`` where there
    is one, else the one on the fewest GPUs (fewer_gpus: NF4 on one GPU against fp16 on the two it needs)."""
    if candidates.empty:
        return None
    if "source" in candidates and "source" in row:
        same = candidates[candidates.source == row["source"]]
        if len(same):
            candidates = same
    if "gpu_count" in candidates and "gpu_count" in row and candidates.gpu_count.nunique() > 1:
        equal = candidates[candidates.gpu_count == row["gpu_count"]]
        return equal.iloc[0] if len(equal) else candidates.sort_values("gpu_count").iloc[0]
    return candidates.iloc[0]


def _devices(row: pd.Series) -> Optional[str]:
    """A configuration row's GPU UUIDs (comma-joined), or None where it has none (CPU cells, summary tables)."""
    devices = row.get("gpu_uuids")
    return devices if isinstance(devices, str) and devices else None


def _provenance(baseline: pd.Series, row: pd.Series) -> Dict[str, object]:
    """Where both sides of a comparison come from: inputs, GPUs, and whether that is one GPU."""
    return {"source": row.get("source"), "baseline_source": baseline.get("source"),
            "devices": _devices(row), "baseline_devices": _devices(baseline), "same_device": same_device(baseline, row)}


def same_device(a: pd.Series, b: pd.Series) -> Optional[bool]:
    """Whether two configuration rows were measured on one physical GPU; None where either has no GPU UUID
    (CPU cells, summary tables)."""
    da, db = _devices(a), _devices(b)
    if da is None or db is None:
        return None
    return da == db and "," not in da


def _against_baseline(configs: pd.DataFrame, group_keys: List[str], column: str, baseline: str, metric: str):
    """For every group, each row whose ``column`` is not ``baseline`` against the group's baseline row:
    yields (group key values as a dict, baseline row, row, baseline summary, row summary, comparison)."""
    for key, g in configs.groupby(group_keys, dropna=False, sort=False):
        base = g[g[column] == baseline]
        if base.empty:
            continue
        for _, t in g[g[column] != baseline].iterrows():
            b = _baseline_for(base, t)
            sb, st = _summary(b, metric), _summary(t, metric)
            yield dict(zip(group_keys, key)), b, t, sb, st, compare(sb, st)


def comparisons(configs: pd.DataFrame, baseline: str = "fp16", metric: str = "energy_j_per_1k_tok") -> pd.DataFrame:
    """Each quantization against ``baseline`` within hardware, model, engine, batch, tokens; Holm over the family."""
    if configs.empty or f"{metric}_mean" not in configs:
        return pd.DataFrame()
    group_keys = keys_across("quantization")
    records = []
    for group, b, t, sb, st, c in _against_baseline(_with_engine(configs), group_keys, "quantization", baseline,
                                                    metric):
        records.append({**group, "params_b_nominal": t.params_b_nominal,
                        "quantization": t.quantization, "gpu_count": t.get("gpu_count"),
                        "baseline_gpu_count": b.get("gpu_count"), "baseline": baseline, "metric": metric,
                        "baseline_mean": sb.mean, "mean": st.mean, "delta_pct": c.delta_pct,
                        "delta_pct_ci_low": c.delta_pct_ci95_low, "delta_pct_ci_high": c.delta_pct_ci95_high,
                        "t": c.t, "df": c.df, "p": c.p, "cohens_d": c.cohens_d, "hedges_g": c.hedges_g,
                        **_provenance(b, t)})
    out = pd.DataFrame(records)
    if not out.empty:
        out["p_holm"] = holm(out.p.tolist())
    return out


def engine_comparisons(configs: pd.DataFrame, baseline: str = DEFAULT_ENGINE,
                       metric: str = "energy_j_per_1k_tok") -> pd.DataFrame:
    """Each engine against ``baseline`` (eager generate()) within hardware, model, quantization, batch,
    tokens: what the decode engine alone does to ``metric``. Holm over the family."""
    if configs.empty or f"{metric}_mean" not in configs:
        return pd.DataFrame()
    configs = _with_engine(configs)
    if configs.engine.nunique() < 2:
        return pd.DataFrame()
    group_keys = keys_across("engine")
    records = []
    for group, b, t, sb, st, c in _against_baseline(configs, group_keys, "engine", baseline, metric):
        records.append({**group, "engine": t.engine, "engine_effective": t.get("engine_effective"),
                        "baseline_engine": baseline, "metric": metric, "baseline_mean": sb.mean, "mean": st.mean,
                        "delta_pct": c.delta_pct, "delta_pct_ci_low": c.delta_pct_ci95_low,
                        "delta_pct_ci_high": c.delta_pct_ci95_high, "p": c.p, "cohens_d": c.cohens_d,
                        "tok_s_ratio": t.get("tok_s_mean", math.nan) / b.get("tok_s_mean", math.nan),
                        **_provenance(b, t)})
    out = pd.DataFrame(records)
    if not out.empty:
        out["p_holm"] = holm(out.p.tolist())
    return out


def best_engine_comparisons(configs: pd.DataFrame, baseline: str = "fp16",
                            metric: str = "energy_j_per_1k_tok") -> pd.DataFrame:
    """The deployment question across engines: each precision decoded by the engine that gave it the lowest
    mean ``metric`` against ``baseline`` decoded by its own lowest, within hardware, model, batch, tokens and
    weights (Welch, Holm over the family). A precision whose fast path needs one engine (torchao's through
    torch.compile) and one that cannot use it (bitsandbytes: transformers does not compile it) each meet fp16
    at their best. The pick is by the mean of n repetitions, so where two engines are close the CI does not
    carry the choice's own uncertainty; ``engine_effective`` says what the picked engine actually ran. Empty
    when no precision was measured under two engines."""
    if configs.empty or f"{metric}_mean" not in configs:
        return pd.DataFrame()
    configs = _with_engine(configs)
    if configs.engine.nunique() < 2:
        return pd.DataFrame()
    # one input's own cells only: a pick across inputs would set one host's engine against another's
    group_keys = [k for k in ["source", *keys_across("quantization")] if k != "engine" and k in configs]
    by_precision = [*group_keys, "quantization"]
    measured = configs.dropna(subset=[f"{metric}_mean"])  # no energy measured (meter none): nothing to pick by
    measured = measured.assign(engines_measured=measured.groupby(by_precision, dropna=False, sort=False).engine
                               .transform(lambda engines: ",".join(sorted(engines.astype(str)))))
    best = measured.loc[measured.groupby(by_precision, dropna=False, sort=False)[f"{metric}_mean"].idxmin()]
    records = []
    for group, b, t, sb, st, c in _against_baseline(best, group_keys, "quantization", baseline, metric):
        records.append({**group, "quantization": t.quantization, "engine": t.engine,
                        "engine_effective": t.get("engine_effective"), "engines_measured": t.engines_measured,
                        "baseline": baseline, "baseline_engine": b.engine, "metric": metric,
                        "baseline_mean": sb.mean, "mean": st.mean, "delta_pct": c.delta_pct,
                        "delta_pct_ci_low": c.delta_pct_ci95_low, "delta_pct_ci_high": c.delta_pct_ci95_high,
                        "p": c.p, "cohens_d": c.cohens_d,
                        "tok_s_ratio": t.get("tok_s_mean", math.nan) / b.get("tok_s_mean", math.nan),
                        **_provenance(b, t)})
    out = pd.DataFrame(records)
    if not out.empty:
        out["p_holm"] = holm(out.p.tolist())
    return out


def _direction(row: pd.Series, alpha: float) -> str:
    """'costs more', 'saves' or 'no significant change' for one comparison row."""
    if not (row.p == row.p) or row.p >= alpha:
        return "no significant change"
    return "costs more" if row.delta_pct > 0 else "saves"


def engine_sign_findings(comp: pd.DataFrame, alpha: float = 0.05) -> List[str]:
    """Sentences saying, for each precision effect measured under several engines, whether its sign
    holds or flips from one engine to another (significance at ``alpha``, Welch)."""
    if comp.empty or "engine" not in comp or comp.engine.nunique() < 2:
        return []
    out = []
    keys = keys_across("engine")
    for key, g in comp.groupby(keys, dropna=False, sort=False):
        if g.engine.nunique() < 2:
            continue
        hw, model, q, bs = key[:4]
        g = g.sort_values("engine")
        directions = [_direction(r, alpha) for _, r in g.iterrows()]
        parts = [f"{d} under {r.engine} ({r.delta_pct:+.1f} %, p = {r.p:.2g})"
                 for d, (_, r) in zip(directions, g.iterrows())]
        significant = {e: d for e, d in zip(g.engine, directions) if d != "no significant change"}
        signs = set(significant.values())
        if len(signs) == 2:
            verdict = "flips sign"
        elif not signs:
            verdict = "no significant change under any engine"
        elif len(significant) == g.engine.nunique():
            verdict = "keeps its sign"
        else:
            verdict = f"{next(iter(signs))} under {' and '.join(sorted(significant))} only"
        out.append(f"{model} {q} vs {g.baseline.iloc[0]}, batch {bs} ({hw}): {verdict}: " + "; ".join(parts) + ".")
    return out


def crossover_keys(comp: pd.DataFrame) -> List[str]:
    """What holds still along one size-crossover fit: every configuration key but the model (hardware,
    quantization, engine, batch size, token counts, weights) that the table has. A precision's Δ at batch 16
    is another curve than its Δ at batch 1, not another point of the same one."""
    return [k for k in keys_across("model") if k in comp.columns or k == "engine"]


def _one_sign_at_every_size(points: pd.DataFrame) -> str:
    """A phrase ("saves at every size measured ...", "costs more ...") when every size's Δ% CI
    (``delta_pct_ci_low``, ``delta_pct_ci_high``) lies on one side of zero: then there is no crossover among
    these sizes whatever the fit says (a flat fit still answers). Empty otherwise."""
    if not {"delta_pct_ci_low", "delta_pct_ci_high"} <= set(points.columns):
        return ""
    low, high = points.delta_pct_ci_low.astype(float), points.delta_pct_ci_high.astype(float)
    sizes = f"{points.params_b_nominal.min():g}-{points.params_b_nominal.max():g} B"
    span = f"{points.delta_pct.min():+.1f} to {points.delta_pct.max():+.1f} %"
    if (high < 0).all():
        return f"saves at every size measured ({sizes}: {span}, every 95 % CI below 0)"
    if (low > 0).all():
        return f"costs more at every size measured ({sizes}: {span}, every 95 % CI above 0)"
    return ""


_CROSSOVER_COLUMNS = ("crossover_params_b", "crossover_ci_low_b", "crossover_ci_high_b")


def _fit_log_size(x: np.ndarray, y: np.ndarray) -> Tuple[Dict[str, float], float]:
    """OLS of Δ% (``y``) on ln(parameters) (``x``): the columns ``intercept_pct`` and
    ``slope_pct_per_log_param``; where the slope is not 0 also the zero, ``crossover_params_b``, and past two
    sizes its 95 % CI (delta method, ``crossover_ci_low_b`` / ``_high_b``) and the slope's two-sided p
    (``slope_p``). With the zero in ln(parameters) (nan for a slope of 0)."""
    X = np.column_stack([np.ones_like(x), x])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    a, b = beta
    fit: Dict[str, float] = {"intercept_pct": a, "slope_pct_per_log_param": b}
    if b == 0:
        return fit, math.nan
    x0 = -a / b
    with np.errstate(over="ignore"):
        fit["crossover_params_b"] = float(np.exp(x0))
    dof = len(x) - 2
    if dof > 0:
        from scipy import stats

        resid = y - X @ beta
        cov = float(resid @ resid) / dof * np.linalg.inv(X.T @ X)
        grad = np.array([-1 / b, a / b ** 2])
        se = math.sqrt(max(0.0, float(grad @ cov @ grad)))
        tq = float(stats.t.ppf(0.975, dof))
        with np.errstate(over="ignore"):  # a flat fit's CI runs past any float: inf, blanked by the caller
            fit["crossover_ci_low_b"] = float(np.exp(x0 - tq * se))
            fit["crossover_ci_high_b"] = float(np.exp(x0 + tq * se))
        slope_se = math.sqrt(max(0.0, float(cov[1, 1])))
        fit["slope_p"] = float(2 * stats.t.sf(abs(b) / slope_se, dof)) if slope_se > 0 else 0.0
    return fit, x0


def _crossover_verdict(inside: bool, points: int, slope_p: float, one_sign: str, alpha: float) -> Tuple[str, bool]:
    """The verdict on a fit of ``points`` whose zero does (``inside``) or does not lie among the sizes measured,
    and whether its zero and CI stand (False: blank them). ``one_sign``: ``_one_sign_at_every_size``'s phrase."""
    flat = points > 2 and slope_p >= alpha
    if one_sign:  # the points answer: a line through points all on one side cannot place their zero among them
        return (f"no crossover in range: {one_sign}" + (f"; slope p = {slope_p:.2g}" if flat else ""),
                not flat and not inside)
    if flat:
        return f"fit too flat to place a crossover (slope p = {slope_p:.2g})", False
    verdict = "crossover in range" if inside else "no crossover in range"
    if points == 2:  # a line through two points: the zero is exact arithmetic, not an estimate
        verdict += " (two model sizes: no CI)"
    return verdict, True


def crossover(comp: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per hardware x quantization x engine x batch size (x tokens, weights; ``crossover_keys``): fit
    delta% = a + b log(params) over the model sizes and solve delta% = 0, with the zero's 95 % CI (delta
    method) where more than two sizes were measured. A slope not distinguishable from zero (the OLS t-test of
    b, p >= ``alpha``) places no crossover: the verdict says the fit is too flat, and the zero and its CI,
    which are then anywhere (or past any float), are left blank."""
    records = []
    if comp.empty:
        return pd.DataFrame()
    data = comp.dropna(subset=["params_b_nominal", "delta_pct"]).copy()
    if "engine" not in data:
        data["engine"] = DEFAULT_ENGINE
    keys = crossover_keys(data)
    for key, g in data.groupby(keys, dropna=False):
        x = np.log(g.params_b_nominal.astype(float).to_numpy())
        rec = {**dict(zip(keys, key)), "points": len(g),
               "params_b_min": float(np.exp(x.min())),
               "params_b_max": float(np.exp(x.max()))}
        if len(np.unique(x)) < 2:
            records.append({**rec, "verdict": "too few model sizes to fit"})
            continue
        fit, x0 = _fit_log_size(x, g.delta_pct.to_numpy(dtype=float))
        rec.update(fit)
        if fit["slope_pct_per_log_param"] == 0:
            records.append({**rec, "verdict": "no crossover (flat fit)"})
            continue
        rec["verdict"], placed = _crossover_verdict(x.min() <= x0 <= x.max(), len(x), fit.get("slope_p", math.nan),
                                                    _one_sign_at_every_size(g), alpha)
        if not placed:
            rec.update(dict.fromkeys(_CROSSOVER_COLUMNS, math.nan))
        records.append(rec)
    return pd.DataFrame(records)


def batch_scaling(configs: pd.DataFrame) -> pd.DataFrame:
    """Energy per request, throughput speed-up and scaling efficiency relative to batch 1."""
    records = []
    if configs.empty or "energy_j_per_request_mean" not in configs:
        return pd.DataFrame()
    keys = keys_across("batch_size")
    configs = _with_engine(configs)
    for key, g in configs.groupby(keys, dropna=False):
        base = g[g.batch_size == 1]
        if base.empty or len(g) < 2:
            continue
        for _, r in g.sort_values("batch_size", kind="stable").iterrows():
            b = _baseline_for(base, r)
            speedup = r.tok_s_mean / b.tok_s_mean
            c = compare(_summary(b, "energy_j_per_request"), _summary(r, "energy_j_per_request"))
            records.append({**dict(zip(keys, key)), "batch_size": r.batch_size,
                            "energy_j_per_request": r.energy_j_per_request_mean,
                            "energy_per_request_change_pct": c.delta_pct,
                            "change_ci_low": c.delta_pct_ci95_low, "change_ci_high": c.delta_pct_ci95_high, "p": c.p,
                            "tok_s": r.tok_s_mean, "speedup": speedup, "scaling_efficiency": speedup / r.batch_size,
                            **_provenance(b, r)})
    return pd.DataFrame(records)


def hardware_profiles(conf_dir: Optional[Path] = None) -> Dict[str, dict]:
    import yaml

    conf_dir = conf_dir or Path(__file__).resolve().parents[2] / "conf" / "hardware"
    return {p.stem: yaml.safe_load(p.read_text()) for p in conf_dir.glob("*.yaml")}


def _bandwidth_gb_s(row: pd.Series, profiles: Dict[str, dict]) -> float:
    prof = profiles.get(str(row.get("hardware_profile")))
    if prof and prof.get("peak_mem_bandwidth_gb_s"):
        return float(prof["peak_mem_bandwidth_gb_s"])
    for p in profiles.values():
        pattern = p.get("gpu_name_pattern")
        if pattern and pattern in str(row.get("hardware")):
            return float(p["peak_mem_bandwidth_gb_s"])
    return math.nan


def roofline(configs: pd.DataFrame, profiles: Optional[Dict[str, dict]] = None) -> pd.DataFrame:
    """Decode ceiling from bandwidth: batch x peak bandwidth / weight bytes read per step; and the bandwidth the
    measured decode achieved on the weights alone (weight bytes x decode steps per second, GB/s)."""
    profiles = profiles if profiles is not None else hardware_profiles()
    records = []
    if configs.empty or "decode_tok_s_mean" not in configs or "quant_method" not in configs:
        return pd.DataFrame()
    for _, r in configs.iterrows():
        if not r.get("raw") or pd.isna(r.get("params_count")):
            continue
        torchao_type = r.get("torchao_type")
        per = weight_bytes_per_parameter(r.quant_method, r.dtype,
                torchao_type if isinstance(torchao_type, str) else None)
        weight_gb = float(r.params_count) * per / 1e9
        bw = _bandwidth_gb_s(r, profiles)
        ceiling = r.batch_size * bw / weight_gb if weight_gb and bw == bw else math.nan
        records.append({"hardware": r.hardware, "model": r.model, "quantization": r.quantization,
                        "engine": r.get("engine", DEFAULT_ENGINE), "gpu_count": r.get("gpu_count", 1),
                        "batch_size": r.batch_size,
                                "weight_gb": weight_gb, "peak_bandwidth_gb_s": bw,
                        "decode_ceiling_tok_s": ceiling, "decode_tok_s": r.decode_tok_s_mean,
                        "fraction_of_ceiling": r.decode_tok_s_mean / ceiling if ceiling == ceiling else math.nan,
                        # weights read per second of decode (each step reads them once; KV cache not counted)
                        "achieved_bandwidth_gb_s": weight_gb * r.decode_tok_s_mean / r.batch_size})
    return pd.DataFrame(records)


def _short_uuids(devices: str) -> str:
    """``gpu_uuids`` shortened for a warning: configurations pooled over devices stay comma-separated, the
    GPUs of one cell over several stay joined with '+'."""
    return ", ".join(" + ".join(gpu[:12] for gpu in cell.split("+")) for cell in devices.split(","))


def _gpu_set(devices: object) -> Optional[frozenset]:
    """The GPUs of a configuration measured on one device set (a cell's GPUs, '+'-joined), else None."""
    if not isinstance(devices, str) or not devices or "," in devices:
        return None
    return frozenset(devices.split("+"))


def _within_baseline_gpus(c: pd.Series) -> bool:
    """A comparison across GPU counts whose fewer GPUs are among the other side's (fewer_gpus: NF4 on one of
    the two GPUs fp16 needed)."""
    mine, theirs = _gpu_set(c.get("devices")), _gpu_set(c.get("baseline_devices"))
    return mine is not None and theirs is not None and mine != theirs and (mine < theirs or theirs < mine)


def device_warnings(configs: pd.DataFrame, comp: pd.DataFrame, batch: Optional[pd.DataFrame] = None) -> List[str]:
    """Comparisons whose two sides ran on different GPUs, and configurations pooled over several.

    Lent GPUs of one model differ by more than the effects measured here when decode is launch-bound
    (host speed, idle power), so a cross-device delta mixes device and precision (or batch size).
    """
    out: List[str] = []
    if "gpu_uuids" not in configs:
        return out
    for _, r in configs.iterrows():
        devices = r.get("gpu_uuids")
        if isinstance(devices, str) and "," in devices:
            out.append(f"Mixed devices: {r.hardware} {r.model} {r.quantization} bs{r.batch_size} pools "
                       f"repetitions from {devices.count(',') + 1} GPUs ({_short_uuids(devices)}).")

    def short(devices: object) -> str:
        return _short_uuids(devices) if isinstance(devices, str) and devices else "?"

    crossed = comp[comp.same_device.eq(False)] if "same_device" in comp else comp.iloc[0:0]
    for _, c in crossed.iterrows():
        engine = "" if c.get("engine", DEFAULT_ENGINE) == DEFAULT_ENGINE else f" {c.engine}"
        if _within_baseline_gpus(c):
            mine, theirs = _gpu_set(c.devices), _gpu_set(c.baseline_devices)
            out.append(f"GPU count: {c.hardware} {c.model} bs{c.batch_size} {c.quantization}{engine} ran on "
                       f"{len(mine)} GPU(s) ({short(c.devices)}), its {c.baseline} baseline on {len(theirs)} "
                       f"({short(c.baseline_devices)}); the fewer GPUs are among the others, so the Δ is the "
                       "GPU count by design plus the chip-to-chip difference of the GPUs only one side held.")
            continue
        out.append(f"Cross-device: {c.hardware} {c.model} bs{c.batch_size} {c.quantization}{engine} ran on "
                   f"{short(c.devices)}, its {c.baseline} baseline on {short(c.baseline_devices)}; "
                   "the Δ mixes device and precision. To separate them, measure both with one GPU visible "
                   "(and reuse_cells=false where another study measured one of them).")
    if batch is not None and "same_device" in batch:
        for _, c in batch[batch.same_device.eq(False)].iterrows():
            engine = "" if c.get("engine", DEFAULT_ENGINE) == DEFAULT_ENGINE else f" {c.engine}"
            out.append(f"Cross-device: {c.hardware} {c.model} {c.quantization}{engine} bs{c.batch_size} ran on "
                       f"{short(c.devices)}, batch 1 on {short(c.baseline_devices)}; its change against "
                       "batch 1 mixes device and batch size.")
    return out


def warnings_for(configs: pd.DataFrame, cv_limit_pct: float = 5.0, static_limit: float = 0.7,
                 comp: Optional[pd.DataFrame] = None, batch: Optional[pd.DataFrame] = None) -> List[str]:
    out: List[str] = []
    if configs.empty:
        return out
    if comp is not None:
        out += device_warnings(configs, comp, batch)
    if has_random_weights(configs):
        out.append("Random weights: speed and energy follow the architecture, but LLM.int8() outlier handling "
                   "depends on trained weights; int8 (threshold 6.0) results on random weights are not the "
                   "published mechanism.")
    for _, r in configs.iterrows():
        engine = r.get("engine", DEFAULT_ENGINE)
        label = f"{r.hardware} {r.model} {r.quantization}" + ("" if engine == DEFAULT_ENGINE else f" {engine}") \
            + f" bs{r.batch_size}"
        effective = r.get("engine_effective")
        kind = r.get("engine_kind") if isinstance(r.get("engine_kind"), str) else engine
        if r.get("raw") and isinstance(effective, str) and effective not in EXPECTED_EFFECTIVE.get(kind, {kind}):
            out.append(f"Engine: {label} asked for engine={engine} but ran {effective}; its numbers are {effective}'s "
                       "(rows: engine_note).")
        if r.get("raw") and r.get("quant_fallback") is True:
            out.append(f"Fallback: {label} ran {r.get('quant_kernel_path')}: this torchao precision reaches its fast "
                       "kernels only through torch.compile, so its numbers are its slow path's, not the precision's "
                       "cost (run it with engine=compiled).")
        path = r.get("quant_kernel_path")
        if (r.get("raw") and r.get("quant_fallback") is False and isinstance(path, str)
                and path.startswith("torchao Float8Tensor") and str(effective or engine).startswith("eager")):
            out.append(f"Launch-bound: {label} ran {path} under eager generate(): torchao's fp8 reaches its fast "
                       "_scaled_mm kernel, but quantizes every activation in separate small kernels that eager "
                       "launches one by one, so its numbers are mostly launch overhead; engine=graph or "
                       "engine=compiled gives the precision's cost.")
        cv = r.get("energy_j_per_1k_tok_cv_pct")
        if cv == cv and cv is not None and cv > cv_limit_pct:
            out.append(f"High CV: {label} energy per 1k tokens CV {cv:.1f} % (> {cv_limit_pct:g} %).")
        if r.get("raw"):
            if r.get("drift_p") is not None and r.drift_p == r.drift_p and r.drift_p < 0.05:
                out.append(f"Drift: {label} has a significant trend over its repetitions (p = {r.drift_p:.3g}).")
            if r.get("throttled_reps"):
                out.append(f"Throttled: {label} had {int(r.throttled_reps)} "
                        f"repetition(s) with a clock-event reason active.")
            if r.get("contaminated_reps"):
                out.append(f"Contaminated: {label} had {int(r.contaminated_reps)} "
                        f"repetition(s) with a foreign process on its GPU.")
            if isinstance(r.get("host_contention"), str):
                out.append(f"Host contention: {label} {r.host_contention}")
            share = r.get("static_energy_share_mean")
            if share == share and share is not None and share > static_limit:
                out.append(f"Launch-bound: {label} spends {100 * share:.0f} % of its energy as idle (static) power; "
                           "its energy per token follows host speed more than the GPU.")
    return out
