"""Statistics of repeated measurements: per-configuration summaries and comparisons, each through scipy or
statsmodels: one t interval, one bootstrap, one Welch, one Holm, one least-squares fit.

A leaf module (no other ecosweep import): the report's tables, the decision table, the protocol's adaptive
extension and the MLflow mirror all use it, so a CI in MLflow is the report's.

Everything works from summary statistics (mean, sd, n), so published tables that give
only those are analysed the same way as our raw repetitions; where raw values exist a
bootstrap CI is added. Conventions (as in the published study):

* CI of a mean: t-based, ``mean +- t(0.975, n-1) * sd / sqrt(n)``;
* Welch's t-test (no equal-variance assumption), Welch-Satterthwaite degrees of freedom;
* Cohen's d with the pooled sd ``sqrt((s1^2 + s2^2) / 2)``; Hedges' g = d x J(df),
  J = 1 - 3 / (4 (n1 + n2) - 9);
* CI of a relative difference (Delta %) by the delta method on the ratio of means;
* Holm-Bonferroni adjustment over a family of p-values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

NAN = math.nan


def _scipy_stats():
    """scipy.stats, imported on first use. The analysis needs it; a cell's process (whose protocol needs only
    ``t_ci``) and a Ray actor that only hands cells to their processes do not, and never pay its 0.6-1.5 s import."""
    from scipy import stats

    return stats


@dataclass(frozen=True)
class Summary:
    mean: float
    sd: float
    n: int
    ci95_low: float
    ci95_high: float
    boot_ci95_low: float = NAN
    boot_ci95_high: float = NAN

    @property
    def cv_pct(self) -> float:
        return 100.0 * self.sd / abs(self.mean) if self.mean else NAN


def t_ci(mean: float, sd: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """t-based CI of a mean from its summary (what scipy's ``t.interval`` gives); nan for n < 2 or an unknown sd."""
    if n < 2 or not math.isfinite(sd):
        return NAN, NAN
    if sd == 0:
        return mean, mean
    # Student's t quantile from scipy.special (as stats.t.interval computes it): the cell's process needs only this
    # between its windows, and scipy.special imports in a quarter of scipy.stats' time
    from scipy.special import stdtrit

    half = float(stdtrit(n - 1, 0.5 + level / 2)) * sd / math.sqrt(n)
    return float(mean - half), float(mean + half)


def ci_half_width_pct(values: Sequence[float], level: float = 0.95) -> float:
    """The t-based CI's half-width as % of the mean of the finite ``values``; inf with fewer than 2 or a mean of 0
    (the protocol extends a cell until this is within its target)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) < 2 or x.mean() == 0:
        return math.inf
    low, high = t_ci(float(x.mean()), float(x.std(ddof=1)), len(x), level)
    return 100.0 * (high - low) / 2 / abs(float(x.mean()))


def summarize_stats(mean: float, sd: float, n: int) -> Summary:
    low, high = t_ci(mean, sd, n)
    return Summary(float(mean), float(sd), int(n), low, high)


def bootstrap_ci(values: Sequence[float], n_boot: int = 10_000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (scipy's ``bootstrap``, deterministic for a given seed)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(x) < 2:
        return NAN, NAN
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    result = _scipy_stats().bootstrap((x,), np.mean, n_resamples=n_boot, confidence_level=level, method="percentile",
                             rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def summarize(values: Sequence[float], bootstrap: bool = True) -> Summary:
    """Summary of raw repetitions (NaNs dropped); sd is the sample sd (ddof=1)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Summary(NAN, NAN, 0, NAN, NAN)
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else NAN
    low, high = t_ci(mean, sd, n)
    blo, bhi = bootstrap_ci(x) if bootstrap else (NAN, NAN)
    return Summary(mean, sd, n, low, high, blo, bhi)


@dataclass(frozen=True)
class Comparison:
    """``treatment`` against ``baseline``; delta_pct = 100 (m_t - m_b) / m_b."""

    delta_pct: float
    delta_pct_ci95_low: float
    delta_pct_ci95_high: float
    t: float
    df: float
    p: float
    cohens_d: float
    hedges_g: float


def welch(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int) -> tuple[float, float, float]:
    """Welch's t (sample 1 minus sample 2) and two-sided p (scipy's ``ttest_ind_from_stats``, unequal variances),
    with its Welch-Satterthwaite degrees of freedom (which scipy does not return)."""
    v1, v2 = s1 ** 2 / n1, s2 ** 2 / n2
    if v1 + v2 == 0:
        return NAN, NAN, NAN
    result = _scipy_stats().ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
    return float(result.statistic), float(df), float(result.pvalue)


def compare(baseline: Summary, treatment: Summary) -> Comparison:
    mb, sb, nb = baseline.mean, baseline.sd, baseline.n
    mt, st, nt = treatment.mean, treatment.sd, treatment.n
    delta = 100.0 * (mt - mb) / mb if mb else NAN
    if nb < 2 or nt < 2 or not (math.isfinite(sb) and math.isfinite(st)):
        return Comparison(delta, NAN, NAN, NAN, NAN, NAN, NAN, NAN)
    t, df, p = welch(mt, st, nt, mb, sb, nb)
    pooled = math.sqrt((sb ** 2 + st ** 2) / 2)
    d = (mt - mb) / pooled if pooled else NAN
    g = d * (1 - 3 / (4 * (nb + nt) - 9))
    # delta method: Var(mt/mb) ~ (mt/mb)^2 (var_t/mt^2 + var_b/mb^2), var = s^2/n
    ratio = mt / mb
    rel_se = math.sqrt((st ** 2 / nt) / mt ** 2 + (sb ** 2 / nb) / mb ** 2) if mt and mb else NAN
    half = float(_scipy_stats().t.ppf(0.975, df)) * abs(ratio) * rel_se
    return Comparison(delta, 100 * (ratio - half - 1), 100 * (ratio + half - 1), t, df, p, d, g)


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm-Bonferroni adjusted p-values (statsmodels' ``multipletests``), in the input order; NaNs stay NaN and
    are not counted in the family."""
    from statsmodels.stats.multitest import multipletests

    idx = [i for i, p in enumerate(p_values) if p is not None and math.isfinite(p)]
    adjusted: List[float] = [NAN] * len(p_values)
    if idx:
        for i, value in zip(idx, multipletests([p_values[i] for i in idx], method="holm")[1]):
            adjusted[i] = float(value)
    return adjusted


@dataclass(frozen=True)
class LineFit:
    """An ordinary least-squares line y = intercept + slope x (statsmodels' ``OLS``), with the covariance of
    (intercept, slope) and the residual degrees of freedom (0: no covariance, nan entries)."""

    intercept: float
    slope: float
    cov: np.ndarray
    dof: int

    @property
    def slope_p(self) -> float:
        """Two-sided p of the slope (t test against 0); 0 for an exact fit, nan without residual dof."""
        if self.dof <= 0:
            return NAN
        se = math.sqrt(max(0.0, float(self.cov[1, 1])))
        return float(2 * _scipy_stats().t.sf(abs(self.slope) / se, self.dof)) if se > 0 else 0.0


def fit_line(x: Sequence[float], y: Sequence[float]) -> LineFit:
    """OLS of ``y`` on ``x`` with an intercept."""
    import statsmodels.api as sm

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    result = sm.OLS(y, sm.add_constant(x, has_constant="add")).fit()
    dof = len(x) - 2
    cov = np.asarray(result.cov_params()) if dof > 0 else np.full((2, 2), NAN)
    return LineFit(float(result.params[0]), float(result.params[1]), cov, dof)


def linear_trend_p(values: Sequence[float]) -> Optional[float]:
    """p of a linear trend of ``values`` against their order (drift across repetitions)."""
    y = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(y) < 4 or np.allclose(y, y[0]):
        return None
    return float(_scipy_stats().linregress(np.arange(len(y)), y).pvalue)
