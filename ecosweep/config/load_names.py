"""How labels, rows (``serving_load``) and reports name a served load, and the server part of such a name back:
one place for the format, since cells write it and the report reads it."""

from __future__ import annotations

from ecosweep.config.schema import ServingConfig


def serving_load(v: ServingConfig) -> str:
    """A served load as labels, rows (``serving_load``) and reports name it: the batch cap, then how requests
    arrive, e.g. ``max64-all``, ``max64-poisson4rps``, ``max64-closed16``; then the server's settings where they
    are not the defaults (:func:`server_variant`), e.g. ``max64-all-graphs_on-compile2``, so that two servers of
    one load are two lines of the report."""
    arrival = {"all_at_once": "all", "poisson": f"poisson{v.request_rate_rps:g}rps",
               "closed_loop": f"closed{v.concurrency}"}.get(v.arrival, v.arrival)
    variant = server_variant(v)
    return f"max{v.max_batch}-{arrival}" + (f"-{variant}" if variant else "")


def server_variant_of_load(load: str) -> str:
    """The server part of a load's name (:func:`serving_load`): what follows the batch cap and the arrival,
    '' for the default server."""
    parts = load.split("-", 2)
    return parts[2] if len(parts) > 2 else ""


def server_variant(v: ServingConfig) -> str:
    """The served cell's server settings that differ from the defaults, '-'-joined ('' for the default server):
    ``graphs_on`` / ``graphs_off`` (serving.cuda_graphs), ``compile<level>`` (serving.compile_level),
    ``mem<percent>`` (serving.max_memory_percent), led by the server where it is not transformers' (``ecosweep``)."""
    parts = [] if v.server == "transformers" else [v.server]
    if v.cuda_graphs != "auto":
        parts.append(f"graphs_{v.cuda_graphs}")
    if v.compile_level:
        parts.append(f"compile{v.compile_level}")
    if v.max_memory_percent is not None:
        parts.append(f"mem{100 * v.max_memory_percent:g}")
    return "-".join(parts)
