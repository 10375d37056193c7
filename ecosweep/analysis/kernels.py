"""The kernel profile's columns in the configurations table: classes seen, idle time per token, and the gap
between two precisions (where LLM.int8()'s extra time over pure int8 goes).
"""

from __future__ import annotations

import math
from typing import List

import pandas as pd

from ecosweep.analysis.inputs import ROW_KEYS
from ecosweep.results.schema import KERNEL_CLASSES


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
