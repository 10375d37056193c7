"""Where quantization stops costing energy: Δ % against the baseline fitted to the log of the model size
(ordinary least squares), with the size where the fit crosses zero and its CI.
"""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd
from scipy import stats

from ecosweep.analysis.inputs import DEFAULT_ENGINE, keys_across
from ecosweep.stats import fit_line


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
    line = fit_line(x, y)
    a, b = line.intercept, line.slope
    fit: Dict[str, float] = {"intercept_pct": a, "slope_pct_per_log_param": b}
    if b == 0:
        return fit, math.nan
    x0 = -a / b
    with np.errstate(over="ignore"):
        fit["crossover_params_b"] = float(np.exp(x0))
    if line.dof > 0:
        grad = np.array([-1 / b, a / b ** 2])  # of the zero -a/b with respect to (a, b): the delta method
        se = math.sqrt(max(0.0, float(grad @ line.cov @ grad)))
        tq = float(stats.t.ppf(0.975, line.dof))
        with np.errstate(over="ignore"):  # a flat fit's CI runs past any float: inf, blanked by the caller
            fit["crossover_ci_low_b"] = float(np.exp(x0 - tq * se))
            fit["crossover_ci_high_b"] = float(np.exp(x0 + tq * se))
        fit["slope_p"] = line.slope_p
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
