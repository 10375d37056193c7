"""Where a study's results live on disk, and atomic Parquet writes.

Layout under ``<output_root>/<study>/``::

    cells/<cell_id>.parquet     one row per repetition (or one failure row)
    traces/<cell_id>.parquet    the cell's power/utilisation trace (GPU cells)
    traces/<cell_id>.profile.json.gz  the profiled call's PyTorch profiler trace (profile=true; Perfetto)
    traces/<cell_id>.kernels.csv      its distinct kernels, the op that launched each, and their classes
    requests/<cell_id>.parquet  scenario=serving: one row per request of every repetition (latencies, status)
    configs/<cell_id>.yaml      the cell's resolved config
    timings/<cell_id>.json      where the cell's wall time went (actor start, load, warm-up, ...)
    timings/<cell_id>.profile.txt  profile_process=true: cProfile's top functions of the cell's process
    runs/<run_id>.json          where one invocation's wall time went around the cells (Ray start, report, ...)
    report/                     report.md, figures/ and CSV tables, written at the end of a study

Only the Ray driver writes here. Every file is written to a temporary name in the
same folder, flushed to disk and renamed over its final name, so a killed driver
leaves either the old file, the new file, or a stray ``.tmp`` file that readers
ignore, never a truncated Parquet file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from ecosweep.errors import EcosweepError
from ecosweep.results.schema import SCHEMA
from ecosweep.results.upgrade import renamed_columns, stored_variant, upgrade_rows


class DamagedResultError(EcosweepError):
    """A result file that cannot be read (truncated, not Parquet, wrong schema)."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path} is damaged ({reason})")


def read_cell_table(path: Path, columns: Optional[List[str]] = None) -> pa.Table:
    """Read one cell file, or raise DamagedResultError naming it and why it cannot be read."""
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DamagedResultError(path, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}") from exc
    missing = {"cell_id", "status"} - set(pq.read_schema(path).names)
    if missing:
        raise DamagedResultError(path, f"not a results file: no {', '.join(sorted(missing))} column")
    return table


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a result file is as readable as any other
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_parquet(path: Path, table: pa.Table) -> None:
    """Write ``table`` to ``path`` so that readers never see a partial file."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def _write_json(path: Path, obj: dict) -> Path:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())
    return path


class StudyStore:
    """The files of one study under the output root."""

    def __init__(self, output_root: str | os.PathLike, study: str):
        self.root = Path(output_root).expanduser().resolve() / study
        self.cells_dir = self.root / "cells"
        self.traces_dir = self.root / "traces"
        self.configs_dir = self.root / "configs"
        self.timings_dir = self.root / "timings"
        self.runs_dir = self.root / "runs"
        self.requests_dir = self.root / "requests"

    def cell_path(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.parquet"

    def trace_path(self, cell_id: str) -> Path:
        return self.traces_dir / f"{cell_id}.parquet"

    def profile_trace_path(self, cell_id: str) -> Path:
        return self.traces_dir / profile_trace_name(cell_id)

    def kernel_table_path(self, cell_id: str) -> Path:
        return self.traces_dir / f"{cell_id}.kernels.csv"

    def requests_path(self, cell_id: str) -> Path:
        return self.requests_dir / f"{cell_id}.parquet"

    def trace_files(self, cell_id: str) -> List[Path]:
        """Where a cell's traces go, in one order (power trace, profiler trace, kernel table, a served cell's
        requests): each may be absent."""
        return [self.trace_path(cell_id), self.profile_trace_path(cell_id), self.kernel_table_path(cell_id),
                self.requests_path(cell_id)]

    def config_path(self, cell_id: str) -> Path:
        return self.configs_dir / f"{cell_id}.yaml"

    def cell_statuses(self, cell_id: str) -> Optional[List[str]]:
        """The status of each stored row of a cell, or None when the cell has no file."""
        path = self.cell_path(cell_id)
        if not path.exists():
            return None
        return read_cell_table(path, columns=["status"]).column("status").to_pylist()

    def cell_devices(self, cell_id: str) -> List[Optional[str]]:
        """The distinct GPU UUIDs of a cell's rows (None for CPU rows); [] when it has no file."""
        path = self.cell_path(cell_id)
        if not path.exists():
            return []
        table = read_cell_table(path)
        if "gpu_uuid" not in table.column_names:
            return [None]
        return sorted(set(table.column("gpu_uuid").to_pylist()), key=lambda d: d or "")

    def is_complete(self, cell_id: str, retry_failed: bool = True) -> bool:
        """A cell is complete when its file exists and (with retry_failed) every row is ok."""
        statuses = self.cell_statuses(cell_id)
        if not statuses:
            return False
        return all(s == "ok" for s in statuses) or not retry_failed

    def write_cell(self, cell_id: str, table: pa.Table) -> Path:
        path = self.cell_path(cell_id)
        atomic_write_parquet(path, table)
        return path

    def write_trace(self, cell_id: str, table: pa.Table) -> Path:
        path = self.trace_path(cell_id)
        atomic_write_parquet(path, table)
        return path

    def write_requests(self, cell_id: str, table: pa.Table) -> Path:
        """A served cell's requests, one row each (``measure.serving_stats.RequestRecord.columns``)."""
        path = self.requests_path(cell_id)
        atomic_write_parquet(path, table)
        return path

    def write_profile(self, cell_id: str, gzipped_json: Optional[bytes], kernels_csv: Optional[str]) -> None:
        """The profiled call's trace and kernel table (profile=true), each when present."""
        if gzipped_json is not None:
            atomic_write_bytes(self.profile_trace_path(cell_id), gzipped_json)
        if kernels_csv is not None:
            atomic_write_bytes(self.kernel_table_path(cell_id), kernels_csv.encode())

    def write_timing(self, cell_id: str, timing: dict) -> Path:
        return _write_json(self.timing_path(cell_id), timing)

    def process_profile_path(self, cell_id: str) -> Path:
        return self.timing_path(cell_id).with_suffix(".profile.txt")

    def write_process_profile(self, cell_id: str, table: Optional[str]) -> None:
        """The cell process's cProfile table (profile_process=true), when there is one."""
        if table is not None:
            atomic_write_bytes(self.process_profile_path(cell_id), table.encode())

    def write_run_timing(self, run_id: str, timing: dict) -> Path:
        return _write_json(self.runs_dir / f"{run_id}.json", timing)

    def write_config(self, cell_id: str, yaml_text: str) -> Path:
        path = self.config_path(cell_id)
        atomic_write_bytes(path, yaml_text.encode())
        return path

    def is_damaged(self, cell_id: str) -> Optional[str]:
        """Why the cell's stored file cannot be read, or None when it can (or does not exist)."""
        try:
            self.cell_statuses(cell_id)
        except DamagedResultError as exc:
            return exc.reason
        return None

    def quarantine(self, cell_id: str, reason: str) -> Path:
        """Move a damaged cell file to ``damaged/`` (never deleted: it may be recoverable) and return
        where it went; the cell is then missing, so the run measures it again."""
        import time

        target = self.root / "damaged" / f"{cell_id}.{time.strftime('%Y%m%dT%H%M%S')}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.cell_path(cell_id), target)
        (target.parent / f"{target.name}.reason.txt").write_text(reason + "\n")
        return target

    def timing_path(self, cell_id: str) -> Path:
        return self.timings_dir / f"{cell_id}.json"

    def adopt_cell(self, source: "StudyStore", cell_id: str, study: str, config_yaml: str) -> Path:
        """Copy a cell that another study measured into this study, as if measured here.

        Same cell id means same measured identity (model, weights, precision, shapes, hardware
        profile, protocol), so the repetitions are this study's too. The rows get this ``study``; their
        ``run_id``, timestamps and environment columns stay, so a reader can tell that two studies share
        them. The trace is copied as is, the timing gains ``reused_from``, the config is this study's. Rows
        are written last: a crash midway leaves the cell incomplete.
        """
        rows = _with_column(read_cell_table(source.cell_path(cell_id)), "study", study)
        self.write_config(cell_id, config_yaml)
        for theirs, ours in zip(source.trace_files(cell_id), self.trace_files(cell_id)):
            if theirs.exists():
                atomic_write_bytes(ours, theirs.read_bytes())
        timing = {}
        if source.timing_path(cell_id).exists():
            timing = json.loads(source.timing_path(cell_id).read_text())
        timing.update(reused_from=source.root.name, cell_id=cell_id)
        self.write_timing(cell_id, timing)
        return self.write_cell(cell_id, rows)

    def rename_cell(self, old_id: str, new_id: str) -> None:
        """Give a stored cell another id (``ecosweep.migrate``: an older version's id -> its id): files renamed,
        the rows' and timing's ``cell_id`` rewritten. The rows go last, so a crash midway leaves the old rows, and
        renaming again finishes the job."""
        for old, new in zip([self.config_path(old_id), *self.trace_files(old_id)],
                            [self.config_path(new_id), *self.trace_files(new_id)]):
            if old.exists():
                os.replace(old, new)
        if self.timing_path(old_id).exists():
            timing = json.loads(self.timing_path(old_id).read_text())
            self.write_timing(new_id, {**timing, "cell_id": new_id, "renamed_from": old_id})
            self.timing_path(old_id).unlink()
        self.write_cell(new_id, _with_column(read_cell_table(self.cell_path(old_id)), "cell_id", new_id))
        self.cell_path(old_id).unlink()


def profile_trace_name(cell_id: str) -> str:
    """The file name of a cell's profiler trace in its study's traces/ folder."""
    return f"{cell_id}.profile.json.gz"


def _with_column(table: pa.Table, name: str, value: str) -> pa.Table:
    """``table`` with every row's ``name`` set to ``value``."""
    field = table.schema.field(name)
    return table.set_column(table.schema.get_field_index(name), field,
            pa.array([value] * table.num_rows, type=field.type))


def read_results(paths: Iterable[str | os.PathLike], damaged: Optional[List[DamagedResultError]] = None) -> pa.Table:
    """Read result files or folders (a study folder, its cells/ folder, or files) into one table.

    Every file is read with its own schema and cast onto the current SCHEMA (columns a
    file lacks become null), so folders written by older versions still combine. A damaged
    file raises DamagedResultError, or, when a ``damaged`` list is given, is left out and
    recorded there.
    """
    files: List[Path] = []
    for p in paths:
        p = Path(p).expanduser()
        if p.is_dir():
            sub = p / "cells" if (p / "cells").is_dir() else p
            files += sorted(f for f in sub.glob("*.parquet") if not f.name.startswith("."))
        elif p.suffix == ".parquet":
            files.append(p)
        else:
            raise FileNotFoundError(f"not a results folder or Parquet file: {p}")
    tables = []
    for f in files:
        try:
            t = renamed_columns(read_cell_table(f))
        except DamagedResultError as exc:
            if damaged is None:
                raise
            damaged.append(exc)
            continue
        for field in SCHEMA:
            if field.name not in t.column_names:
                t = t.append_column(field, pa.nulls(t.num_rows, field.type))
        tables.append(upgrade_rows(t.select(SCHEMA.names).cast(SCHEMA), stored_variant(f.parent.parent / "configs")))
    if not tables:
        return SCHEMA.empty_table()
    return pa.concat_tables(tables)
