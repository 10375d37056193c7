"""report.md: tables, figures, methods and warnings for any mix of results and summary tables.

    python -m ecosweep report outputs/my_study experiments/published_rtx4090d/summary.csv --out reports/x

Also written at the end of every study into the study folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pandas as pd

from ecosweep.analysis import figures, tables
from ecosweep.errors import EcosweepError


def _md(df: pd.DataFrame, cols: List[str], floats: str = "{:.4g}") -> str:
    if df.empty:
        return "_none_\n"
    cols = [c for c in cols if c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df[cols].iterrows():
        cells = []
        for v in r:
            if v is None:
                cells.append("")
            elif isinstance(v, float):
                cells.append("" if v != v else floats.format(v))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _methods(inputs: List[Path]) -> str:
    from ecosweep.results.store import read_results

    dirs = [p for p in inputs if p.is_dir()]
    if not dirs:
        return "Summary tables only: see each table's own documentation for its protocol.\n"
    rows = read_results(dirs, damaged=[]).to_pandas()
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
                 "repetition repeats whole calls of the cell's engine until its window reaches the minimum; energy from the NVML "
                 "counter on the cell's own GPU (by UUID), idle baseline with the CUDA context alive.")
    return "\n".join(facts) + "\n"


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


def _write_figures(configs: pd.DataFrame, comp: pd.DataFrame, fig_dir: Path, metric: str) -> List[Path]:
    if not (f"{metric}_mean" in configs and configs[f"{metric}_mean"].notna().any()):
        return []
    return (figures.energy_by_model(configs, comp, fig_dir, metric) + figures.crossover_plot(comp, fig_dir)
            + figures.delta_vs_batch(comp, fig_dir) + figures.batch_panel(configs, fig_dir))


def _markdown(title: Optional[str], inputs: List[Path], notes: List[str], configs: pd.DataFrame, t: Dict[str, Any],
              baseline: str, metric: str, warnings: List[str], figs: List[Path]) -> str:
    """report.md from the tables ``t`` (comparisons, engine_comparisons, engine_signs, crossover, batch_scaling,
    roofline)."""
    comp, engines, signs, cross, batch, roof = (t[k] for k in ("comparisons", "engine_comparisons", "engine_signs",
                                                                "crossover", "batch_scaling", "roofline"))
    # several inputs: say which one each comparison's treatment came from (its baseline is that input's
    # own where it has one)
    by_source = ["source"] if configs.source.nunique() > 1 else []
    by_engine = ["engine"] if configs.engine.nunique() > 1 else []
    text = [f"# {title or 'ecosweep report'}\n", "Inputs:\n"] + [f"- `{p}`" for p in inputs] + [""] + notes
    text += ["## Configurations\n", "Mean, sd, n and t-based 95 % CI; a bootstrap CI where raw repetitions exist.\n",
             _md(configs, ["source", "hardware", "model", "quantization", *by_engine, "batch_size", "n", f"{metric}_mean",
                           f"{metric}_sd", f"{metric}_cv_pct", f"{metric}_ci_low", f"{metric}_ci_high",
                           f"{metric}_boot_low", f"{metric}_boot_high", "tok_s_mean", "power_w_mean"])]
    text += [f"## Comparisons against {baseline} ({metric})\n",
             "Δ% of means with a 95 % CI (delta method), Welch's t (df, two-sided p), Cohen's d with pooled "
             "sd sqrt((s1²+s2²)/2), Hedges' g, Holm–Bonferroni adjusted p over all comparisons below; "
             "same_device: both sides ran on one physical GPU (blank where unknown: CPU cells, summary tables).\n",
             _md(comp, [*by_source, "hardware", "model", *by_engine, "batch_size", "quantization", "baseline_mean", "mean",
                        "delta_pct", "delta_pct_ci_low", "delta_pct_ci_high", "t", "df", "p", "p_holm", "cohens_d",
                        "hedges_g", "same_device"])]
    if not engines.empty:
        text += [f"## Engines against {tables.DEFAULT_ENGINE} ({metric})\n",
                 "The same model, precision and batch decoded by another engine, against eager generate() "
                 "(Δ% with 95 % CI, Welch's p, Holm-adjusted p; tok_s_ratio: its throughput over eager's; "
                 "engine_effective: what actually ran).\n",
                 _md(engines, ["hardware", "model", "quantization", "batch_size", "engine", "engine_effective",
                               "baseline_mean", "mean", "delta_pct", "delta_pct_ci_low", "delta_pct_ci_high", "p",
                               "p_holm", "tok_s_ratio", "same_device"])]
    if signs:
        text += ["## Does the engine decide the sign?\n",
                 f"Each precision's effect against {baseline} under every engine that measured it "
                 "(significant at p < 0.05, Welch):\n", "\n".join(f"- {line}" for line in signs) + "\n"]
    text += ["## Crossover (Δ% = a + b·ln(parameters))\n",
             _md(cross, ["hardware", "quantization", *(["engine"] if not cross.empty and cross.engine.nunique() > 1 else []),
                         "points", "slope_pct_per_log_param", "crossover_params_b",
                         "crossover_ci_low_b", "crossover_ci_high_b", "verdict"])]
    text += ["## Batch scaling (relative to batch 1)\n",
             _md(batch, [*by_source, "hardware", "model", "quantization", *by_engine, "batch_size", "energy_j_per_request",
                         "energy_per_request_change_pct", "tok_s", "speedup", "scaling_efficiency", "same_device"])]
    text += ["## Roofline context (decode)\n",
             "Ceiling = batch × peak memory bandwidth ÷ weight bytes read per decode step.\n",
             _md(roof, ["hardware", "model", "quantization", *by_engine, "batch_size", "weight_gb", "peak_bandwidth_gb_s",
                        "decode_ceiling_tok_s", "decode_tok_s", "fraction_of_ceiling"])]
    text += ["## Methods\n", _methods(inputs)]
    text += ["## Warnings\n", "\n".join(f"- {w}" for w in warnings) + "\n" if warnings else "_none_\n"]
    text += ["## Figures\n"] + [f"![{p.stem}](figures/{p.name})" for p in figs if p.suffix == ".png"] + [""]
    return "\n".join(text)


def build_report(inputs: Iterable[str | Path], out_dir: str | Path, baseline: str = "fp16",
                 metric: str = "energy_j_per_1k_tok", title: Optional[str] = None) -> Path:
    """report.md, figures/ and the CSV tables in ``out_dir``; raises EcosweepError (writing nothing) when no
    input holds a usable result."""
    inputs = [Path(p) for p in inputs]
    out_dir = Path(out_dir)
    damaged: List[Any] = []
    configs = tables.load_inputs(inputs, damaged)
    if configs.empty:
        left_out = "".join(f" {d.path} is damaged ({d.reason})." for d in damaged)
        raise EcosweepError(f"no usable results in {', '.join(map(str, inputs))}: no successful repetition and no "
                            f"summary table row.{left_out} Nothing was written.")
    out_dir.mkdir(parents=True, exist_ok=True)
    metric, baseline, notes = _metric_and_baseline(configs, metric, baseline)
    comp = tables.comparisons(configs, baseline, metric)
    t = {"comparisons": comp, "engine_comparisons": tables.engine_comparisons(configs, metric=metric),
         "engine_signs": tables.engine_sign_findings(comp), "crossover": tables.crossover(comp),
         "batch_scaling": tables.batch_scaling(configs), "roofline": tables.roofline(configs)}
    warnings = [f"Damaged: {d.path} could not be read ({d.reason}) and is left out of this report. Run the "
                "command that measured its study again: it moves the file to damaged/ and measures the cell again "
                "(`dry_run=true` lists it as damaged)." for d in damaged]
    warnings += tables.warnings_for(configs, comp=comp, batch=t["batch_scaling"])
    figs = _write_figures(configs, comp, out_dir / "figures", metric)
    csv_tables = {"configurations": configs.drop(columns=[c for c in configs.columns if c.endswith("_values")],
                                                 errors="ignore"),
                  **{k: t[k] for k in ("comparisons", "engine_comparisons", "crossover", "batch_scaling", "roofline")}}
    for name, df in csv_tables.items():
        df.to_csv(out_dir / f"{name}.csv", index=False)
    path = out_dir / "report.md"
    path.write_text(_markdown(title, inputs, notes, configs, t, baseline, metric, warnings, figs))
    return path


def report_for_run(run: Any) -> None:
    """The end-of-study report, in the report/ folder of each study folder the run touched (where
    ``python -m ecosweep report <study>`` writes it too)."""
    from ecosweep.study import store_for

    for root in sorted({store_for(c).root for c in run.cells}):
        if (root / "cells").is_dir():
            try:
                path = build_report([root], root / "report", title=f"Study {root.name}")
            except EcosweepError as exc:  # e.g. every cell failed: nothing to report on
                print(f"No report for {root.name}: {exc}")
                continue
            print(f"Report: {path}")


def report_main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m ecosweep report",
                                 description="Statistics, figures and report.md for result folders and summary tables.")
    ap.add_argument("inputs", nargs="+", type=Path, help="study folders, Parquet files, summary CSV/Parquet tables")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: report/ beside the first input, e.g. outputs/my_study/report)")
    ap.add_argument("--baseline", default="fp16", help="baseline quantization for comparisons (default fp16)")
    ap.add_argument("--metric", default="energy_j_per_1k_tok", help="metric compared (default energy_j_per_1k_tok)")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        print(f"ecosweep report: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    first = args.inputs[0]
    out = args.out or ((first if first.is_dir() else first.parent) / "report")
    try:
        path = build_report(args.inputs, out, args.baseline, args.metric)
    except EcosweepError as exc:
        print(f"ecosweep report: {exc}", file=sys.stderr)
        return 2
    print(f"Report: {path}")
    return 0
