"""The window API shared by every meter.

A meter measures *windows*: ``begin_window()`` ... ``end_window()`` returns a frozen
:class:`WindowReading`. Both edges synchronise the device first (the caller passes a
``synchronize`` callable, e.g. ``torch.cuda.synchronize``), so queued kernels are
counted in the window they belong to. :meth:`Meter.window` is a context manager that
always closes its window, also when the measured code raises.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Tuple

NAN = math.nan


@dataclass(frozen=True)
class DeviceStats:
    """A window's device state from the power timeline (NaN where it was not sampled: CPU meters, no GPU).
    Each field is the row column of the same name."""

    gpu_util_pct_mean: float = NAN  # % of the time a kernel was running, mean over the window's samples
    mem_util_pct_mean: float = NAN  # % of the time device memory was read or written, mean
    memory_used_mib_max: float = NAN  # device memory in use, MiB (2**20 bytes), the largest sample
    sm_clock_mhz_mean: float = NAN  # SM clock, MHz, mean
    mem_clock_mhz_mean: float = NAN  # memory clock, MHz, mean
    temperature_c_start: float = NAN  # GPU temperature, °C, first sample of the window
    temperature_c_max: float = NAN  # °C, hottest sample
    temperature_c_mean: float = NAN  # °C, mean
    sampler_cpu_pct: float = NAN  # CPU the sampler process used during the window, % of one core


@dataclass(frozen=True)
class WindowReading:
    """What a meter saw in one window. Energies in joules, power in watts, time in seconds."""

    seconds: float
    start_unix_s: float
    energy_j: float = NAN  # NaN when the meter has no energy source: never a silent zero
    energy_source: str = "none"
    power_w_peak: float = NAN
    sampled_energy_j: float = NAN
    samples: int = 0
    device_stats: DeviceStats = field(default_factory=DeviceStats)
    throttle_reasons: Tuple[str, ...] = ()
    foreign_pids: Tuple[int, ...] = ()
    # GPU meters: each metered GPU's own energy (J) and UUID, in the same order (one entry for a one-GPU cell)
    device_energy_j: Tuple[float, ...] = ()
    device_uuids: Tuple[str, ...] = ()

    @property
    def power_w_mean(self) -> float:
        return self.energy_j / self.seconds if self.seconds > 0 else NAN


class WindowHandle:
    """Filled in when a :meth:`Meter.window` block exits."""

    reading: Optional[WindowReading] = None


class Meter(ABC):
    """Base of all meters. Subclasses implement ``_begin`` and ``_end``."""

    energy_source: str = "none"

    def __init__(self, synchronize: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.perf_counter):
        self._sync = synchronize
        self._clock = clock
        self._t0: Optional[float] = None
        self._wall0: float = 0.0

    # lifecycle: meters with background samplers start and stop them here
    def start(self) -> None:
        """Start background resources (a sampler process). Idempotent."""

    def close(self) -> None:
        """Stop background resources. Idempotent; always safe to call."""

    def __enter__(self) -> "Meter":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def begin_window(self) -> None:
        if self._t0 is not None:
            raise RuntimeError("a measurement window is already open")
        self._sync()
        self._wall0 = time.time()
        self._begin()
        self._t0 = self._clock()

    def end_window(self) -> WindowReading:
        if self._t0 is None:
            raise RuntimeError("end_window() without begin_window()")
        self._sync()
        seconds = self._clock() - self._t0
        self._t0 = None
        return self._end(seconds, self._wall0)

    @contextmanager
    def window(self) -> Iterator[WindowHandle]:
        handle = WindowHandle()
        self.begin_window()
        try:
            yield handle
        finally:
            handle.reading = self.end_window()

    def device_temperature_c(self) -> float:
        """Current device temperature (for cool-down); NaN where unknown."""
        return NAN

    def trace(self):  # -> Optional[pyarrow.Table]
        """The samples recorded since start(), or None for meters without a sampler."""
        return None

    def energy_between_j(self, t0_unix_s: float, t1_unix_s: float) -> Tuple[float, str]:
        """The energy of a stretch [t0, t1] (Unix seconds) inside the last closed window, joules, and where it
        came from; NaN and "none" for a meter that reads its energy only at a window's edges."""
        return NAN, "none"

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _end(self, seconds: float, start_unix_s: float) -> WindowReading: ...


class NullMeter(Meter):
    """Times windows and measures no energy (energy_source='none', energy NaN)."""

    energy_source = "none"

    def _begin(self) -> None:
        pass

    def _end(self, seconds: float, start_unix_s: float) -> WindowReading:
        return WindowReading(seconds=seconds, start_unix_s=start_unix_s)
