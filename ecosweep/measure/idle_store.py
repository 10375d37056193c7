"""The latest idle baseline measured on each GPU of a host, kept on that host between commands.

Within one command the driver hands every cell the baselines its earlier cells measured (``measure.idle``). The
first cell on a GPU in a later command (a re-run, the next study of a session) has none, so it settles and
measures a full baseline, about 10 s. With ``reuse.idle_across_commands`` that cell is offered the baseline the
last command measured on the same host and GPUs, read from ``reuse.reference_dir``; the same check with the cell's
own context alive decides, under the same ``reuse.idle_max_age_s``, and the rows name the cell and run that
measured it (``idle_baseline_cell_id``, ``idle_baseline_run_id``).

One small JSON file per host-and-GPUs key, written atomically (``results.store.atomic_write_bytes``: cells of one
host never read half a file); one that cannot be read, or that another format wrote, counts as absent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from ecosweep.measure.idle import IdleBaseline
from ecosweep.measure.meters.base import DeviceStats, WindowReading
from ecosweep.results.store import atomic_write_bytes

log = logging.getLogger("ecosweep")

IDLE_STORE_FORMAT = 1
_TUPLES = ("throttle_reasons", "foreign_pids", "device_energy_j", "device_uuids")


def _reading_from(fields: Dict[str, Any]) -> WindowReading:
    values = dict(fields)
    values["device_stats"] = DeviceStats(**values.get("device_stats", {}))
    for name in _TUPLES:
        values[name] = tuple(values.get(name, ()))
    return WindowReading(**values)


@dataclass(frozen=True)
class HostIdleStore:
    """The baselines of one host's GPUs, in ``folder`` (the host's ``reuse.reference_dir``)."""

    folder: Path

    def path(self, key: str) -> Path:
        return self.folder / f"idle-{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"

    def load(self, key: str) -> Optional[IdleBaseline]:
        """The latest baseline stored for ``key`` (host and GPU UUIDs), or None (absent, unreadable, another
        key or format)."""
        path = self.path(key)
        try:
            blob = json.loads(path.read_text())
            if blob.get("format") != IDLE_STORE_FORMAT or blob.get("key") != key:
                return None
            return IdleBaseline(key, _reading_from(blob["reading"]), blob["cell_id"],
                                float(blob["measured_unix_s"]), blob.get("run_id", ""))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged file: measure again, never a result
            log.warning("ecosweep: the stored idle baseline %s cannot be read (%s: %s); the cell measures its own",
                        path, type(exc).__name__, exc)
            return None

    def save(self, baseline: IdleBaseline) -> bool:
        """Store ``baseline`` as its key's latest (atomically); False when the folder cannot be written (the next
        command's first cell measures its own)."""
        if not baseline.key:
            return False
        path = self.path(baseline.key)
        blob = {"format": IDLE_STORE_FORMAT, "key": baseline.key, "cell_id": baseline.cell_id,
                "run_id": baseline.run_id, "measured_unix_s": baseline.measured_unix_s,
                "reading": dataclasses.asdict(baseline.reading)}
        try:
            text = json.dumps(blob, default=float)  # default: numpy scalars from the power timeline
            atomic_write_bytes(path, text.encode())
        except (OSError, TypeError, ValueError) as exc:  # not stored: the measurement it came from stands
            log.warning("ecosweep: the idle baseline could not be stored in %s (%s)", self.folder, exc)
            return False
        return True


def latest(*baselines: Optional[IdleBaseline]) -> Optional[IdleBaseline]:
    """The most recently measured of ``baselines`` (None when all are None)."""
    present = [b for b in baselines if b is not None]
    return max(present, key=lambda b: b.measured_unix_s) if present else None
