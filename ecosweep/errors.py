"""Exceptions users see. Each carries a message meant to be printed as it is."""

from __future__ import annotations


class EcosweepError(Exception):
    """Base of the errors ecosweep reports to users without a traceback."""


class ConfigError(EcosweepError):
    """The study's configuration is invalid; raised before any model loads."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Invalid study configuration:\n{lines}\nNothing was run and no results were written.")


class ModelNotFoundError(EcosweepError):
    """weights=pretrained named a model that is neither a local folder nor in the HF cache."""


class MeterError(EcosweepError):
    """An energy meter cannot be used (no NVML, no permission, unsupported counter)."""
