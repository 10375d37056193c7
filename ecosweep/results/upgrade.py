"""Rows written by older ecosweep versions, read as what they measured.

One place for what a reader must know about older files (columns they lack are added as null by
:func:`ecosweep.results.store.read_results`):

* before 2026-12-02 rows had no ``engine_kind``, and the engine then named ``compiled`` was transformers'
  static-cache ``generate()``, now ``hf_static`` (``engine=compiled`` is ecosweep's compiled loop since). Such
  rows are relabelled: ``engine`` hf_static, ``engine_kind`` hf_static, ``engine_effective`` hf_static_compiled
  where it said compiled;
* columns renamed since: memory in MiB was ``_mb`` until 2026-12-02 (``RENAMED_COLUMNS``);
* rows without ``engine_variant`` take their engine's name, except cells of the compiled engine written before
  the column existed (2026-12-02), which take it from their stored config (``configs/<cell_id>.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional

import pyarrow as pa

from ecosweep.cells import engine_variant
from ecosweep.config.compose import load_cell_config

# old column name -> its name now (MiB columns were `_mb` until 2026-12-02, while `_gb` meant 10^9 bytes)
RENAMED_COLUMNS = {"memory_used_mb_max": "memory_used_mib_max", "gpu_memory_total_mb": "gpu_memory_total_mib",
                   "gpu_memory_peak_mb": "gpu_memory_peak_mib"}


def renamed_columns(table: pa.Table) -> pa.Table:
    """``table`` as read from a file, with the columns it holds under an old name renamed."""
    if not set(RENAMED_COLUMNS) & set(table.column_names):
        return table
    return table.rename_columns([RENAMED_COLUMNS.get(n, n) for n in table.column_names])


# engine (name) -> engine_kind, for rows written before engine_kind existed (every engine's name was its kind)
_LEGACY_KIND = {None: "eager", "eager": "eager", "graph": "graph", "compiled": "hf_static"}


def _legacy_kind(engine: Optional[str]) -> Optional[str]:
    return _LEGACY_KIND.get(engine, engine)


def stored_variant(config_dir: Path) -> Callable[[str], Optional[str]]:
    """A lookup of a cell's engine variant from its stored config in ``config_dir`` (None where there is none)."""
    cache: Dict[str, Optional[str]] = {}

    def variant(cell_id: str) -> Optional[str]:
        if cell_id not in cache:
            path = config_dir / f"{cell_id}.yaml"
            if path.exists():

                cache[cell_id] = engine_variant(load_cell_config(path).engine)
            else:
                cache[cell_id] = None
        return cache[cell_id]
    return variant


def _set(table: pa.Table, name: str, values: List[Optional[str]]) -> pa.Table:
    index = table.column_names.index(name)
    return table.set_column(index, table.schema.field(name), pa.array(values, pa.string()))


def upgrade_rows(table: pa.Table, variant_of: Optional[Callable[[str], Optional[str]]] = None) -> pa.Table:
    """``table`` (on the current schema) with rows of older files relabelled as above; ``variant_of`` looks up a
    compiled cell's variant by its id (from the stored configs beside the file)."""
    if table.num_rows == 0 or "engine_kind" not in table.column_names:
        return table
    kinds = table.column("engine_kind").to_pylist()
    variants = table.column("engine_variant").to_pylist()
    if all(k is not None for k in kinds) and all(v is not None for v in variants):
        return table
    engines = table.column("engine").to_pylist()
    effective = table.column("engine_effective").to_pylist()
    cell_ids = table.column("cell_id").to_pylist()
    for i, (kind, engine) in enumerate(zip(kinds, engines)):
        if kind is None:
            kinds[i] = _legacy_kind(engine)
            if engine == "compiled":  # transformers' static-cache generate(), as engine=hf_static names it now
                engines[i] = "hf_static"
                effective[i] = "hf_static_compiled" if effective[i] == "compiled" else effective[i]
        if variants[i] is None:
            found = variant_of(cell_ids[i]) if variant_of is not None and kinds[i] == "compiled" else None
            variants[i] = found or engines[i]
    for name, values in (("engine_kind", kinds), ("engine", engines), ("engine_effective", effective),
                         ("engine_variant", variants)):
        table = _set(table, name, values)
    return table
