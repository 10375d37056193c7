#!/usr/bin/env bash
# Rebuild every committed report from its committed inputs (after a change to the analysis), in the
# repository root: each report's "Inputs:" list is the command's input list, its folder the --out.
set -euo pipefail
cd "$(dirname "$0")/.."
find experiments -path '*/report/report.md' | sort | while read -r report; do
  mapfile -t inputs < <(sed -n '/^Inputs:/,/^## /p' "$report" | sed -n 's/^- `\(.*\)`$/\1/p')
  .venv/bin/python -m ecosweep report "${inputs[@]}" --out "$(dirname "$report")" > /dev/null
  echo "rebuilt $(dirname "$report") from ${inputs[*]}"
done
