"""Batch scaling (each batch size against batch 1) and the decode roofline (weights read per step against the
hardware profile's memory bandwidth).
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import pandas as pd

from ecosweep.analysis.comparisons import baseline_for, provenance, summary_of
from ecosweep.analysis.inputs import DEFAULT_ENGINE, keys_across, with_engine
from ecosweep.config.compat import weight_bytes_per_parameter
from ecosweep.config.compose import hardware_profiles
from ecosweep.stats import compare


def batch_scaling(configs: pd.DataFrame) -> pd.DataFrame:
    """Energy per request, throughput speed-up and scaling efficiency relative to batch 1."""
    records = []
    if configs.empty or "energy_j_per_request_mean" not in configs:
        return pd.DataFrame()
    keys = keys_across("batch_size")
    configs = with_engine(configs)
    for key, g in configs.groupby(keys, dropna=False):
        base = g[g.batch_size == 1]
        if base.empty or len(g) < 2:
            continue
        for _, r in g.sort_values("batch_size", kind="stable").iterrows():
            b = baseline_for(base, r)
            speedup = r.tok_s_mean / b.tok_s_mean
            c = compare(summary_of(b, "energy_j_per_request"), summary_of(r, "energy_j_per_request"))
            records.append({**dict(zip(keys, key)), "batch_size": r.batch_size,
                            "energy_j_per_request": r.energy_j_per_request_mean,
                            "energy_per_request_change_pct": c.delta_pct,
                            "change_ci_low": c.delta_pct_ci95_low, "change_ci_high": c.delta_pct_ci95_high, "p": c.p,
                            "tok_s": r.tok_s_mean, "speedup": speedup, "scaling_efficiency": speedup / r.batch_size,
                            **provenance(b, r)})
    return pd.DataFrame(records)

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
