"""The command line, one module per subcommand (lm-evaluation-harness's ``_cli/`` is the model).

* ``python -m ecosweep [--wait] [-m] [overrides]``: a study, composed by Hydra (:mod:`ecosweep.cli.run`);
* ``python -m ecosweep report PATH...``: statistics, figures, report.md (:mod:`ecosweep.cli.report`);
* ``python -m ecosweep settings [PREFIX] [overrides]``: every setting with its value and help;
* ``python -m ecosweep mlflow-backfill STUDY_DIR...``: mirror stored Parquet results into MLflow;
* ``python -m ecosweep migrate STUDY_DIR...``: cells stored under an older version's ids renamed to this one's.

The subcommands are argparse subparsers; anything else is the study command, whose arguments are Hydra's.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from ecosweep.cli import backfill, migrate, report, run, settings

SUBCOMMANDS = {"report": report, "settings": settings, "mlflow-backfill": backfill, "migrate": migrate}


def parser() -> argparse.ArgumentParser:
    """The subcommands' parser (the study command is Hydra's: ``python -m ecosweep --help``)."""
    ap = argparse.ArgumentParser(prog="python -m ecosweep")
    subparsers = ap.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS.values():
        module.add_parser(subparsers)
    return ap


def main(argv: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        args = parser().parse_args(argv)
        sys.exit(args.func(args))
    sys.exit(run.main(argv))
