"""``python -m ecosweep mlflow-backfill STUDY_DIR... [--uri URI]``: mirror stored Parquet results into MLflow."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ecosweep.tracking.mlflow_tracker import backfill

EXIT_BAD_INPUT = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("mlflow-backfill", help="mirror stored results into MLflow",
                                   description="Mirror stored Parquet results into MLflow (idempotent).")
    parser.add_argument("study_dirs", nargs="+", type=Path, help="study folders, e.g. outputs/smoke")
    parser.add_argument("--uri", default=None, help="tracking URI (default: sqlite under the study's output root)")
    parser.add_argument("--experiment", default=None,
                        help="MLflow experiment name (default: the study's name), e.g. int8_paradox-h100")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.experiment and len(args.study_dirs) > 1:
        print("ecosweep mlflow-backfill: --experiment names one experiment: give one study folder with it",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        backfill(args.study_dirs, args.uri, experiment=args.experiment)
    except FileNotFoundError as exc:
        print(f"ecosweep mlflow-backfill: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0
