"""Print a study's cells as a GPU run left them (from its Parquet rows, no report): one line per model, engine,
precision and batch size with status, repetitions, mean tok/s, mean J per 1k tokens and the engine that ran.
The device scripts print it at the end of a call, so that a run is judged before its results are fetched.

    python3 experiments/device/summarize_cells.py outputs/h100x4/nf4_crossover
"""

from __future__ import annotations

import glob
import sys

import pandas as pd


def main(study: str) -> None:
    paths = glob.glob(f"{study}/cells/*.parquet")
    if not paths:
        print(f"no cells under {study}/cells")
        return
    rows = pd.concat(pd.read_parquet(p) for p in paths)
    pd.set_option("display.width", 200)
    print(rows.groupby(["model", "engine", "quantization", "batch_size"]).agg(
        status=("status", "first"), n=("tok_s", "count"), tok_s=("tok_s", "mean"),
        j_per_1k=("energy_j_per_1k_tok", "mean"), effective=("engine_effective", "first")).round(1).to_string())


if __name__ == "__main__":
    main(sys.argv[1])
