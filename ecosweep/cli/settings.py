"""``python -m ecosweep settings [PREFIX] [overrides]``: every setting with its value after the overrides, its help
and, for a setting of choices, each choice with what it does."""

from __future__ import annotations

import argparse
import sys

from ecosweep.config.suggest import command_line_problems, prefix_problem, settings_table

EXIT_BAD_INPUT = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("settings", help="every setting, its value and help",
                                   description="Every setting with its value and help (after the overrides given).")
    parser.add_argument("prefix", nargs="?", default="", help="only settings starting with this, e.g. measurement.")
    parser.add_argument("overrides", nargs="*", help="overrides as on the study command line, e.g. measurement=short")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    prefix, overrides = ("", [args.prefix, *args.overrides]) if "=" in args.prefix else (args.prefix, args.overrides)
    problems = [p for p in [prefix_problem(prefix)] if p] + command_line_problems(overrides)
    if problems:
        print("ecosweep settings: " + " ".join(problems), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(settings_table(overrides, prefix))
    return 0
