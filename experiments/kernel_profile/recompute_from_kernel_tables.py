"""Rebuild a kernel_profile study's ``profile_*`` columns from the kernel tables its cells recorded
(``traces/<cell_id>.kernels.csv``), with the current classification rules, and the study's ``kernel_names.csv``.

Why: the first complete H100 run (2026-11-28, torch 2.11) counted the profiler scopes that ecosweep opens around
attention, norm and bitsandbytes modules under the eager engine (``ecosweep::module::<class>``) as kernels: torch
2.11 draws each scope on the GPU's timeline too. They landed in ``unknown`` (35 ms per token for fp16 eager at
batch 1) and, spanning the kernels inside them, filled the idle gaps (idle share 0). ``records_from_trace`` now
leaves them out (device events flagged as scopes or named like a host event); the traces of that run were too
large to bring back, but
each cell's kernel table holds every distinct (kernel, launching op, scopes) with its count and total time, which
is what the columns are made of:

- the scope rows (a kernel named like a scope: ``ecosweep::module::...``) are dropped;
- the profiler's own host events (``kernel_profile.PROFILER_OVERHEAD``: Buffer Flush, Activity Buffer Request)
  leave the rows' scopes, and a row they were recorded as launching goes to the operator they interrupted (the
  innermost scope left), as ``records_from_trace`` now links them; rows that become alike are merged;
- every row is classified again (``kernel_profile.classify``);
- ``profile_ms_per_tok_<class>``, ``profile_kernels_per_tok`` and ``profile_unknown_kernels`` from the rows;
- ``profile_gpu_busy_share``: the summed kernel time / the call's measured latency. The profile takes the union
  of the kernels' intervals instead; the two are equal when kernels do not overlap (one stream), which this
  script checks on every cell without scope rows: it refuses to write unless their recorded busy share equals
  the summed time's to 1e-3;
- ``profile_wall_ms_per_tok``, ``profile_launches_per_tok`` and ``profile_trace_file`` are kept (the scopes
  did not touch them).

Nothing else in a row changes (the energy windows never saw the profiler).

    python experiments/kernel_profile/recompute_from_kernel_tables.py experiments/kernel_profile/h100x4_2026-11-28/kernel_profile
"""

from __future__ import annotations

import argparse
import glob
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ecosweep.profiling.rules import KernelRecord, classify
from ecosweep.profiling.summary import summarize
from ecosweep.profiling.trace import PROFILER_OVERHEAD
from ecosweep.results.schema import KERNEL_CLASSES
from ecosweep.results.store import atomic_write_parquet

SCOPE_PREFIX = "ecosweep::module::"


def _records(table: pd.DataFrame) -> list:
    """One KernelRecord per table row (duration: the row's total microseconds; no start time)."""
    within = table.within.fillna("").map(lambda w: tuple(w.split(" > ")) if w else ())
    return [KernelRecord(k, 0.0, float(t), op, w)
            for k, op, w, t in zip(table.kernel, table.op.fillna(""), within, table.total_us)]


def without_profiler_overhead(table: pd.DataFrame) -> pd.DataFrame:
    """The kernel table with the profiler's own host events out of every row's scopes and launcher."""
    within = table.within.fillna("").map(lambda w: [n for n in w.split(" > ") if n and not PROFILER_OVERHEAD.match(n)])
    op = table.op.fillna("")
    overhead = op.map(lambda o: bool(PROFILER_OVERHEAD.match(o)))
    fixed = table.assign(within=within.map(" > ".join),
                         op=[(w[-1] if w else "") if o else op_ for op_, o, w in zip(op, overhead, within)])
    return fixed.groupby(["kernel", "op", "within"], sort=False, as_index=False).agg(
        kernel_class=("kernel_class", "first"), count=("count", "sum"), total_us=("total_us", "sum"))


def recompute_cell(rows: pd.DataFrame, table: pd.DataFrame) -> tuple:
    """(the cell's rows with new profile columns, its kernel table without scope rows and classified again)."""
    scopes = table.kernel.str.startswith(SCOPE_PREFIX)
    kept = without_profiler_overhead(table[~scopes]).sort_values("total_us", ascending=False)
    records = _records(kept)
    kept["kernel_class"] = [classify(r) for r in records]
    first = rows.iloc[0]
    tokens = int(first.batch_size) * int(first.output_tokens)
    summary = summarize(records, "cuda", tokens, float(first.profile_wall_ms_per_tok) * tokens / 1e3,
                        round(float(first.profile_launches_per_tok) * tokens), first.profile_trace_file,
                        float(rows.latency_s_per_request.dropna().mean()))
    # a table row stands for `count` kernels and has no start times: the count and the busy time from its totals
    columns = replace(summary, kernels=int(kept["count"].sum()), busy_s=float(kept.total_us.sum()) / 1e6).columns()
    if not scopes.any():  # untouched by the bug: the recorded union must equal the summed time
        recorded, summed = float(first.profile_gpu_busy_share), columns["profile_gpu_busy_share"]
        if abs(recorded - summed) > 1e-3:
            raise SystemExit(f"cell {first.cell_id}: recorded busy share {recorded:.4f} is not the summed kernel "
                             f"time's {summed:.4f}: its kernels overlap, and the sum cannot stand in for the union")
    out = rows.copy()
    for column, value in columns.items():
        if column in out:
            out[column] = value
    return out, kept


def kernel_names(tables: dict) -> pd.DataFrame:
    """Every distinct (kernel, op, scopes, class) of the study, the cells it ran in and its summed time, most time
    first: the recorded names the classification's tests read."""
    names = pd.concat(t.assign(cell_id=c) for c, t in tables.items())
    return names.groupby(["kernel", "op", "within", "kernel_class"], dropna=False).agg(
        cells=("cell_id", "nunique"), total_us=("total_us", "sum")).reset_index().sort_values(
        "total_us", ascending=False)


def _own_metadata(table: pa.Table):
    """The file's schema metadata without the pandas block that a round trip through pandas adds (~40 kB a file)."""
    return {k: v for k, v in (table.schema.metadata or {}).items() if k != b"pandas"} or None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="a kernel_profile study folder (cells/, traces/)")
    args = parser.parse_args(argv)
    tables = {}
    for path in sorted(glob.glob(str(args.study / "cells" / "*.parquet"))):
        stored = pq.read_table(path)
        rows = stored.to_pandas()
        if rows.profile_trace_file.isna().all():
            continue
        cell_id = rows.cell_id.iloc[0]
        table_path = args.study / "traces" / f"{cell_id}.kernels.csv"
        new_rows, table = recompute_cell(rows, pd.read_csv(table_path))
        before = rows.iloc[0]
        after = new_rows.iloc[0]
        print(f"{cell_id} {before.quantization:9} {before.engine:5} bs{before.batch_size:<3} idle "
              f"{before.profile_gpu_idle_share:.3f} -> {after.profile_gpu_idle_share:.3f}, unknown ms/tok "
              f"{before.profile_ms_per_tok_unknown:.3f} -> {after.profile_ms_per_tok_unknown:.3f}, kernels/tok "
              f"{before.profile_kernels_per_tok:.1f} -> {after.profile_kernels_per_tok:.1f}")
        atomic_write_parquet(Path(path), pa.Table.from_pandas(
            new_rows, schema=stored.schema, preserve_index=False).replace_schema_metadata(_own_metadata(stored)))
        table.to_csv(table_path, index=False, lineterminator="\n")
        tables[cell_id] = table
    if not tables:
        sys.exit(f"no profiled cells under {args.study}/cells")
    kernel_names(tables).to_csv(args.study / "kernel_names.csv", index=False, lineterminator="\n")
    assert set(KERNEL_CLASSES) >= {c for t in tables.values() for c in t.kernel_class}


if __name__ == "__main__":
    main()
