"""The report's "Served load" section (scenario=serving cells): per cell, energy per request and per output token
(the whole run and its steady-state window), latency percentiles and goodput per SLO; per SLO, the precision and
load with the lowest energy per request among those that meet it; each served cell beside the fixed batch of the
same model and precision nearest its steady-state batch; and the figure of J per request and per token against
load, one line per precision, the loads that meet an SLO filled."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd

from ecosweep.analysis.figures import MARKERS, _plt, _save, _slug
from ecosweep.config.load_names import server_variant_of_load
from ecosweep.stats import summarize

# A load meets an SLO when at least this share of its requests met both limits (MLPerf judges the 99th percentile).
SLO_MET_SHARE = 0.99
CELL_KEYS = ["hardware", "model", "quantization", "serving_load", "serving_lengths", "input_tokens", "output_tokens"]
SUMMARISED = ["energy_j_per_request", "energy_j_per_output_token", "steady_energy_j_per_output_token",
              "steady_net_energy_j_per_output_token", "steady_output_tok_s", "tok_s", "requests_per_s",
              "steady_batch_mean_requests", "power_w_mean", "ttft_ms_p50", "ttft_ms_p99", "tpot_ms_p50", "tpot_ms_p99",
              "ttft_ms_clock_diff_pct", "tpot_ms_clock_diff_pct"]


def served_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The ok rows of served cells."""
    if rows.empty or "scenario" not in rows:
        return pd.DataFrame()
    served = rows[(rows.scenario == "serving") & (rows.status == "ok")].copy()
    if not served.empty:
        served["hardware"] = served["device_name"].fillna(served["hardware"])
    return served


def _slo_values(g: pd.DataFrame, column: str) -> Dict[str, float]:
    """The mean over repetitions of each SLO's entry of a *_by_slo list column."""
    names = str(g.slo_names.iloc[0] or "").split(",")
    values = np.array([list(v) for v in g[column]], dtype=float)
    return {name: float(values[:, i].mean()) for i, name in enumerate(names) if name}


def serving_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per served cell: mean, sd and 95 % CI of J per request, the steady-state J per output token, and the
    means of speed, batch and latency percentiles; goodput and the met share per SLO."""
    served = served_rows(rows)
    if served.empty:
        return pd.DataFrame()
    records = []
    for key, g in served.groupby(CELL_KEYS, dropna=False, sort=False):
        rec = dict(zip(CELL_KEYS, key), n=len(g), serving_arrival=g.serving_arrival.iloc[0],
                   serving_max_batch_requests=g.serving_max_batch_requests.iloc[0],
                   serving_request_rate_rps=g.serving_request_rate_rps.iloc[0], cell_ids=",".join(g.cell_id.unique()),
                   requests_failed=int(g.requests_failed.sum()), requests_timed_out=int(g.requests_timed_out.sum()),
                   steady_window_s=float(g.steady_window_s.mean()), gpu_uuids=",".join(g.gpu_uuid.dropna().unique()))
        for column in SUMMARISED:
            s = summarize(g[column].astype(float).tolist(), bootstrap=False)
            rec.update({f"{column}_mean": s.mean, f"{column}_sd": s.sd, f"{column}_ci_low": s.ci95_low,
                        f"{column}_ci_high": s.ci95_high})
        rec["energy_j_per_request_cv_pct"] = 100 * rec["energy_j_per_request_sd"] / rec["energy_j_per_request_mean"]
        for name, value in _slo_values(g, "goodput_rps_by_slo").items():
            rec[f"goodput_rps_{name}"] = value
        for name, value in _slo_values(g, "slo_met_share_by_slo").items():
            rec[f"slo_met_share_{name}"] = value
        records.append(rec)
    return pd.DataFrame(records)


def slo_names(table: pd.DataFrame) -> List[str]:
    return [c[len("slo_met_share_"):] for c in table.columns if c.startswith("slo_met_share_")]


def best_within_slo(table: pd.DataFrame) -> pd.DataFrame:
    """Per hardware, model and SLO: the served cell with the lowest J per request among those where at least
    SLO_MET_SHARE of requests met the SLO (none: the row says so)."""
    out = []
    for (hardware, model), g in table.groupby(["hardware", "model"], sort=False):
        for name in slo_names(table):
            meeting = g[g[f"slo_met_share_{name}"] >= SLO_MET_SHARE]
            rec = {"hardware": hardware, "model": model, "slo": name, "loads_meeting": len(meeting),
                   "loads_measured": len(g)}
            meeting = meeting[meeting.energy_j_per_request_mean.notna()]
            if not meeting.empty:
                best = meeting.loc[meeting.energy_j_per_request_mean.idxmin()]
                rec.update(quantization=best.quantization, serving_load=best.serving_load,
                           energy_j_per_request=best.energy_j_per_request_mean,
                           steady_energy_j_per_output_token=best.steady_energy_j_per_output_token_mean,
                           goodput_rps=best[f"goodput_rps_{name}"], ttft_ms_p99=best.ttft_ms_p99_mean,
                           tpot_ms_p99=best.tpot_ms_p99_mean)
            out.append(rec)
    return pd.DataFrame(out)


def beside_fixed_batch(table: pd.DataFrame, configs: pd.DataFrame) -> pd.DataFrame:
    """Each served cell beside the fixed-batch configuration of the same hardware, model, precision and lengths
    whose batch size is nearest its steady-state mean batch, at that batch's lowest-energy engine: the stream's
    J per output token (steady state) over the fixed batch's."""
    if table.empty or configs.empty or "energy_j_per_1k_tok_mean" not in configs:
        return pd.DataFrame()
    out = []
    for _, cell in table.iterrows():
        same = configs[(configs.hardware == cell.hardware) & (configs.model == cell.model)
                       & (configs.quantization == cell.quantization) & (configs.input_tokens == cell.input_tokens)
                       & (configs.output_tokens == cell.output_tokens) & configs.energy_j_per_1k_tok_mean.notna()]
        batch = cell.steady_batch_mean_requests_mean
        if same.empty or not math.isfinite(batch):
            continue
        nearest = same.loc[(same.batch_size - batch).abs().idxmin(), "batch_size"]
        fixed = same[same.batch_size == nearest].sort_values("energy_j_per_1k_tok_mean").iloc[0]
        fixed_j = fixed.energy_j_per_1k_tok_mean / 1000.0
        out.append({"hardware": cell.hardware, "model": cell.model, "quantization": cell.quantization,
                    "serving_load": cell.serving_load, "steady_batch_mean_requests": batch,
                    "steady_energy_j_per_output_token": cell.steady_energy_j_per_output_token_mean,
                    "steady_output_tok_s": cell.steady_output_tok_s_mean, "fixed_batch_size": int(nearest),
                    "fixed_engine": fixed.engine, "fixed_energy_j_per_output_token": fixed_j,
                    "fixed_tok_s": fixed.tok_s_mean,
                    "stream_over_fixed": cell.steady_energy_j_per_output_token_mean / fixed_j})
    return pd.DataFrame(out)


def _load_axis(g: pd.DataFrame) -> Tuple[pd.Series, str]:
    if (g.serving_arrival == "poisson").all():
        return g.serving_request_rate_rps.astype(float), "arrival rate (requests per second)"
    return g.serving_max_batch_requests.astype(float), "max batch (requests in flight)"


def serving_figure(table: pd.DataFrame, out_dir: Path) -> List[Path]:
    """J per request and steady-state J per output token against load, one line per precision (and server
    variant), for each hardware and model (and arrival kind); a filled marker where the load met the first SLO,
    hollow where it did not."""
    if table.empty or table.energy_j_per_request_mean.isna().all():
        return []  # no energy measured: nothing to draw
    plt = _plt()
    first_slo = (slo_names(table) or [None])[0]
    drawn: List[Path] = []
    for (hardware, model, poisson), g in table.groupby(
            ["hardware", "model", table.serving_arrival == "poisson"], sort=False):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        loads: set = set()
        server = g.serving_load.map(server_variant_of_load)  # one line per precision and server
        for i, ((quantization, variant), h) in enumerate(g.groupby(["quantization", server], sort=False)):
            x, xlabel = _load_axis(h)
            order = np.argsort(x.to_numpy())
            met = (h[f"slo_met_share_{first_slo}"] >= SLO_MET_SHARE).to_numpy() if first_slo else np.ones(len(h), bool)
            for ax, column in zip(axes, ("energy_j_per_request_mean", "steady_energy_j_per_output_token_mean")):
                y = h[column].to_numpy()[order]
                xs, marker = x.to_numpy()[order], MARKERS[i % len(MARKERS)]
                ax.plot(xs, y, color="0.3", linestyle=["-", "--", ":", "-."][i % 4], marker=marker,
                        markerfacecolor="white", markeredgecolor="0.15",
                        label=f"{quantization} ({variant})" if variant else quantization)
                ax.plot(xs[met[order]], y[met[order]], marker, color="0.15", linestyle="none")
                loads.update(xs.tolist())
        for ax, what in zip(axes, ("energy per request (J)", "steady-state energy per output token (J)")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(loads), [f"{v:g}" for v in sorted(loads)])
            ax.minorticks_off()
            ax.set_xlabel(xlabel)
            ax.set_ylabel(what)
            ax.grid(True, which="both", color="0.9")
        axes[0].legend(title="precision (server settings)" if server.any() else "precision", frameon=False)
        met_text = f"filled: ≥ {SLO_MET_SHARE:.0%} of requests met the {first_slo} SLO" if first_slo else ""
        fig.suptitle(f"{model} on {hardware}: served load ({met_text})", fontsize=10)
        name = f"serving_load_{_slug(model)}_{_slug(hardware)}{'_poisson' if poisson else ''}"
        drawn += _save(fig, out_dir, name)
    return drawn


def _slo_sentences(best: pd.DataFrame, slos: Dict[str, str]) -> List[str]:
    lines = []
    for _, b in best.iterrows():
        limits = slos.get(b.slo, "")
        if b.loads_meeting and pd.isna(b.get("quantization")):
            lines.append(f"- **{b.slo}** ({limits}), {b.model} on {b.hardware}: {b.loads_meeting} of "
                         f"{b.loads_measured} loads met it; no energy was measured (energy_source none), so none is "
                         "named the lowest.")
            continue
        if not b.loads_meeting:
            lines.append(f"- **{b.slo}** ({limits}), {b.model} on {b.hardware}: none of the {b.loads_measured} loads "
                         f"measured met it for {SLO_MET_SHARE:.0%} of its requests.")
            continue
        lines.append(f"- **{b.slo}** ({limits}), {b.model} on {b.hardware}: the lowest energy per request among the "
                     f"{b.loads_meeting} of {b.loads_measured} loads that meet it is **{b.quantization} at "
                     f"{b.serving_load}**: {b.energy_j_per_request:.4g} J per request, "
                     f"{b.steady_energy_j_per_output_token:.4g} J per output token in the steady state, goodput "
                     f"{b.goodput_rps:.3g} requests/s (p99 TTFT {b.ttft_ms_p99:.4g} ms, p99 TPOT {b.tpot_ms_p99:.3g} "
                     "ms).")
    return lines


def serving_section(rows: pd.DataFrame, configs: pd.DataFrame, md) -> Tuple[List[str], Dict[str, pd.DataFrame]]:
    """The section's markdown lines (``md``: the report's table formatter) and its tables (for CSV files)."""
    table = serving_table(rows)
    if table.empty:
        return [], {}
    served = served_rows(rows)
    slos = {}
    for text in served.serving_slos.dropna().unique():
        for item in str(text).split(","):
            name, _, limits = item.partition(":")
            ttft, _, tpot = limits.removesuffix("ms").partition("/")
            slos[name] = f"TTFT ≤ {ttft} ms, TPOT ≤ {tpot} ms"
    best, fixed = best_within_slo(table), beside_fixed_batch(table, configs)
    goodput = [c for c in table.columns if c.startswith(("goodput_rps_", "slo_met_share_"))]
    lines = ["## Served load\n",
             "Requests served by transformers' continuous batching (scenario=serving). J per request: the whole run's "
             "counter energy over its completed requests; J per output token in the steady-state window (the batch "
             "full until the drain begins; a Poisson stream from its 10th-percentile arrival to its last: ML.ENERGY's "
             "rule). Latency percentiles from the server's own timestamps, clock_diff: their medians against the "
             f"client's clock. A load meets an SLO when ≥ {SLO_MET_SHARE:.0%} of its requests met both limits.\n",
             md(table, ["hardware", "model", "quantization", "serving_load", "serving_lengths", "n",
                        "energy_j_per_request_mean", "energy_j_per_request_ci_low", "energy_j_per_request_ci_high",
                        "energy_j_per_request_cv_pct", "steady_energy_j_per_output_token_mean",
                        "steady_output_tok_s_mean", "steady_batch_mean_requests_mean", "ttft_ms_p50_mean",
                        "ttft_ms_p99_mean", "tpot_ms_p50_mean", "tpot_ms_p99_mean", *goodput,
                        "ttft_ms_clock_diff_pct_mean", "tpot_ms_clock_diff_pct_mean", "requests_failed",
                        "requests_timed_out"]),
             "### Lowest J per request within each SLO\n", *_slo_sentences(best, slos), ""]
    if not fixed.empty:
        lines += ["### A stream beside a fixed batch\n",
                  "Each served cell's steady-state J per output token over the fixed-batch cell of the same model, "
                  "precision and lengths whose batch size is nearest the stream's mean batch (at that batch's "
                  "lowest-energy engine).\n",
                  md(fixed, ["hardware", "model", "quantization", "serving_load", "steady_batch_mean_requests",
                             "steady_energy_j_per_output_token", "steady_output_tok_s", "fixed_batch_size",
                             "fixed_engine", "fixed_energy_j_per_output_token", "fixed_tok_s", "stream_over_fixed"])]
    return lines, {"serving": table, "serving_best_within_slo": best, "serving_vs_fixed_batch": fixed}
