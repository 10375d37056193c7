"""Compose the config tree from Python, as ``python -m ecosweep`` does from the command line.

    from ecosweep.config.compose import compose_settings
    s = compose_settings(["model=Mistral-7B", "quantization=nf4", "engine=graph"])

Returns a validated-type :class:`ecosweep.config.schema.StudyConfig` (range checks are
:func:`ecosweep.config.validate.validate_study`'s job), for scripts and tests that need one
cell's settings without Hydra's command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

from omegaconf import DictConfig, OmegaConf, open_dict

from ecosweep.config.paths import CONF_DIR
from ecosweep.config.schema import StudyConfig, register_configs
from ecosweep.config.sweep import name_unnamed_studies


def compose_config(overrides: Optional[Iterable[str]] = None, return_hydra_config: bool = False) -> Any:
    """The composed DictConfig of ``conf/config.yaml`` with ``overrides`` (with its ``hydra`` node only when
    ``return_hydra_config``)."""
    from hydra import compose, initialize_config_dir  # Hydra's compose API: only where a config is composed

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides or []), return_hydra_config=return_hydra_config)


def compose_settings(overrides: Optional[Iterable[str]] = None) -> Any:
    """One cell's StudyConfig from ``overrides`` (an unnamed study named from them, as the command line does)."""
    overrides = list(overrides or [])
    return to_settings(name_unnamed_studies([compose_config(overrides)], overrides)[0])


def to_settings(cfg: DictConfig) -> StudyConfig:
    """Resolve a composed config (with or without its ``hydra`` node) into a StudyConfig."""
    cfg = cfg.copy()
    if "hydra" in cfg:
        with open_dict(cfg):
            del cfg["hydra"]
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


# Keys stored cell configs may hold that the schema no longer has: none of them was part of what a cell
# measures (the cell id), so dropping them reads the cell as it was. model_cache: the random-weight
# checkpoint folder, before random weights were built in memory (2026-11-27).
RETIRED_KEYS = ("model_cache",)


def load_cell_config(path: str | Path) -> Any:
    """A stored ``<study>/configs/<cell_id>.yaml`` as a StudyConfig, whatever ecosweep version wrote it:
    retired keys dropped, keys added since taking their defaults."""
    stored = OmegaConf.load(path)
    for key in RETIRED_KEYS:
        stored.pop(key, None)
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(StudyConfig), stored))


def hardware_profiles() -> dict:
    """Every hardware profile (``conf/hardware/*.yaml``) by name, as plain data: the datasheet figures the
    analysis reads (bandwidth for the roofline, power limits)."""
    import yaml

    return {p.stem: yaml.safe_load(p.read_text()) for p in (CONF_DIR / "hardware").glob("*.yaml")}
