"""Results schema, atomic Parquet writes, completeness and schema unification on read."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecosweep.results.schema import COLUMN_NAMES, COLUMNS, SCHEMA, requests_to_table, rows_to_table
from ecosweep.results.store import StudyStore, atomic_write_parquet, read_results

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_numeric_column_names_its_unit_or_what_it_counts():
    units = {"j", "w", "s", "pct", "mib", "mhz", "c", "b", "tok", "1m", "share", "request", "token", "count",
             "calls", "tokens", "size", "threshold", "generated", "sd", "nats", "logit", "ppl", "cols", "ms", "rps",
             "requests", "level"}
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
    """The README's column table is the schema's, row for row (regenerate it with column_table_markdown())."""
    from ecosweep.results.schema import column_table_markdown

    text = README.read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, flags=re.M))
    missing = [c for c in COLUMN_NAMES if c not in documented]
    assert not missing, f"README column table lacks: {missing}"
    assert column_table_markdown() in text, "the README's column table differs from the schema's docs"


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


def _stored_cell(store: StudyStore, cell_id: str, statuses, run_id: str = "r1") -> None:
    rows = [{"study": store.root.name, "cell_id": cell_id, "run_id": run_id, "repetition": i, "status": s,
             "tok_s": 10.0 + i} for i, s in enumerate(statuses)]
    store.write_config(cell_id, f"study: {store.root.name}\n")
    store.write_trace(cell_id, pa.table({"t_unix_s": [0.0, 0.1], "power_w": [100.0, 101.0]}))
    store.write_timing(cell_id, {"cell_id": cell_id, "load_s": 2.5})
    store.write_cell(cell_id, rows_to_table(rows))


def test_adopted_cell_belongs_to_the_new_study_and_keeps_its_measurement(tmp_path):
    source, target = StudyStore(tmp_path, "int8_paradox"), StudyStore(tmp_path, "int8_ablation")
    _stored_cell(source, "abc", ["ok", "ok", "ok"], run_id="run42")
    target.adopt_cell(source, "abc", "int8_ablation", "study: int8_ablation\n")
    rows = read_results([target.root]).to_pandas()
    assert list(rows.study.unique()) == ["int8_ablation"]
    assert list(rows.run_id.unique()) == ["run42"]  # the shared measurement stays recognisable
    assert rows.tok_s.tolist() == [10.0, 11.0, 12.0]
    assert target.config_path("abc").read_text() == "study: int8_ablation\n"
    assert target.trace_path("abc").read_bytes() == source.trace_path("abc").read_bytes()
    timing = json.loads(target.timing_path("abc").read_text())
    assert timing == {"cell_id": "abc", "load_s": 2.5, "reused_from": "int8_paradox"}
    assert target.is_complete("abc")
    # the source is untouched
    assert list(read_results([source.root]).to_pandas().study.unique()) == ["int8_paradox"]


def test_only_complete_ok_cells_of_other_studies_are_found_for_reuse(tmp_path):
    from ecosweep.cells import Cell, to_settings
    from ecosweep.plan import measured_by_another_study

    from conftest import compose

    settings = to_settings(compose([f"output_root={tmp_path}", "study=mine", "hardware=cpu"]))
    cell = Cell(id="abc", settings=settings)
    assert measured_by_another_study(cell) is None  # no output root yet
    _stored_cell(StudyStore(tmp_path, "mine"), "abc", ["ok"])  # its own study does not count
    _stored_cell(StudyStore(tmp_path, "a_failed"), "abc", ["failed"])
    _stored_cell(StudyStore(tmp_path, "b_other_cell"), "xyz", ["ok"])
    assert measured_by_another_study(cell) is None
    _stored_cell(StudyStore(tmp_path, "c_good"), "abc", ["ok", "ok"])
    found = measured_by_another_study(cell)
    assert found is not None and found.root.name == "c_good"


def test_a_profiled_cells_traces_travel_with_it_when_adopted_under_a_new_id_and_when_renamed(tmp_path):
    """Power trace, profiler trace, kernel table and a served cell's requests: copied on reuse and renamed with the
    cell (migrate), each under the new id."""
    source, target = StudyStore(tmp_path, "kernel_profile"), StudyStore(tmp_path, "other")
    _stored_cell(source, "old", ["ok"])
    source.write_profile("old", b"gzipped trace", "kernel,op\nk,aten::mm\n")
    source.write_requests("old", requests_to_table([{"repetition": 0, "request_id": "req00000", "status": "completed"}]))
    target.adopt_cell(source, "old", "other", "study: other\n")
    assert [p.relative_to(target.root).as_posix() for p in target.trace_files("old") if p.exists()] == [
        "traces/old.parquet", "traces/old.profile.json.gz", "traces/old.kernels.csv", "requests/old.parquet"]
    assert target.profile_trace_path("old").read_bytes() == b"gzipped trace"
    assert pq.read_table(target.requests_path("old")).column("request_id").to_pylist() == ["req00000"]
    source.rename_cell("old", "renamed")
    assert [p.exists() for p in source.trace_files("renamed")] == [True, True, True, True]
    assert not any(p.exists() for p in source.trace_files("old"))
    assert source.kernel_table_path("renamed").read_text() == "kernel,op\nk,aten::mm\n"
