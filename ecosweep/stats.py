"""Statistics of repeated measurements: per-configuration summaries and comparisons.

A leaf module (no other ecosweep import): the report's tables and the MLflow mirror both summarise with it,
so a CI in MLflow is the report's.

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
from scipy import stats

NAN = math.nan


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
    if n < 2 or not math.isfinite(sd):
        return NAN, NAN
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def summarize_stats(mean: float, sd: float, n: int) -> Summary:
    low, high = t_ci(mean, sd, n)
    return Summary(float(mean), float(sd), int(n), low, high)


def bootstrap_ci(values: Sequence[float], n_boot: int = 10_000, seed: int = 0,
        level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (deterministic for a given seed)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(x) < 2:
        return NAN, NAN
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


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
    """Welch's t (sample 1 minus sample 2), its degrees of freedom and two-sided p."""
    v1, v2 = s1 ** 2 / n1, s2 ** 2 / n2
    se = math.sqrt(v1 + v2)
    if se == 0:
        return NAN, NAN, NAN
    t = (m1 - m2) / se
    df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
    p = 2 * float(stats.t.sf(abs(t), df))
    return t, df, p


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
    half = float(stats.t.ppf(0.975, df)) * abs(ratio) * rel_se
    return Comparison(delta, 100 * (ratio - half - 1), 100 * (ratio + half - 1), t, df, p, d, g)


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (NaNs stay NaN, not counted)."""
    idx = [i for i, p in enumerate(p_values) if p is not None and math.isfinite(p)]
    m = len(idx)
    adjusted: List[float] = [NAN] * len(p_values)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def linear_trend_p(values: Sequence[float]) -> Optional[float]:
    """p of a linear trend of ``values`` against their order (drift across repetitions)."""
    y = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(y) < 4 or np.allclose(y, y[0]):
        return None
    return float(stats.linregress(np.arange(len(y)), y).pvalue)
