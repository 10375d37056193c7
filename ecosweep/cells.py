"""Turn composed Hydra configs into validated cells with stable ids.

A *cell* is one point of a study's grid (model x quantization x batch size x tokens x
hardware x protocol). Its id is a hash of exactly what is measured, so the same cell
gets the same id whatever the order of the overrides that produced it, and a re-run
can recognise cells that are already done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

from omegaconf import DictConfig

from ecosweep.config.compat import PLANTING_VERSION, requested_gpus
from ecosweep.config.compose import to_settings
from ecosweep.config.load_names import serving_load
from ecosweep.config.schema import (
    RUN_WIDE_SETTINGS,
    CompileConfig,
    EngineConfig,
    ReportConfig,
    StudyConfig,
    TrackingConfig,
)
from ecosweep.config.sweep import name_unnamed_studies
from ecosweep.config.validate import validate_study
from ecosweep.errors import ConfigError

CELL_ID_LENGTH = 12
# The kernel profile's version in the id of a profiled cell: a new classification is a new measurement.
PROFILE_VERSION = 1


@dataclass(frozen=True)
class Cell:
    """One measured configuration. ``settings`` is plain data, safe to ship to a Ray actor."""

    id: str
    settings: StudyConfig

    @property
    def label(self) -> str:
        s = self.settings
        engine = "" if is_default_engine(s) else f"/{engine_variant(s.engine)}"
        gpus = _gpus_over_one(s)
        on = f"/{gpus}gpu" if gpus else ""
        profiled = "/profiled" if s.profile else ""
        if s.scenario.name == "serving":
            return (f"{s.model.name}/{s.quantization.name}{engine}/serving/{serving_load(s.serving)}/"
                    f"{s.serving.lengths}-in{s.input_tokens}-out{s.output_tokens}{on}{profiled}")
        return (f"{s.model.name}/{s.quantization.name}{engine}/bs{s.batch_size}/in{s.input_tokens}/"
                f"out{s.output_tokens}{on}{profiled}")


def _gpus_over_one(s: StudyConfig) -> int:
    """The GPUs a cell holds when more than one (they enter its id and label), else 0."""
    n = requested_gpus(s)
    return int(n) if n is not None and n > 1 else 0


def is_default_engine(s: StudyConfig) -> bool:
    """Whether the cell decodes with the default engine (eager ``generate()``, default attention): the
    only engine before the engine axis existed, so such cells keep the ids they had then."""
    return engine_identity(s.engine) == engine_identity(EngineConfig())


# Engine fields added on 2026-12-02 (the compiled engine): left out of an engine's identity at their defaults, so
# graph and hf_static cells measured before keep their ids.
_ENGINE_FIELDS_SINCE_COMPILED = {"decode_model": (None, "transformers"), "fuse_projections": (False,),
                                 "compile": (None,)}


def engine_identity(e: EngineConfig) -> Dict[str, Any]:
    """The engine's fields as a cell id hashes them: the fields added with the compiled engine only where they
    differ from what every engine did before them (the transformers model code, no fusion, no compile)."""
    fields = dataclasses.asdict(e)
    for key, defaults in _ENGINE_FIELDS_SINCE_COMPILED.items():
        if fields.get(key) in defaults:
            fields.pop(key, None)
    return fields


def engine_variant(e: EngineConfig) -> str:
    """The engine as labels and reports name it: its name, then what sets this variant apart from the engine's
    defaults ('+'-joined): ecosweep's decoder (and its fused projections) and every compile setting that differs
    from CompileConfig's defaults, e.g. ``compiled+ecosweep_decoder+fused``, ``compiled+cudagraphs=none``."""
    tags = []
    if e.decode_model == "ecosweep":
        tags.append("ecosweep_decoder")
    if e.fuse_projections:
        tags.append("fused")
    if e.compile is not None:
        defaults = dataclasses.asdict(CompileConfig())
        for key, value in dataclasses.asdict(e.compile).items():
            if key == "inductor_options":
                tags += [f"{k}={v}" for k, v in sorted(value.items())]
            elif value != defaults[key]:
                tags.append(f"{key}={str(value).lower()}")
    return "+".join([e.name, *tags])


def _quantization_identity(s: StudyConfig) -> Dict[str, Any]:
    """The quantization's fields; torchao_type only where set, so cells measured before the torchao backend
    keep their ids."""
    q = dataclasses.asdict(s.quantization)
    if q.get("torchao_type") is None:
        q.pop("torchao_type", None)
    return q


# A hardware profile's datasheet figures: what the analysis reads (roofline, power limit), not what is measured.
DATASHEET_FIELDS = ("compute_capability", "peak_mem_bandwidth_gb_s", "tdp_w", "peak_fp16_tflops", "memory_gb")


def _hardware_identity(s: StudyConfig) -> Dict[str, Any]:
    """Where the cell runs: the profile's name, device kind and GPU name pattern. Its datasheet figures are
    left out, so correcting one does not orphan stored results (``ecosweep.migrate`` renames cells stored
    under the ids they had while the figures were hashed in)."""
    return {k: v for k, v in dataclasses.asdict(s.hardware).items() if k not in DATASHEET_FIELDS}


def measured_identity(s: StudyConfig) -> Dict[str, Any]:
    """What a measurement depends on; everything else (study name, paths, tracking, the hardware profile's
    datasheet figures) is not.

    The engine enters only when it is not the default, so eager cells measured before the
    engine axis existed keep their ids (and stay reusable)."""
    identity = {
        "model": dataclasses.asdict(s.model),
        "weights": s.weights,
        "quantization": _quantization_identity(s),
        "hardware": _hardware_identity(s),
        "measurement": dataclasses.asdict(s.measurement),
        "batch_size": s.batch_size,
        "input_tokens": s.input_tokens,
        "output_tokens": s.output_tokens,
        "repetitions": s.repetitions,
        "warmup": s.warmup,
        "seed": s.seed,
    }
    if not is_default_engine(s):
        identity["engine"] = engine_identity(s.engine)
    if s.scenario.name != "fixed_batch":  # fixed-batch cells (every cell before the scenario group) keep their ids
        served = dataclasses.asdict(s.serving)
        if served["server"] == "transformers":  # cells served before serving.server existed keep their ids
            del served["server"]
        identity["scenario"] = {"name": s.scenario.name, "serving": served}
    if s.outlier_features.count > 0:  # planted outliers change the weights; plain random cells keep their ids
        identity["outlier_features"] = {**dataclasses.asdict(s.outlier_features), "planting": PLANTING_VERSION}
    if s.profile:  # a profiled cell carries the breakdown; unprofiled cells keep their ids
        identity["profile"] = PROFILE_VERSION
    gpus = _gpus_over_one(s)
    if gpus:  # energy over N GPUs is another measurement; one-GPU cells keep their ids
        identity["gpus"] = gpus
    return identity


def stable_digest(obj: Dict[str, Any]) -> str:
    """A stable short hash of plain data (sorted JSON: the same in every Python process)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:CELL_ID_LENGTH]


def cell_id(s: StudyConfig) -> str:
    return stable_digest(measured_identity(s))


@dataclass(frozen=True)
class RunOptions:
    """How one command runs, the same for every cell of it (``RUN_WIDE_SETTINGS``): the dry run, MLflow
    tracking, the report's carbon and cost settings, where Ray runs and how progress shows. Taken once from
    the validated cells (:func:`run_options`); the study, the driver and the tracker read them from here,
    never from a cell."""

    dry_run: bool
    tracking: TrackingConfig
    report: ReportConfig
    ray_address: Optional[str]  # None: RAY_ADDRESS, else a local Ray
    ray_num_cpus: Optional[int]  # a local Ray's CPUs (None: all)
    ray_num_gpus: Optional[int]  # a local Ray's GPUs (None: all)
    progress: str  # auto | live | plain | off (ray.progress)


def run_options(cells: List["Cell"]) -> RunOptions:
    """The command's run-wide settings. :func:`plan_cells` has refused a sweep that varies any of them, so
    every cell holds the same values: the first one's are the command's."""
    if not cells:
        raise ValueError("a command without cells has no run options")
    s = cells[0].settings
    return RunOptions(dry_run=s.dry_run, tracking=s.tracking, report=s.report, ray_address=s.ray.address,
                      ray_num_cpus=s.ray.num_cpus, ray_num_gpus=s.ray.num_gpus, progress=s.ray.progress)


def _setting(s: StudyConfig, dotted: str) -> Any:
    value: Any = s
    for part in dotted.split("."):
        value = getattr(value, part)
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def run_wide_problems(settings: List[StudyConfig]) -> List[str]:
    """A sweep that varies a run-wide setting (``RUN_WIDE_SETTINGS``): one command has one value of each, so
    every value past the first would be silently ignored. Checked over every composed config, before cells are
    merged by id (an id leaves these settings out, so merged cells would hide the other values)."""
    problems = []
    for key in RUN_WIDE_SETTINGS:
        values: List[Any] = []
        for one in settings:
            value = _setting(one, key)
            if value not in values:
                values.append(value)
        if len(values) > 1:
            problems.append(f"{key} takes one value per command (it sets how the whole run goes, not what a cell "
                            f"measures), but this sweep gives {len(values)}: "
                            + ", ".join(repr(v) for v in values[:3]) + ("..." if len(values) > 3 else "")
                            + f". Run one command per value of {key}.")
    return problems


def _where(s: StudyConfig) -> Tuple[str, str]:
    return s.study, s.output_root


def _repeats_problems(repeats: Dict[Tuple[Tuple[str, str], Tuple[str, str]], List[str]]) -> List[str]:
    """Sweep values that differ only in where a cell's results go (study, output_root) repeat cells the command
    already measures for another study: one command measures each cell once, so those studies would get
    nothing. One sentence per pair of studies (a repeat within one study is harmless and dropped)."""
    return [f"study={later[0]!r} output_root={later[1]!r} repeats {len(ids)} cell(s) of study={first[0]!r} "
            f"output_root={first[1]!r} (e.g. {ids[0]}): a cell id hashes what is measured, not where its results "
            "go, and one command measures each cell once, so that study would get nothing. Run it as its own "
            "command after this one: it copies the finished cells (reuse_cells=true) instead of measuring them "
            "again." for (first, later), ids in repeats.items()]


def plan_cells(configs: Iterable[DictConfig]) -> List[Cell]:
    """Validate every config and return the distinct cells, in order.

    Raises ConfigError listing every problem of every cell (each problem once), so
    a sweep with one bad value fails as a whole before anything runs.
    """
    configs = name_unnamed_studies(list(configs), [])  # the command line names them with its overrides first
    seen: Dict[str, Cell] = {}  # the distinct cells by id, in order
    repeats: Dict[Tuple[Tuple[str, str], Tuple[str, str]], List[str]] = {}
    problems: List[str] = []
    composed: List[StudyConfig] = []
    for cfg in configs:
        settings = to_settings(cfg)
        composed.append(settings)
        cell_problems = validate_study(settings)
        if cell_problems:
            problems += [p for p in cell_problems if p not in problems]
            continue
        cid = cell_id(settings)
        if cid not in seen:
            seen[cid] = Cell(cid, settings)
        elif _where(seen[cid].settings) != _where(settings):
            repeats.setdefault((_where(seen[cid].settings), _where(settings)), []).append(cid)
    cells = list(seen.values())
    problems += _repeats_problems(repeats)
    problems += run_wide_problems(composed)
    if problems:
        raise ConfigError(problems)
    return cells
