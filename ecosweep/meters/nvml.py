"""Placeholder replaced by the NVML meter (issue 3); raising MeterError keeps 'auto' honest."""

from __future__ import annotations

from typing import Optional

from ecosweep.errors import MeterError


class NvmlMeter:  # pragma: no cover - replaced by the real meter
    def __init__(self, gpu_uuid: Optional[str], **kw):
        raise MeterError("the NVML meter is not available in this build")
