"""The decision table: which precisions are worth choosing, per model x engine x batch (x tokens, hardware).

A precision is on the Pareto front of (energy per 1k tokens: lower, throughput: higher, fidelity: KL to
the unquantized reference, lower) unless another precision of the same group *dominates* it: no worse on
any of the three and better on at least one. Energy and throughput are repeated measurements, so
"better" and "worse" there mean a Welch's t-test at p < 0.05 on the two configurations' repetitions
(a difference inside the noise is a tie); fidelity is computed once per cell, so any difference beyond
1e-6 nats counts. Configurations without fidelity (results from before it, summary tables) are judged
on energy and throughput alone, and the table says so.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import pandas as pd

from ecosweep.analysis import inputs
from ecosweep.stats import welch

GROUP = inputs.keys_across("quantization")  # the groups the comparisons against fp16 use
ALPHA = 0.05
KL_TIE_NATS = 1e-6


def _measured_order(a: pd.Series, b: pd.Series, metric: str, higher_is_better: bool) -> int:
    """+1 when ``a`` is significantly better than ``b`` on ``metric``, -1 when worse, 0 for a tie or unknown."""
    ma, mb = a.get(f"{metric}_mean"), b.get(f"{metric}_mean")
    if ma is None or mb is None or not (math.isfinite(ma) and math.isfinite(mb)) or ma == mb:
        return 0
    sa, sb, na, nb = a.get(f"{metric}_sd"), b.get(f"{metric}_sd"), a.get(f"{metric}_n"), b.get(f"{metric}_n")
    if all(v is not None and math.isfinite(v) for v in (sa, sb, na, nb)) and na >= 2 and nb >= 2 and (sa or sb):
        p = welch(ma, sa, int(na), mb, sb, int(nb))[2]
        if not p < ALPHA:
            return 0
    better = ma > mb if higher_is_better else ma < mb
    return 1 if better else -1


def _fidelity_order(a: pd.Series, b: pd.Series) -> Optional[int]:
    ka, kb = a.get("fidelity_kl_nats_mean"), b.get("fidelity_kl_nats_mean")
    if ka is None or kb is None or pd.isna(ka) or pd.isna(kb):
        return None
    if abs(ka - kb) <= KL_TIE_NATS:
        return 0
    return 1 if ka < kb else -1


def _compare(a: pd.Series, b: pd.Series) -> Dict[str, Optional[int]]:
    return {"energy": _measured_order(a, b, "energy_j_per_1k_tok", higher_is_better=False),
            "speed": _measured_order(a, b, "tok_s", higher_is_better=True),
            "fidelity": _fidelity_order(a, b)}


def _why(dominant: pd.Series, row: pd.Series, order: Dict[str, Optional[int]]) -> str:
    """In words, how ``dominant`` beats ``row`` (order: dominant against row)."""
    parts = []
    if order["energy"] == 1:
        delta = 100 * (row.energy_j_per_1k_tok_mean / dominant.energy_j_per_1k_tok_mean - 1)
        parts.append(f"{delta:+.1f} % energy per token")
    if order["speed"] == 1:
        delta = 100 * (row.tok_s_mean / dominant.tok_s_mean - 1)
        parts.append(f"{delta:+.1f} % tok/s")
    if order["fidelity"] == 1:
        parts.append(f"KL {row.fidelity_kl_nats_mean:.3g} vs {dominant.fidelity_kl_nats_mean:.3g} nats")
    ties = [k for k, v in order.items() if v == 0]
    text = f"against {dominant.quantization}: " + ", ".join(parts)
    return text + (f" (tied on {', '.join(ties)})" if ties else "")


def decision_table(configs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: on_front, and for a dominated one the precision(s) that dominate it and why."""
    if configs.empty or "energy_j_per_1k_tok_mean" not in configs:
        return pd.DataFrame()
    keys = [k for k in GROUP if k in configs]
    records: List[dict] = []
    for _, group in configs.groupby(keys, dropna=False, sort=False):
        rows = [r for _, r in group.iterrows()]
        for row in rows:
            dominators = []
            for other in rows:
                if other is row or other.quantization == row.quantization:
                    continue
                order = _compare(other, row)
                known = [v for v in order.values() if v is not None]
                if known and min(known) >= 0 and max(known) == 1:
                    dominators.append((other, order))
            fidelity_known = pd.notna(row.get("fidelity_kl_nats_mean"))
            records.append({
                **{k: row[k] for k in keys}, "quantization": row.quantization,
                **({"gpu_count": row.gpu_count} if "gpu_count" in row else {}),
                "energy_j_per_1k_tok_mean": row.energy_j_per_1k_tok_mean, "tok_s_mean": row.get("tok_s_mean"),
                "fidelity_kl_nats_mean": row.get("fidelity_kl_nats_mean"),
                "on_front": not dominators,
                "dominated_by": ", ".join(d.quantization for d, _ in dominators) or None,
                "why": "; ".join(_why(d, row, o) for d, o in dominators) or None,
                "criteria": "energy, tok/s, fidelity" if fidelity_known else "energy, tok/s (no fidelity measured)",
            })
    return pd.DataFrame(records)
