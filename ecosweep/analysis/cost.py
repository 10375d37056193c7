"""Carbon and money from measured energy and GPU time, per configuration.

Two costs are kept apart because they are paid apart: the *energy* a configuration draws (its
metered GPU energy times the facility's PUE, priced per kWh and turned into CO2e by the grid's
carbon intensity) and the *GPU time* it holds (priced per GPU-hour: what a cloud bill charges, which
already includes the electricity; add the two only where the GPU-hour price leaves it out, e.g. owned
hardware priced at its depreciation). Energy-based figures
carry the 95 % CI of the measured energy (a linear transform); GPU time follows the mean throughput.
"""

from __future__ import annotations

import pandas as pd

from ecosweep.analysis import inputs
from ecosweep.config.schema import ReportConfig

J_PER_KWH = 3.6e6


def describe(r: ReportConfig) -> str:
    """The settings in one line, as figures and tables state them."""
    return (f"{r.grid_gco2e_per_kwh:g} gCO2e/kWh, PUE {r.pue:g}, ${r.usd_per_kwh:g}/kWh, "
            f"${r.usd_per_gpu_hour:g}/GPU-hour")


def _holds_a_gpu(configs: pd.DataFrame) -> pd.Series:
    """False for configurations measured on a CPU (no GPU UUID and a CPU meter or none): no GPU time to price.
    Summary tables without these columns are taken to be GPU measurements."""
    def column(name: str, default: object) -> pd.Series:
        return configs[name] if name in configs else pd.Series(default, index=configs.index)

    no_uuid = column("gpu_uuids", None).fillna("").astype(str).eq("")
    cpu_meter = column("energy_source", None).isin(["rapl", "none"])
    return ~(no_uuid & cpu_meter)


def cost_table(configs: pd.DataFrame, settings: ReportConfig) -> pd.DataFrame:
    """Per configuration (energy and GPU-hours over all the GPUs a cell held): facility kWh, gCO2e and
    energy $ per 1M generated tokens (mean and 95 % CI) and per request, GPU-hours and GPU-time $ per 1M
    tokens and per request. Empty without energy per token."""
    if configs.empty or "energy_j_per_1k_tok_mean" not in configs:
        return pd.DataFrame()
    keys = [k for k in inputs.ROW_KEYS if k in configs]
    out = configs[keys].copy()
    kwh_per_j = settings.pue / J_PER_KWH
    for suffix in ("mean", "ci_low", "ci_high"):
        column = f"energy_j_per_1k_tok_{suffix}"
        if column not in configs:
            continue
        kwh = configs[column] * 1000.0 * kwh_per_j  # per 1M tokens
        tag = "" if suffix == "mean" else f"_{suffix}"
        out[f"kwh_per_1m_tok{tag}"] = kwh
        out[f"gco2e_per_1m_tok{tag}"] = kwh * settings.grid_gco2e_per_kwh
        out[f"usd_energy_per_1m_tok{tag}"] = kwh * settings.usd_per_kwh
    if "energy_j_per_request_mean" in configs:
        request_kwh = configs["energy_j_per_request_mean"] * kwh_per_j
        out["gco2e_per_request"] = request_kwh * settings.grid_gco2e_per_kwh
        out["usd_energy_per_request"] = request_kwh * settings.usd_per_kwh
    if "tok_s_mean" in configs:
        gpu = _holds_a_gpu(configs)
        # a cell over N GPUs holds all N for its time (summary tables without gpu_count: one GPU)
        gpus = configs["gpu_count"].fillna(1).clip(lower=1) if "gpu_count" in configs else 1
        hours = (gpus * 1e6 / configs["tok_s_mean"] / 3600.0).where(gpu)
        out["gpu_hours_per_1m_tok"] = hours
        out["usd_gpu_time_per_1m_tok"] = hours * settings.usd_per_gpu_hour
        if "output_tokens" in configs:  # a request's share of the GPUs: its tokens at the batch's throughput
            out["usd_gpu_time_per_request"] = (gpus * configs["output_tokens"] / configs["tok_s_mean"] / 3600.0
                                               * settings.usd_per_gpu_hour).where(gpu)
    out["cost_settings"] = describe(settings)
    return out
