"""Print studies' cells as a GPU run left them (from their Parquet rows, no report): one line per model, engine,
decode model, precision and batch size with status, repetitions, mean tok/s, power, J per 1k tokens and its
CV, the SM clock, what compiling took and the engine that ran. The device scripts print it at the end of a call,
so that a run is judged before its results are fetched.

    python3 experiments/device/summarize_cells.py outputs/h100x4/nf4_crossover [more study folders]
    python3 experiments/device/summarize_cells.py outputs/h200x1     (every study folder under it)
"""

from __future__ import annotations

import glob
import os
import sys

import pandas as pd


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.assign(decode_model=rows.get("decode_model", pd.Series(index=rows.index, dtype=object)).fillna("-"),
                       engine=rows.engine.fillna("eager"))
    spec = dict(status=("status", "first"), n=("tok_s", "count"), tok_s=("tok_s", "mean"),
                power_w=("power_w_mean", "mean"), j_per_1k=("energy_j_per_1k_tok", "mean"),
                cv_pct=("energy_j_per_1k_tok", lambda v: 100 * v.std() / v.mean() if len(v) > 1 else float("nan")),
                sm_mhz=("sm_clock_mhz_mean", "mean"), effective=("engine_effective", "first"))
    for column, name in (("compile_s", "compile_s"), ("compile_cache", "cache"), ("profile_matmul_kernel", "matmul")):
        if column in rows:
            spec[name] = (column, "first")
    keys = ["model", "engine", "decode_model", "quantization", "batch_size"]
    return rows.groupby(keys, dropna=False).agg(**spec).round(2)


def main(paths: list) -> None:
    studies = []
    for path in paths:
        studies += [path] if os.path.isdir(os.path.join(path, "cells")) else sorted(
            d for d in glob.glob(os.path.join(path, "*")) if os.path.isdir(os.path.join(d, "cells")))
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 40)
    for study in studies:
        files = glob.glob(f"{study}/cells/*.parquet")
        if not files:
            print(f"no cells under {study}/cells")
            continue
        rows = pd.concat(pd.read_parquet(p) for p in files)
        print(f"== {study}")
        print(summary(rows).to_string())
        failed = rows[rows.status != "ok"]
        for _, r in failed.iterrows():
            print(f"  {r.cell_id} {r.quantization} {r.engine}: {str(r.error).splitlines()[0][:300]}")


if __name__ == "__main__":
    main(sys.argv[1:])
