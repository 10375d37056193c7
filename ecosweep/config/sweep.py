"""What a composed sweep becomes before its cells are planned: the combinations ``sweep.exclude`` leaves out, and
the name of a study the command did not name.

Both work on composed Hydra configs (DictConfig), before they are validated into cells.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Iterable, List, Tuple

from omegaconf import DictConfig, OmegaConf, open_dict

from ecosweep.config.schema import RUN_WIDE_SETTINGS
from ecosweep.errors import ConfigError


def _value_at(cfg: DictConfig, dotted: str) -> Any:
    """A composed config's value at ``dotted``; a group (a node with a name) by its option name."""
    value = OmegaConf.select(cfg, dotted, default=None)
    if isinstance(value, DictConfig) and "name" in value:
        return value.name
    return value


def _matches(cfg: DictConfig, rule: Dict[str, Any]) -> bool:
    def wanted(value: Any) -> List[Any]:
        return list(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else [value]

    return all(_value_at(cfg, key) in wanted(value) for key, value in rule.items())


_MISSING = object()


def excluded_by_sweep(configs: Iterable[DictConfig]) -> Tuple[List[DictConfig], Dict[str, int]]:
    """(kept, left out): the configs that match a rule of their ``sweep.exclude`` are left out; the second
    counts them by rule (its text). Raises ConfigError for a rule that names no setting (a typo would exclude
    nothing, silently)."""
    kept: List[DictConfig] = []
    left_out: Dict[str, int] = {}
    for cfg in configs:
        rules = [dict(rule) for rule in (OmegaConf.select(cfg, "sweep.exclude", default=None) or [])]
        unknown = sorted({k for rule in rules for k in rule if OmegaConf.select(cfg, k, default=_MISSING) is _MISSING})
        if unknown:
            raise ConfigError([f"sweep.exclude names {', '.join(unknown)}, which is not a setting; name settings as "
                               "on the command line (quantization, engine, batch_size, model.name, ...)."])
        hit = next((rule for rule in rules if _matches(cfg, rule)), None)
        if hit is None:
            kept.append(cfg)
        else:
            text = " with ".join(f"{k}={v}" for k, v in hit.items())
            left_out[text] = left_out.get(text, 0) + 1
    return kept, left_out


# Overrides that do not enter an unnamed study's name: where results go and how the command runs (a dry run
# and the real run of one command name the same study).
_NOT_IN_STUDY_NAME = ("output_root", "study", "hydra", *RUN_WIDE_SETTINGS)


def unnamed_study_name(configs: List[DictConfig], overrides: Iterable[str]) -> str:
    """The study of a command that names none (``study=null``): its models ('+'-joined, or how many) and a short
    hash of its command-line overrides (sorted; those of ``_NOT_IN_STUDY_NAME`` left out), e.g.
    ``tiny-llama-3b9c2e``. The same command names the same study (and so resumes it); another command another."""
    models = list(dict.fromkeys(str(OmegaConf.select(c, "model.name", default="model")) for c in configs))
    label = "+".join(models) if len(models) <= 2 else f"{len(models)}-models"
    kept = sorted(o for o in overrides
                  if not o.lstrip("+~").split("=", 1)[0].startswith(_NOT_IN_STUDY_NAME) and not o.startswith("-"))
    return f"{label}-{hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:6]}"


def name_unnamed_studies(configs: List[DictConfig], overrides: Iterable[str]) -> List[DictConfig]:
    """``configs`` with ``study`` set to :func:`unnamed_study_name` where it is null."""
    if all(OmegaConf.select(c, "study", default=None) is not None for c in configs):
        return configs
    name = unnamed_study_name(configs, list(overrides))
    named = []
    for cfg in configs:
        if OmegaConf.select(cfg, "study", default=None) is None:
            cfg = cfg.copy()
            with open_dict(cfg):
                cfg.study = name
        named.append(cfg)
    return named
