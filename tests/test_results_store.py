"""Results schema, atomic Parquet writes, completeness and schema unification on read."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecosweep.results.schema import COLUMN_NAMES, COLUMNS, SCHEMA, rows_to_table
from ecosweep.results.store import StudyStore, atomic_write_parquet, read_results

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_numeric_column_names_its_unit_or_what_it_counts():
    units = {"j", "w", "s", "pct", "mb", "mhz", "c", "b", "tok", "1m", "share", "request", "token", "count",
             "calls", "tokens", "size", "threshold", "generated"}
    for c in COLUMNS:
        if pa.types.is_floating(c.type) or pa.types.is_integer(c.type):
            assert units & set(c.name.split("_")) or c.name in ("repetition", "samples", "seconds"), c.name


def test_rows_to_table_fills_missing_columns_with_null_and_rejects_unknown():
    t = rows_to_table([{"study": "s", "cell_id": "c", "status": "ok", "energy_j": float("nan")}])
    assert t.schema == SCHEMA
    assert t.column("model").to_pylist() == [None]
    assert math.isnan(t.column("energy_j").to_pylist()[0])
    with pytest.raises(KeyError, match="energy_kwh"):
        rows_to_table([{"energy_kwh": 1.0}])


def test_readme_documents_every_column():
    text = README.read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, flags=re.M))
    missing = [c for c in COLUMN_NAMES if c not in documented]
    assert not missing, f"README column table lacks: {missing}"


def test_atomic_write_leaves_no_partial_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "cells" / "abc.parquet"
    atomic_write_parquet(path, rows_to_table([{"study": "s", "cell_id": "abc", "status": "ok"}]))
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_parquet(path, rows_to_table([{"study": "s", "cell_id": "abc", "status": "failed"}]))
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["abc.parquet"]


def test_completeness_depends_on_status_and_retry_policy(tmp_path):
    store = StudyStore(tmp_path, "study")
    assert not store.is_complete("a")
    store.write_cell("a", rows_to_table([{"cell_id": "a", "status": "ok", "repetition": 0}]))
    store.write_cell("b", rows_to_table([{"cell_id": "b", "status": "oom"}]))
    assert store.is_complete("a")
    assert not store.is_complete("b", retry_failed=True)
    assert store.is_complete("b", retry_failed=False)


def test_read_results_unifies_files_written_with_an_older_schema(tmp_path):
    store = StudyStore(tmp_path, "study")
    store.write_cell("new", rows_to_table([{"cell_id": "new", "status": "ok", "energy_j": 5.0}]))
    old = pa.table({"cell_id": ["old"], "status": ["ok"], "tok_s": [12.5]})  # lacks most columns
    pq.write_table(old, store.cell_path("old"))
    (store.cells_dir / ".new.parquet.123.tmp").write_bytes(b"partial")  # a killed writer's leftover
    table = read_results([store.root])
    assert table.schema == SCHEMA
    df = table.to_pandas().set_index("cell_id")
    assert df.loc["old", "tok_s"] == 12.5 and math.isnan(df.loc["old", "energy_j"])
    assert df.loc["new", "energy_j"] == 5.0
