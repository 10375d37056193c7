"""Comparisons on the configurations table: each precision against the baseline precision, each engine against
the baseline engine, each precision at its best engine, and whether the engine decides an effect's sign; every
comparison says whether both sides ran on one physical GPU.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import pandas as pd

from ecosweep.analysis.inputs import DEFAULT_ENGINE, keys_across, with_engine
from ecosweep.stats import compare, holm, summarize_stats


def summary_of(row: pd.Series, metric: str):
    """Mean, sd and n of ``metric`` in one configuration row (sd and n NaN/0 when the table has none)."""
    n = row.get(f"{metric}_n", 0)
    return summarize_stats(row[f"{metric}_mean"], row.get(f"{metric}_sd", math.nan),
                           int(n) if pd.notna(n) else 0)

def baseline_for(candidates: pd.DataFrame, row: pd.Series) -> Optional[pd.Series]:
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

def provenance(baseline: pd.Series, row: pd.Series) -> Dict[str, object]:
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
            b = baseline_for(base, t)
            sb, st = summary_of(b, metric), summary_of(t, metric)
            yield dict(zip(group_keys, key)), b, t, sb, st, compare(sb, st)

def comparisons(configs: pd.DataFrame, baseline: str = "fp16", metric: str = "energy_j_per_1k_tok") -> pd.DataFrame:
    """Each quantization against ``baseline`` within hardware, model, engine, batch, tokens; Holm over the family."""
    if configs.empty or f"{metric}_mean" not in configs:
        return pd.DataFrame()
    group_keys = keys_across("quantization")
    records = []
    for group, b, t, sb, st, c in _against_baseline(with_engine(configs), group_keys, "quantization", baseline,
                                                    metric):
        records.append({**group, "params_b_nominal": t.params_b_nominal,
                        "quantization": t.quantization, "gpu_count": t.get("gpu_count"),
                        "baseline_gpu_count": b.get("gpu_count"), "baseline": baseline, "metric": metric,
                        "baseline_mean": sb.mean, "mean": st.mean, "delta_pct": c.delta_pct,
                        "delta_pct_ci_low": c.delta_pct_ci95_low, "delta_pct_ci_high": c.delta_pct_ci95_high,
                        "t": c.t, "df": c.df, "p": c.p, "cohens_d": c.cohens_d, "hedges_g": c.hedges_g,
                        **provenance(b, t)})
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
    configs = with_engine(configs)
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
                        **provenance(b, t)})
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
    configs = with_engine(configs)
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
                        **provenance(b, t)})
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
