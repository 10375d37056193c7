"""References a cell compares itself with, computed once and reused by the cells after it on the same host.

Two kinds, each keyed by everything its numbers depend on (and nothing a cell changes by being another
precision or engine):

- ``fidelity``: the 16-bit reference's greedy continuation of the cell's prompts and its logits
  (``fidelity.ReferenceRun``), the same for every precision of one model, weights, seed, prompt shape and device;
- ``tokens``: generate()'s tokens and per-step logits on the cell's own (quantized) model, the token check's
  reference, the same for every engine of one precision.

Files live in a folder of the cell's host (``reuse.reference_dir``; default a folder in the system's temporary
directory), not in the study folder: on a cluster a cell's process may not see the driver's disk, and only the
driver writes a study. Each file is written to a temporary name and renamed, so concurrent cells of one host never
read half a file; one that cannot be read is computed again. Keys include the library versions and
``REFERENCE_FORMAT``, so a file made by other code is never read as this code's.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from ecosweep.config.schema import StudyConfig

log = logging.getLogger("ecosweep")

REFERENCE_FORMAT = 1
# Files not read or written for this long are removed when another is written (seconds: a week).
STALE_AFTER_S = 7 * 24 * 3600.0


def default_reference_dir() -> Path:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in a container: the uid
        user = str(os.getuid())
    return Path(tempfile.gettempdir()) / f"ecosweep-references-{user}"


def reference_folder(s: StudyConfig) -> Path:
    """This host's folder of references (``reuse.reference_dir``, default :func:`default_reference_dir`)."""
    return Path(s.reuse.reference_dir).expanduser() if s.reuse.reference_dir else default_reference_dir()


def _library_versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    versions: Dict[str, Optional[str]] = {}
    for name in ("torch", "transformers", "bitsandbytes", "torchao"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _weights_identity(s: StudyConfig) -> Dict[str, Any]:
    """What the unquantized weights depend on: the architecture (or checkpoint), weights, seed, planted outliers."""
    return {"model": dataclasses.asdict(s.model), "weights": s.weights, "seed": s.seed,
            "outlier_features": dataclasses.asdict(s.outlier_features) if s.outlier_features.count > 0 else None}


def _shape_identity(s: StudyConfig) -> Dict[str, Any]:
    return {"batch_size": s.batch_size, "input_tokens": s.input_tokens, "output_tokens": s.output_tokens}


def fidelity_identity(s: StudyConfig, device_name: str, gpus: int, ref_dtype: str, build_dtype: str) -> Dict[str, Any]:
    """The fidelity reference's key fields: weights (built in ``build_dtype``, cast to ``ref_dtype``), prompt
    shape, the fidelity text, the device and the libraries."""
    f = s.fidelity
    return {"kind": "fidelity", "format": REFERENCE_FORMAT, **_weights_identity(s), **_shape_identity(s),
            "reference_dtype": ref_dtype, "build_dtype": build_dtype, "text": f.text,
            "text_max_tokens": f.text_max_tokens if f.text else None, "device_name": device_name, "gpus": gpus,
            "libraries": _library_versions()}


def token_identity(s: StudyConfig, device_name: str, gpus: int) -> Dict[str, Any]:
    """generate()'s reference for the token check: the cell's model as loaded (weights, precision, attention
    implementation), prompt shape, device, libraries. The engine itself is not in it: every engine of one
    precision compares with the same generate() run."""
    return {"kind": "tokens", "format": REFERENCE_FORMAT, **_weights_identity(s), **_shape_identity(s),
            "quantization": dataclasses.asdict(s.quantization), "attn_implementation": s.engine.attn_implementation,
            "device_name": device_name, "gpus": gpus, "libraries": _library_versions()}


def reference_key(identity: Dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return f"{identity['kind']}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


@dataclass(frozen=True)
class StoredReference:
    payload: Dict[str, Any]  # tensors and plain values, on the device asked for
    cell_id: str  # the cell that computed it


@dataclass(frozen=True)
class ReferenceStore:
    """One host's folder of references. ``max_bytes``: larger payloads are not stored (computed each time)."""

    folder: Path
    max_bytes: float

    @classmethod
    def for_settings(cls, s: StudyConfig) -> "ReferenceStore":
        return cls(reference_folder(s), s.reuse.max_reference_mib * 2**20)

    def path(self, identity: Dict[str, Any]) -> Path:
        return self.folder / f"{reference_key(identity)}.pt"

    def load(self, identity: Dict[str, Any], device: str) -> Optional[StoredReference]:
        """The stored reference of ``identity`` with its tensors on ``device``, or None (absent, unreadable, or
        stored under another identity: a hash collision is checked, not assumed away)."""
        import torch

        path = self.path(identity)
        if not path.exists():
            return None
        try:
            blob = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:  # a damaged file is computed again (and replaced); never a result
            log.warning("ecosweep: the reference %s cannot be read (%s: %s); computing it again", path,
                        type(exc).__name__, exc)
            return None
        if blob.get("identity") != json.dumps(identity, sort_keys=True, default=str):
            return None
        os.utime(path)  # recently used: not stale
        return StoredReference(blob["payload"], blob["cell_id"])

    def save(self, identity: Dict[str, Any], payload: Dict[str, Any], cell_id: str) -> bool:
        """Store ``payload`` (atomically); False when it is larger than ``max_bytes`` or the folder cannot be
        written (the cell goes on: the next one computes it again)."""
        import torch

        size = sum(v.numel() * v.element_size() for v in _tensors(payload))
        if size > self.max_bytes:
            return False
        path = self.path(identity)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{path.stem}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                torch.save({"identity": json.dumps(identity, sort_keys=True, default=str), "cell_id": cell_id,
                            "payload": _on_cpu(payload)}, f)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("ecosweep: the reference could not be stored in %s (%s); the next cell computes it "
                        "again", self.folder, exc)
            return False
        self._remove_stale()
        return True

    def _remove_stale(self) -> None:
        cutoff = time.time() - STALE_AFTER_S
        for old in self.folder.glob("*.pt"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                continue


def _tensors(payload: Any) -> Any:
    import torch

    if isinstance(payload, torch.Tensor):
        yield payload
    elif isinstance(payload, dict):
        for v in payload.values():
            yield from _tensors(v)
    elif isinstance(payload, (list, tuple)):
        for v in payload:
            yield from _tensors(v)


def _on_cpu(payload: Any) -> Any:
    import torch

    if isinstance(payload, torch.Tensor):
        return payload.detach().cpu()
    if isinstance(payload, dict):
        return {k: _on_cpu(v) for k, v in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [_on_cpu(v) for v in payload]
    return payload
