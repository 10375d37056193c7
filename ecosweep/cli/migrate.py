"""``python -m ecosweep migrate STUDY_DIR...``: rename cells that an older ecosweep stored under other ids to this
version's ids (``ecosweep.migrate``), so that a study command finds them done instead of measuring them again."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ecosweep.migrate import migrate_study, unmigrated_cells

EXIT_BAD_INPUT = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("migrate", help="rename cells stored under an older version's ids",
                                   description="Rename the cells of study folders stored under the ids an older "
                                               "ecosweep gave them to this version's ids (idempotent).")
    parser.add_argument("study_dirs", nargs="+", type=Path, help="study folders, e.g. outputs/int8_paradox")
    parser.add_argument("--dry-run", action="store_true", help="list what would be renamed, rename nothing")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    missing = [str(d) for d in args.study_dirs if not (d / "configs").is_dir()]
    if missing:
        print(f"ecosweep migrate: not a study folder (no configs/ inside): {', '.join(missing)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for study in args.study_dirs:
        if args.dry_run:
            pending = unmigrated_cells(study)
            print(f"{study}: {len(pending)} cell(s) to rename" + "".join(f"\n  {old} -> {new} ({rule})"
                                                                         for old, new, rule in pending))
            continue
        renamed = migrate_study(study)
        print(f"{study}: renamed {len(renamed)} cell(s)" + "".join(f"\n  {old} -> {new}" for old, new in renamed))
    return 0
