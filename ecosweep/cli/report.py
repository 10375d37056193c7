"""``python -m ecosweep report PATH... [--out DIR] [--baseline fp16]``: statistics, figures and report.md for result
folders and summary tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ecosweep.analysis.report import build_report
from ecosweep.config.schema import ReportConfig
from ecosweep.config.validate import cost_settings_problems
from ecosweep.errors import EcosweepError

EXIT_BAD_INPUT = 2
COST_SETTINGS = (("grid_gco2e_per_kwh", "grid carbon intensity, g CO2e per kWh"),
                 ("pue", "data-centre power usage effectiveness, >= 1"),
                 ("usd_per_kwh", "electricity price, US$ per kWh"),
                 ("usd_per_gpu_hour", "price of one GPU for one hour, US$"))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    ap = subparsers.add_parser("report", help="statistics, figures, report.md",
                               description="Statistics, figures and report.md for result folders and summary tables.")
    ap.add_argument("inputs", nargs="+", type=Path, help="study folders, Parquet files, summary CSV/Parquet tables")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: report/ beside the first input, e.g. outputs/my_study/report)")
    ap.add_argument("--baseline", default="fp16", help="baseline quantization for comparisons (default fp16)")
    ap.add_argument("--metric", default="energy_j_per_1k_tok", help="metric compared (default energy_j_per_1k_tok)")
    defaults = ReportConfig()
    for key, help_text in COST_SETTINGS:
        ap.add_argument("--" + key.replace("_", "-"), dest=key, type=float, default=getattr(defaults, key),
                        help=f"{help_text} (default {getattr(defaults, key):g}; sources in the README)")
    ap.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    settings = ReportConfig(args.grid_gco2e_per_kwh, args.pue, args.usd_per_kwh, args.usd_per_gpu_hour)
    problems = cost_settings_problems(settings, name=lambda key: "--" + key.replace("_", "-"))
    if problems:
        print("ecosweep report: " + " ".join(problems) + " Nothing was written.", file=sys.stderr)
        return EXIT_BAD_INPUT
    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        print(f"ecosweep report: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    first = args.inputs[0]
    out = args.out or ((first if first.is_dir() else first.parent) / "report")
    try:
        path = build_report(args.inputs, out, args.baseline, args.metric, cost_settings=settings)
    except EcosweepError as exc:
        print(f"ecosweep report: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"Report: {path}")
    return 0
