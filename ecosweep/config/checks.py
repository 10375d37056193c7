"""One-sentence checks of a single setting, shared by the study's validators (``validate``,
``validate_serving``): each returns no problem, or one naming the bad value and what is valid."""

from __future__ import annotations

from typing import List, Sequence

from ecosweep.config.schema import CHOICES_BY_SETTING


def choice(key: str, value: object, choices: Sequence[str], or_null: str = "") -> List[str]:
    """No problem when ``value`` is one of ``choices``; else one naming every choice, with its help where the
    setting's choices are a ``schema.Choice`` (``CHOICES_BY_SETTING``). ``or_null``: what null means, for a
    setting that may be left null (then named as the last choice)."""
    if value in choices:
        return []
    helped = CHOICES_BY_SETTING.get(key)
    listed = ("; " if helped else ", ").join(
        f"{c} — {helped(c).help}" if helped and c in helped.values() else c for c in choices)
    null = f", or null for {or_null}" if or_null else ""
    return [f"{key}={value!r} is not a valid choice; choose one of: {listed}{null}."]


def at_least(key: str, value: float, minimum: float, what: str = "a number") -> List[str]:
    """No problem when ``value`` >= ``minimum``."""
    if value is None or value < minimum:
        return [f"{key}={value} is out of range: it must be {what} >= {minimum}."]
    return []


def positive(key: str, value: float, what: str = "a number") -> List[str]:
    """No problem when ``value`` > 0."""
    if value is None or not value > 0:
        return [f"{key}={value} is out of range: it must be {what} > 0."]
    return []
