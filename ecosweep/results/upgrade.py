"""Rows written by older ecosweep versions, read as what they measured.

One place for what a reader must know about older files (columns they lack are added as null by
:func:`ecosweep.results.store.read_results`): before 2026-12-02 rows had no ``engine_kind``, and the
engine then named ``compiled`` was transformers' static-cache ``generate()``, now ``hf_static``
(``engine=compiled`` is ecosweep's compiled loop since). Such rows are relabelled: ``engine`` hf_static,
``engine_kind`` hf_static, ``engine_effective`` hf_static_compiled where it said compiled.
"""

from __future__ import annotations

from typing import List, Optional

import pyarrow as pa

# engine (name) -> engine_kind, for rows written before engine_kind existed (every engine's name was its kind)
_LEGACY_KIND = {None: "eager", "eager": "eager", "graph": "graph", "compiled": "hf_static"}


def _legacy_kind(engine: Optional[str]) -> Optional[str]:
    return _LEGACY_KIND.get(engine, engine)


def upgrade_rows(table: pa.Table) -> pa.Table:
    """``table`` (on the current schema) with rows of older files relabelled as above; rows that carry an
    ``engine_kind`` are returned unchanged."""
    if table.num_rows == 0 or "engine_kind" not in table.column_names:
        return table
    kinds = table.column("engine_kind").to_pylist()
    if all(k is not None for k in kinds):
        return table
    engines = table.column("engine").to_pylist()
    effective = table.column("engine_effective").to_pylist()
    new_kinds: List[Optional[str]] = []
    new_engines: List[Optional[str]] = []
    new_effective: List[Optional[str]] = []
    for kind, engine, eff in zip(kinds, engines, effective):
        if kind is None:
            kind = _legacy_kind(engine)
            if engine == "compiled":  # transformers' static-cache generate(), as engine=hf_static names it now
                engine = "hf_static"
                eff = "hf_static_compiled" if eff == "compiled" else eff
        new_kinds.append(kind)
        new_engines.append(engine)
        new_effective.append(eff)
    for name, values in (("engine_kind", new_kinds), ("engine", new_engines), ("engine_effective", new_effective)):
        index = table.column_names.index(name)
        table = table.set_column(index, table.schema.field(name), pa.array(values, pa.string()))
    return table
