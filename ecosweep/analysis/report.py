"""report.md: tables, figures, methods and warnings for any mix of results and summary tables.

    python -m ecosweep report outputs/my_study experiments/published_rtx4090d/summary.csv --out reports/x

Also written at the end of every study into the study folder.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pandas as pd

from ecosweep.analysis import cost, decision, figures, serving
from ecosweep.analysis.caveats import warnings_for
from ecosweep.analysis.comparisons import best_engine_comparisons, comparisons, engine_comparisons, engine_sign_findings
from ecosweep.analysis.crossover import crossover
from ecosweep.analysis.inputs import (
    DEFAULT_ENGINE,
    FIDELITY_TABLE_COLUMNS,
    ROW_KEYS,
    has_random_weights,
    load_inputs,
    read_raw_inputs,
)
from ecosweep.analysis.kernels import kernel_classes_seen, kernel_gap
from ecosweep.analysis.scaling import batch_scaling, roofline
from ecosweep.analysis.time_use import time_use_section
from ecosweep.config.schema import ReportConfig
from ecosweep.errors import EcosweepError
from ecosweep.results.folders import writable_folder_problem


def _md(df: pd.DataFrame, cols: List[str], floats: str = "{:.4g}") -> str:
    """A markdown table of ``df``'s ``cols`` (those it has), floats to 4 significant digits, missing values blank
    (``DataFrame.to_markdown``, tabulate's pipe format)."""
    if df.empty:
        return "_none_\n"
    cols = [c for c in cols if c in df.columns]
    shown = df[cols].map(lambda v: "" if v is None or (isinstance(v, float) and v != v)
                         else floats.format(v) if isinstance(v, float) else str(v))
    return shown.to_markdown(index=False, tablefmt="pipe", disable_numparse=True) + "\n"


def _methods(rows: pd.DataFrame) -> str:
    """Versions, device and protocol of the successful repetitions among the raw ``rows``."""
    if rows.empty:
        return "Summary tables only: see each table's own documentation for its protocol.\n"
    rows = rows[rows.status == "ok"]
    if rows.empty:
        return "No successful repetitions.\n"
    facts = []
    for col, label in [("device_name", "device"), ("driver_version", "NVIDIA driver"), ("cuda_version", "CUDA"),
                       ("torch_version", "torch"), ("transformers_version", "transformers"),
                       ("bitsandbytes_version", "bitsandbytes"), ("ecosweep_version", "ecosweep"),
                       ("host", "host"), ("energy_source", "energy source"), ("weights", "weights"),
                       ("engine_effective", "decode engine (what ran)"), ("attn_implementation", "attention"),
                       ("min_window_s", "min window (s)"), ("warmup_calls", "warm-up calls")]:
        values = sorted({str(v) for v in rows[col].dropna().unique()})
        if values:
            facts.append(f"- {label}: {', '.join(values)}")
    facts.append(f"- repetitions per configuration: {rows.groupby('cell_id').size().min()}–"
                 f"{rows.groupby('cell_id').size().max()}")
    facts.append("- fixed-length greedy generation (min_new_tokens = max_new_tokens), synthetic prompts; each "
                 "repetition repeats whole calls of the cell's engine until its window reaches the minimum; "
                 + _energy_method(set(rows.energy_source.dropna())))
    return "\n".join(facts) + "\n"


_ENERGY_METHODS = {
    "nvml_counter": "energy from the NVML counter on the cell's own GPU (by UUID), idle baseline with the CUDA "
                    "context alive",
    "nvml_sampled": "energy integrated from NVML's sampled instantaneous power on the cell's own GPU (no energy "
                    "counter), idle baseline with the CUDA context alive",
    "rapl": "energy from the CPU package's RAPL counter (the whole package, not the cell alone)",
    "none": "no energy measured (no meter on this machine): times and tokens only",
}


def _energy_method(sources: set) -> str:
    """How energy was measured, said for each energy source the rows hold (NVML, RAPL, none)."""
    said = [_ENERGY_METHODS.get(source, f"energy source {source}") for source in sorted(sources)]
    said = said or [_ENERGY_METHODS["none"]]
    return "; ".join(said) + "."


def _first_line(error: object, limit: int = 160) -> str:
    line = str(error).strip().splitlines()[0] if isinstance(error, str) and error.strip() else "no error recorded"
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _unfinished_section(rows: pd.DataFrame) -> List[str]:
    """The cells whose stored rows hold no successful repetition (failed, out of memory), with the first line
    of their error: they appear in no table of the report, and a reader must not take them for unmeasured."""
    if rows.empty:
        return []
    finished = set(rows.cell_id[rows.status == "ok"])
    unfinished = rows[~rows.cell_id.isin(finished)].drop_duplicates("cell_id").copy()
    if unfinished.empty:
        return []
    unfinished["reason"] = unfinished.error.map(_first_line)
    columns = [c for c in ("study", "model", "quantization", "engine", "batch_size", "gpu_count", "gpu_uuid")
               if c in unfinished]
    unfinished = unfinished.sort_values(columns[:5])
    return ["## Cells that did not finish\n",
            f"{len(unfinished)} cell(s) stored without a successful repetition, so in no table or figure above "
            "(status: failed or oom; the whole error is in the cell's rows, column `error`). Running the study "
            "again measures them again (retry_failed=true, the default).\n",
            _md(unfinished, [*columns, "status", "reason"])]


def _metric_and_baseline(configs: pd.DataFrame, metric: str, baseline: str) -> Tuple[str, str, List[str]]:
    """The metric and baseline the report can use on these configurations, and a note for each fallback."""
    notes = []
    if not (f"{metric}_mean" in configs and configs[f"{metric}_mean"].notna().any()):
        notes.append(f"No {metric} was measured (energy_source=none): tables and figures compare tok_s instead.")
        metric = "tok_s"
    present = set(configs.quantization)
    if baseline not in present:
        fallback = next((q for q in ("fp16", "bf16", "fp32") if q in present), None)
        if fallback:
            notes.append(f"No {baseline} cells: comparisons use {fallback} as the baseline.")
            baseline = fallback
    return metric, baseline, notes


def _write_figures(configs: pd.DataFrame, comp: pd.DataFrame, costs: pd.DataFrame, settings: ReportConfig,
                   fig_dir: Path, metric: str, served: pd.DataFrame) -> List[Path]:
    """Draw the report's figures into ``fig_dir``, and remove the figures an earlier build left there that this
    one did not draw (a report links only what it drew)."""
    drawn: List[Path] = serving.serving_figure(served, fig_dir)
    if f"{metric}_mean" in configs and configs[f"{metric}_mean"].notna().any():
        drawn += (figures.energy_by_model(configs, comp, fig_dir, metric) + figures.crossover_plot(comp, fig_dir)
                 + figures.delta_vs_batch(comp, fig_dir) + figures.batch_panel(configs, fig_dir)
                 + figures.carbon_by_model(configs, costs, cost.describe(settings), fig_dir)
                 + figures.kernel_breakdown(configs, fig_dir))
    if fig_dir.is_dir():
        for stale in set(fig_dir.glob("*.png")) | set(fig_dir.glob("*.pdf")):
            if stale not in drawn:
                stale.unlink()
    return drawn


def _fidelity_beside_energy(configs: pd.DataFrame, comp: pd.DataFrame) -> pd.DataFrame:
    """Configurations that carry fidelity columns, with their energy and its Δ % against the baseline."""
    if "fidelity_reference" not in configs or not configs.fidelity_reference.notna().any():
        return pd.DataFrame()
    table = configs[configs.fidelity_reference.notna()].copy()
    if not comp.empty:
        keys = [k for k in ROW_KEYS if k in comp and k in table]
        table = table.merge(comp[keys + ["delta_pct"]].drop_duplicates(keys), on=keys, how="left")
    return table


def _fidelity_section(configs: pd.DataFrame, comp: pd.DataFrame, metric: str, columns: List[str]) -> List[str]:
    fidelity = _fidelity_beside_energy(configs, comp)
    if fidelity.empty:
        return []
    random_note = (" With random weights the next-token distributions are near uniform: these figures measure "
                   "the quantized kernels' numerical error, not the loss of model quality (use weights=pretrained "
                   "with fidelity.text for perplexity)." if has_random_weights(configs) else "")
    return ["## Fidelity beside energy\n",
            "Each cell against its unquantized reference (the same weights in float16 on a GPU, float32 on a CPU), "
            "on the cell's prompts, teacher-forced on the reference's greedy continuation, before any energy "
            "window: greedy agreement over the generated positions, top-1 match over all positions, KL(reference "
            f"|| cell) in nats (mean, 95th percentile), the largest logit error.{random_note}\n",
            _md(fidelity, [*columns, f"{metric}_mean", "delta_pct", *FIDELITY_TABLE_COLUMNS])]


def _kernel_heads(names: object, width: int = 60) -> object:
    """'; '-separated kernel names, each cut to ``width`` characters (the full names: the rows, the kernel tables)."""
    if not isinstance(names, str):
        return names
    return "; ".join(n if len(n) <= width else n[:width - 1] + "…" for n in names.split("; "))


def _profile_section(configs: pd.DataFrame, columns: List[str]) -> List[str]:
    """Cells measured with profile=true: their GPU busy and idle share, launches and time by kernel class."""
    used = kernel_classes_seen(configs)
    failed = configs[configs.profile_error.notna()] if "profile_error" in configs else configs.iloc[0:0]
    if not used and failed.empty:
        return []
    profiled = configs[configs.profile_wall_ms_per_tok.notna()] if used else configs.iloc[0:0]
    if "profile_unknown_kernels" in profiled:  # C++ template names run to kilobytes: their heads name them
        profiled = profiled.assign(profile_unknown_kernels=profiled.profile_unknown_kernels.map(_kernel_heads))
    errors = (["Profiles that failed (the cells' measurements stand):\n", _md(failed, [*columns, "profile_error"])]
              if not failed.empty else [])
    return ["## Kernel profile (per generated token)\n",
            "One extra call per cell, traced with the PyTorch profiler after its energy windows (never inside "
            "them). profile_gpu_idle_share: the share of the measured call (no profiler) in which no kernel ran, the "
            "launch-bound share; then kernels and host-side launches per token and GPU time per token by kernel "
            "class, in ms (classes: README, 'Kernel profile'; on a CPU, operators' self time). Unknown kernels are "
            "named (cut to their first 60 characters here), never dropped; each cell's trace is "
            "traces/<cell_id>.profile.json.gz, its kernels traces/<cell_id>.kernels.csv.\n",
            _md(profiled, [*columns, "profile_gpu_idle_share", "profile_kernels_per_tok", "profile_launches_per_tok",
                           "profile_wall_ms_per_tok", *used, "profile_unknown_kernels"]), *errors]


def _decision_section(choice: pd.DataFrame, by_source: List[str], by_axis: List[str]) -> List[str]:
    if choice.empty or choice.quantization.nunique() < 2:
        return []
    unmeasured = (" Where no fidelity was measured (results from before it, summary tables) a quantized precision "
                  "can dominate fp16 only because what it loses is not in the table: read those rows as energy and "
                  "speed alone." if choice.fidelity_kl_nats_mean.isna().any() else "")
    return ["## Which precision to choose\n",
            "Per hardware, model, engine, batch and tokens: the precisions on the Pareto front of energy per "
            "1k tokens (lower), tok/s (higher) and fidelity (KL to the unquantized reference, lower), and "
            "for every other one the precision that dominates it — no worse on any criterion, better on at "
            "least one — and by how much. Energy and tok/s count as better or worse only at Welch's "
            f"p < 0.05; a difference inside the noise is a tie.{unmeasured}\n",
            _md(choice, [*by_source, "hardware", "model", *by_axis, "batch_size", "quantization",
                         "energy_j_per_1k_tok_mean", "tok_s_mean", "fidelity_kl_nats_mean", "on_front",
                         "dominated_by", "why", "criteria"])]


def _cost_section(costs: pd.DataFrame, columns: List[str]) -> List[str]:
    if costs.empty:
        return []
    return ["## Carbon and cost\n",
            f"Settings: {costs.cost_settings.iloc[0]} (`report.*` in the study config, or `--grid-gco2e-per-kwh`, "
            "`--pue`, `--usd-per-kwh`, `--usd-per-gpu-hour` of `ecosweep report`). Energy: the metered GPU "
            "energy × PUE, in kWh, CO2e and $ per 1M generated tokens (with the energy's 95 % CI) and per "
            "request. GPU time: hours one GPU is held per 1M tokens at the measured throughput, priced per "
            "GPU-hour; a cloud price already includes the electricity, so add the two only for a GPU-hour "
            "price that leaves it out.\n",
            _md(costs, [*columns, "kwh_per_1m_tok", "gco2e_per_1m_tok", "gco2e_per_1m_tok_ci_low",
                        "gco2e_per_1m_tok_ci_high", "usd_energy_per_1m_tok", "gpu_hours_per_1m_tok",
                        "usd_gpu_time_per_1m_tok", "gco2e_per_request", "usd_energy_per_request",
                        "usd_gpu_time_per_request"])]


def _int8_gap_section(gap: pd.DataFrame, kernels: pd.DataFrame, columns: List[str], metric: str) -> List[str]:
    if gap.empty:
        return []
    text = ["## LLM.int8() against pure int8\n",
            f"int8 (threshold 6.0) against int8_pure (threshold 0.0) of the same weights ({metric}): what the "
            "outlier decomposition costs, with the columns it took per int8 matmul (int8_decomposed_cols_mean; "
            "weights random+outliers<N>x<scale>: outlier features planted, see the README).\n",
            _md(gap, [*(c for c in columns if c != "weights"), "weights", "int8_decomposed_cols_mean",
                    "baseline_mean", "mean", "delta_pct",
                      "delta_pct_ci_low", "delta_pct_ci_high", "p", "cohens_d", "same_device"])]
    if kernels.empty:
        return text
    return text + [
        "Where its extra time goes (profile=true on both): int8 minus int8_pure per generated token, in ms of the "
        "whole token (1000 / tok/s), of GPU time, and of the kernel class that adds the most GPU time (with its "
        "share of the extra GPU time); the rest of the extra token is the host (extra_launches_per_tok).\n",
        _md(kernels, [*(c for c in columns if c not in ("quantization", "weights")), "weights", "extra_ms_per_tok",
                      "extra_gpu_ms_per_tok", "extra_launches_per_tok", "largest_class", "largest_class_ms_per_tok",
                      "largest_class_share"])]


def _int8_gap(configs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """int8 against int8_pure per hardware, model, engine, batch, tokens and weights (empty without both)."""
    if not {"int8", "int8_pure"} <= set(configs.quantization):
        return pd.DataFrame()
    gap = comparisons(configs, "int8_pure", metric)
    gap = gap[gap.quantization == "int8"] if not gap.empty else gap
    if gap.empty or "int8_decomposed_cols_mean" not in configs:
        return gap
    keys = [k for k in ROW_KEYS if k in gap and k in configs]
    return gap.merge(configs[keys + ["int8_decomposed_cols_mean"]].drop_duplicates(keys), on=keys, how="left")


def _engine_sections(engines: pd.DataFrame, best: pd.DataFrame, signs: List[str], baseline: str,
                     metric: str) -> List[str]:
    """Engines against eager within each precision, each precision at its best engine, and whether each
    precision's effect keeps its sign."""
    text: List[str] = []
    if not engines.empty:
        text += [f"## Engines against {DEFAULT_ENGINE} ({metric})\n",
                 "The same model, precision and batch decoded by another engine, against eager generate() "
                 "(Δ% with 95 % CI, Welch's p, Holm-adjusted p; tok_s_ratio: its throughput over eager's; "
                 "engine_effective: what actually ran).\n",
                 _md(engines, ["hardware", "model", "quantization", "batch_size", "engine", "engine_effective",
                               "baseline_mean", "mean", "delta_pct", "delta_pct_ci_low", "delta_pct_ci_high", "p",
                               "p_holm", "tok_s_ratio", "same_device"])]
    if not best.empty:
        text += [f"## Each precision at its best engine ({metric})\n",
                 f"Each precision decoded by the engine that gave it the lowest mean, against {baseline} at its "
                 "own lowest (Δ% with 95 % CI, Welch's p, Holm-adjusted p; engines_measured: the engines the pick "
                 "was made from; the pick is by the mean, so a close call between engines is not in the CI): what "
                 "a deployment that may choose its engine gets from the precision.\n",
                 _md(best, ["hardware", "model", "batch_size", "quantization", "engine", "engine_effective",
                            "engines_measured", "baseline_engine", "baseline_mean", "mean", "delta_pct",
                            "delta_pct_ci_low", "delta_pct_ci_high", "p", "p_holm", "tok_s_ratio", "same_device"])]
    if signs:
        text += ["## Does the engine decide the sign?\n",
                 f"Each precision's effect against {baseline} under every engine that measured it "
                 "(significant at p < 0.05, Welch):\n", "\n".join(f"- {line}" for line in signs) + "\n"]
    return text


def _markdown(title: Optional[str], inputs: List[Path], notes: List[str], configs: pd.DataFrame, t: Dict[str, Any],
              baseline: str, metric: str, warnings: List[str], figs: List[Path], rows: pd.DataFrame) -> str:
    """report.md from the tables ``t`` (comparisons, engine_comparisons, engine_signs, crossover, batch_scaling,
    roofline) and the raw ``rows`` of the inputs that have them (methods, cells that did not finish)."""
    comp, engines, signs, cross, batch, roof, costs = (t[k] for k in (
        "comparisons", "engine_comparisons", "engine_signs", "crossover", "batch_scaling", "roofline", "cost"))
    # several inputs: say which one each comparison's treatment came from (its baseline is that input's
    # own where it has one)
    by_source = ["source"] if configs.source.nunique() > 1 else []
    by_axis = ["engine"] if configs.engine.nunique() > 1 else []
    # the axes that vary besides hardware, model, quantization and batch (engine; plain and planted weights)
    by_axis += [k for k in ("weights", "gpu_count") if k in configs and configs[k].nunique() > 1]
    text = [f"# {title or 'ecosweep report'}\n", "Inputs:\n"] + [f"- `{p}`" for p in inputs] + [""] + notes
    text += ["## Configurations\n", "Mean, sd, n and t-based 95 % CI; a bootstrap CI where raw repetitions exist.\n",
             _md(configs, ["source", "hardware", "model", "quantization", *by_axis, "batch_size", "n", f"{metric}_mean",
                           f"{metric}_sd", f"{metric}_cv_pct", f"{metric}_ci_low", f"{metric}_ci_high",
                           f"{metric}_boot_low", f"{metric}_boot_high", "tok_s_mean", "power_w_mean"])]
    text += [f"## Comparisons against {baseline} ({metric})\n",
             "Δ% of means with a 95 % CI (delta method), Welch's t (df, two-sided p), Cohen's d with pooled "
             "sd sqrt((s1²+s2²)/2), Hedges' g, Holm–Bonferroni adjusted p over all comparisons below; "
             "same_device: both sides ran on one physical GPU (blank where unknown: CPU cells, summary tables).\n",
             _md(comp, [*by_source, "hardware", "model", *by_axis, "batch_size", "quantization",
                     "baseline_mean", "mean",
                        "delta_pct", "delta_pct_ci_low", "delta_pct_ci_high", "t", "df", "p", "p_holm", "cohens_d",
                        "hedges_g", "same_device"])]
    text += _engine_sections(engines, t["best_engine"], signs, baseline, metric)
    text += ["## Crossover (Δ% = a + b·ln(parameters))\n",
             _md(cross, ["hardware", "quantization",
                     *[k for k in ("engine", "batch_size", "input_tokens", "output_tokens")
                       if k in cross and cross[k].nunique(dropna=False) > 1],
                         "points", "slope_pct_per_log_param", "crossover_params_b",
                         "crossover_ci_low_b", "crossover_ci_high_b", "verdict"])]
    text += ["## Batch scaling (relative to batch 1)\n",
             _md(batch, [*by_source, "hardware", "model", "quantization", *by_axis, "batch_size",
                     "energy_j_per_request",
                         "energy_per_request_change_pct", "tok_s", "speedup", "scaling_efficiency", "same_device"])]
    text += ["## Roofline context (decode)\n",
             "Ceiling = batch × peak memory bandwidth ÷ weight bytes read per decode step; achieved bandwidth = "
             "weight bytes × measured decode steps per second (the KV cache's reads not counted).\n",
             _md(roof, ["hardware", "model", "quantization", *by_axis, "batch_size", "weight_gb", "peak_bandwidth_gb_s",
                        "achieved_bandwidth_gb_s", "decode_ceiling_tok_s", "decode_tok_s", "fraction_of_ceiling"])]
    columns = [*by_source, "hardware", "model", "quantization", *by_axis, "batch_size"]
    text += _int8_gap_section(t["int8_gap"], t["int8_kernel_gap"], columns, metric)
    text += _fidelity_section(configs, comp, metric, columns) + _profile_section(configs, columns)
    text += _decision_section(t["decision"], by_source, by_axis)
    text += _cost_section(costs, columns)
    text += t.get("served_lines", [])
    text += _unfinished_section(rows)
    text += ["## Methods\n", _methods(rows)]
    text += time_use_section(inputs)
    text += ["## Warnings\n", "\n".join(f"- {w}" for w in warnings) + "\n" if warnings else "_none_\n"]
    missing = figures.missing_panels(configs)
    text += ["## Figures\n"] + [f"![{p.stem}](figures/{p.name})" for p in figs if p.suffix == ".png"]
    text += ([""] + [f"- {note}" for note in missing] if missing else []) + [""]
    return "\n".join(text)


def _served_only_report(title: Optional[str], inputs: List[Path], out_dir: Path, rows: pd.DataFrame,
                        served_lines: List[str], served_tables: Dict[str, pd.DataFrame], cost_settings: ReportConfig,
                        metric: str) -> Path:
    """report.md of inputs that hold served cells only: their section, methods, time use and figures."""
    figs = _write_figures(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), cost_settings, out_dir / "figures", metric,
                          served_tables["serving"])
    for name, df in served_tables.items():
        if not df.empty:
            df.to_csv(out_dir / f"{name}.csv", index=False)
    text = [f"# {title or 'ecosweep report'}\n", "Inputs:\n"] + [f"- `{p}`" for p in inputs] + [""]
    text += served_lines + _unfinished_section(rows) + ["## Methods\n", _methods(rows)] + time_use_section(inputs)
    text += ["## Figures\n"] + [f"![{p.stem}](figures/{p.name})" for p in figs if p.suffix == ".png"] + [""]
    path = out_dir / "report.md"
    path.write_text("\n".join(text))
    return path


def build_report(inputs: Iterable[str | Path], out_dir: str | Path, baseline: str = "fp16",
                 metric: str = "energy_j_per_1k_tok", title: Optional[str] = None,
                 cost_settings: Optional[ReportConfig] = None) -> Path:
    """report.md, figures/ and the CSV tables in ``out_dir``; raises EcosweepError (writing nothing) when no
    input holds a usable result. ``cost_settings``: carbon and money (default: the documented defaults)."""
    cost_settings = cost_settings or ReportConfig()
    inputs = [Path(p) for p in inputs]
    out_dir = Path(out_dir)
    damaged: List[Any] = []
    raw = read_raw_inputs(inputs, damaged)
    configs = load_inputs(inputs, damaged, raw=raw)
    rows = pd.concat(raw.values(), ignore_index=True) if raw else pd.DataFrame()
    served_lines, served_tables = serving.serving_section(rows, configs, _md)
    if configs.empty and not served_tables:
        left_out = "".join(f" {d.path} is damaged ({d.reason})." for d in damaged)
        raise EcosweepError(f"no usable results in {', '.join(map(str, inputs))}: no successful repetition and no "
                            f"summary table row.{left_out} Nothing was written.")
    unwritable = writable_folder_problem(out_dir, "--out") or (
        writable_folder_problem(out_dir / "figures", "--out") if (out_dir / "figures").exists() else None)
    if unwritable:
        raise EcosweepError(f"the report cannot be written: {unwritable} Nothing was written.")
    for d in damaged:  # said on the console too, not only inside report.md
        print(f"WARNING: {d.path} could not be read ({d.reason}); it is left out of the report.", file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    served_table = served_tables.get("serving", pd.DataFrame())
    if configs.empty:  # served cells only
        return _served_only_report(title, inputs, out_dir, rows, served_lines, served_tables, cost_settings, metric)
    metric, baseline, notes = _metric_and_baseline(configs, metric, baseline)
    comp = comparisons(configs, baseline, metric)
    t = {"comparisons": comp, "engine_comparisons": engine_comparisons(configs, metric=metric),
         "best_engine": best_engine_comparisons(configs, baseline, metric),
         "engine_signs": engine_sign_findings(comp), "crossover": crossover(comp),
         "batch_scaling": batch_scaling(configs), "roofline": roofline(configs),
         "cost": cost.cost_table(configs, cost_settings), "decision": decision.decision_table(configs),
         "int8_gap": _int8_gap(configs, metric), "int8_kernel_gap": kernel_gap(configs, "int8", "int8_pure")}
    warnings = [f"Damaged: {d.path} could not be read ({d.reason}) and is left out of this report. Run the "
                "command that measured its study again: it moves the file to damaged/ and measures the cell again "
                "(`dry_run=true` lists it as damaged)." for d in damaged]
    warnings += warnings_for(configs, comp=comp, batch=t["batch_scaling"])
    figs = _write_figures(configs, comp, t["cost"], cost_settings, out_dir / "figures", metric, served_table)
    t["served_lines"] = served_lines
    csv_tables = {"configurations": configs.drop(columns=[c for c in configs.columns if c.endswith("_values")],
                                                 errors="ignore"),
                  **{k: t[k] for k in ("comparisons", "engine_comparisons", "crossover", "batch_scaling", "roofline",
                                       "cost", "decision")}}
    for optional in ("int8_gap", "int8_kernel_gap", "best_engine"):
        if not t[optional].empty:
            csv_tables[optional] = t[optional]
    csv_tables.update({name: df for name, df in served_tables.items() if not df.empty})
    for name, df in csv_tables.items():
        df.to_csv(out_dir / f"{name}.csv", index=False)
    path = out_dir / "report.md"
    path.write_text(_markdown(title, inputs, notes, configs, t, baseline, metric, warnings, figs, rows))
    return path


def report_study_folders(roots: List[Path], settings: Optional[ReportConfig]) -> None:
    """The end-of-study report, in the report/ folder of each study folder (where
    ``python -m ecosweep report <study>`` writes it too), with the study's ``report.*`` settings."""
    for root in roots:
        if (root / "cells").is_dir():
            try:
                path = build_report([root], root / "report", title=f"Study {root.name}", cost_settings=settings)
            except EcosweepError as exc:  # e.g. every cell failed: nothing to report on
                print(f"No report for {root.name}: {exc}")
                continue
            print(f"Report: {path}")
