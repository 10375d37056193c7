""""Did you mean": unknown keys and mistyped values on the command line, caught before Hydra composes anything.

Hydra answers ``batchsize=4`` with a hint to append ``+batchsize=4``, which would not help: the
schema has no such key. Here every plain ``key=value`` override is checked against the typed
schema (:mod:`ecosweep.config.schema`): an unknown key gets the closest valid names, and a value its
field's type cannot take (``batch_size=many``, each value of a sweep) gets the type and the field's help
(its schema metadata), instead of Hydra's stack-trace hint.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, List, Optional, Tuple

from ecosweep.config.compose import CONF_DIR, compose_config
from ecosweep.config.schema import CHOICES_BY_SETTING, StudyConfig

# Keys that are not fields of the schema but are valid on the command line.
_OTHER_TOP_LEVEL = {"hydra", "experiment"}


def _fields(cls: Any) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name) for f in dataclasses.fields(cls)}


def _unwrap_optional(hint: Any) -> Tuple[Any, bool]:
    """``Optional[X]`` -> (X, True); another union -> (None, True); anything else -> (it, False)."""
    if typing.get_origin(hint) is not typing.Union:
        return hint, False
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return (args[0] if len(args) == 1 else None), True


def _scalar_field(key: str) -> Tuple[Any, bool]:
    """The scalar type (int, float, bool, str) of a dotted key's field and whether it takes null; (None, False)
    where the key is unknown, a dataclass, a container, or under one."""
    cls: Any = StudyConfig
    optional = False
    for part in key.split("."):
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            return None, False
        cls, optional = _unwrap_optional(_fields(cls).get(part))
    return (cls, optional) if cls in (int, float, bool, str) else (None, False)


def field_help(key: str) -> Optional[str]:
    """A setting's help: the ``help`` in its schema field's metadata (``schema.setting``); None for no such
    setting."""
    cls: Any = StudyConfig
    found = None
    for part in key.split("."):
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            return None
        found = next((f for f in dataclasses.fields(cls) if f.name == part), None)
        if found is None:
            return None
        cls, _ = _unwrap_optional(_fields(cls).get(part))
    return (found.metadata.get("help") or None) if found is not None else None


_NODES = {int: "IntegerNode", float: "FloatNode", bool: "BooleanNode"}


def _value_problem(key: str, value: str) -> Optional[str]:
    """Why ``value`` cannot be ``key``'s (checked the way OmegaConf converts it), or None. Interpolations,
    sweep functions and quoted values are left to Hydra."""
    import omegaconf.nodes

    kind, optional = _scalar_field(key)
    if kind not in _NODES or any(c in value for c in "${}()[]'\""):
        return None
    node = getattr(omegaconf.nodes, _NODES[kind])
    bad = []
    for item in value.split(","):
        try:
            node(value=None if item.strip() == "null" else item.strip(), is_optional=optional)
        except omegaconf.errors.ValidationError:
            bad.append(item.strip())
    if not bad:
        return None
    help_text = field_help(key)
    what = {int: "an integer", float: "a number", bool: "true or false"}[kind]
    return (f"{key}={', '.join(repr(b) for b in bad)} is not {what}: {key} takes {what}"
            f"{' or null' if optional else ''}" + (f" ({help_text})." if help_text else "."))


def _problem(key: str) -> Optional[str]:
    parts = key.split(".")
    if parts[0] in _OTHER_TOP_LEVEL:
        return None
    cls: Any = StudyConfig
    for depth, part in enumerate(parts):
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            return None  # below a dict (ray.resources.*) anything goes
        fields = _fields(cls)
        if part not in fields:
            where = ".".join(parts[:depth]) or "the top level"
            names = sorted(fields) + (sorted(_OTHER_TOP_LEVEL - {"hydra"}) if depth == 0 else [])
            close = difflib.get_close_matches(part, names, n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(('.'.join(parts[:depth] + [c])) for c in close)}?" if close else ""
            return (f"unknown key '{key}' ('{part}' is not a setting at {where}).{hint} Valid there: "
                    f"{', '.join(names)}.")
        cls, _ = _unwrap_optional(fields[part])
        if typing.get_origin(cls) is not None:  # a container: below it anything goes
            cls = None
    return None


def _experiment_sweep_problem(arg: str) -> Optional[str]:
    """``-m +experiment=a,b``: Hydra would run each experiment as one cell of its defaults, without its own grid
    (an experiment's hydra.sweeper.params are not expanded inside another sweep)."""
    key, _, value = arg.partition("=")
    if key.lstrip("+~") != "experiment" or not ("," in value or value.startswith(("choice(", "glob(", "range("))):
        return None
    names = [v.strip() for v in value.split(",")] if "," in value and "(" not in value else []
    commands = "; ".join(f"python -m ecosweep +experiment={n}" for n in names) or "python -m ecosweep +experiment=NAME"
    return (f"{arg} sweeps over experiments, but an experiment's own grid (its hydra.sweeper.params) is not "
            f"expanded inside a sweep: each would run a single cell of its defaults. Run one command per "
            f"experiment: {commands}.")


def group_options(group: str) -> List[str]:
    """The options of a config group (its ``conf/<group>/*.yaml`` files), sorted; empty for no such group."""

    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _group_option_problem(arg: str) -> Optional[str]:
    """``model=Mistral7B`` or ``+experiment=smok``: an option the group does not have (each value of a sweep),
    named with the group's options and the closest ones, before Hydra answers with its stack-trace hint."""
    key, _, value = arg.partition("=")
    group = key.lstrip("+~")
    options = group_options(group)
    if not options or "/" in group or any(c in value for c in "${}()[]'\""):
        return None
    bad = [v.strip() for v in value.split(",") if v.strip() and v.strip() not in options]
    if not bad:
        return None
    close = sorted({c for b in bad for c in difflib.get_close_matches(b, options, n=2, cutoff=0.5)})
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return (f"{group}={', '.join(repr(b) for b in bad)} is not an option of the {group} group (conf/{group}/).{hint} "
            f"Options: {', '.join(options)}.")


def command_line_problems(argv: List[str]) -> List[str]:
    """One sentence per command-line override whose key the schema does not have, whose group has no such
    option, or whose value (each value of a sweep) its field's type cannot take."""
    problems = []
    for arg in argv:
        problem = _experiment_sweep_problem(arg) or (_group_option_problem(arg) if "=" in arg else None)
        if problem:
            problems.append(problem)
            continue
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            continue
        key, value = (part.strip() for part in arg.split("=", 1))
        problem = _problem(key) or _value_problem(key, value)
        if problem:
            problems.append(problem)
    return problems


def prefix_problem(prefix: str) -> Optional[str]:
    """``python -m ecosweep settings PREFIX``: None where some setting starts with ``prefix``, else a sentence
    naming the closest settings."""
    keys = leaf_settings()
    if not prefix or any(k.startswith(prefix) for k in keys):
        return None
    groups = sorted({k.split(".")[0] + "." for k in keys if "." in k})
    close = difflib.get_close_matches(prefix, groups + keys, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return (f"no setting starts with {prefix!r}.{hint} Settings are grouped under: {', '.join(groups)} "
            "(and top-level ones such as batch_size); `python -m ecosweep settings` lists them all.")


def leaf_settings(cls: Any = StudyConfig, prefix: str = "") -> List[str]:
    """Every leaf setting of the schema as a dotted key (``measurement.min_window_s``), in schema order."""
    keys: List[str] = []
    for name, hint in _fields(cls).items():
        hint, _ = _unwrap_optional(hint)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            keys += leaf_settings(hint, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def settings_table(overrides: List[str], prefix: str = "") -> str:
    """``python -m ecosweep settings [PREFIX] [overrides]``: each setting under ``prefix`` with its value in the
    config these overrides compose (groups' defaults otherwise) and its help."""
    from omegaconf import OmegaConf


    cfg = compose_config(overrides)
    lines = []
    for key in leaf_settings():
        if not key.startswith(prefix):
            continue
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if OmegaConf.is_config(value):
            shown = OmegaConf.to_yaml(value).strip() or "{}"
        else:
            shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        lines.append(f"{key} = {shown}\n    {field_help(key) or ''}")
        choices = CHOICES_BY_SETTING.get(key)
        if choices is not None:
            lines += [f"      {c.value}: {c.help}" for c in choices]
    return "\n".join(lines)
