"""The NVML sampler process: ``python -m ecosweep.measure.meters.sampler UUID HZ [NVML_MODULE]``.

Runs beside the process that calls ``generate()`` (a thread there would contend for the
GIL and perturb the workload). Every 1/HZ seconds it reads instantaneous power (field
NVML_FI_DEV_POWER_INSTANT, falling back to the 1 s average power); every 1 s the energy
counter and the slower state (utilisation, memory, clocks, temperature, clock-event
reasons); every 2 s the compute processes on the device.

Protocol on stdin/stdout, one line each: once NVML is open the sampler writes ``READY`` and waits
for ``go`` (answered ``GO``) before it takes its first sample (so a process launched ahead of its meter, while the
cell loads, samples nothing of that); ``stop`` or EOF then exits without a sample. Sampling, the
parent writes ``flush`` and gets the samples taken since the last flush (one more taken on the spot)
as JSON lines, then ``END``; ``stop`` (or EOF, when the parent dies) flushes the same way and exits.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from typing import Any, Dict, List, Optional

from ecosweep.errors import MeterError
from ecosweep.measure.meters.nvml_device import NvmlDevice

# Each NVML call costs ~2-3 ms of CPU on an H100 host (more while the GPU is busy), so
# only instantaneous power is read at the full rate; the rest once a second.
SLOW_PERIOD_S = 1.0
PROCESS_PERIOD_S = 2.0


def _energy_mj(device: NvmlDevice) -> Optional[int]:
    try:
        return device.energy_mj()
    except MeterError:  # unsupported or a failed read: the meter labels its energy as sampled
        return None


def sample(device: NvmlDevice, with_slow: bool, with_pids: bool, counter: bool) -> Dict[str, Any]:
    s: Dict[str, Any] = {"t": time.time(), "power_w": device.power_w()}
    if with_slow:
        s["energy_mj"] = _energy_mj(device) if counter else None
        s.update(device.slow_state())
    if with_pids:
        s["pids"] = device.compute_pids()
    return s


def run(uuid: str, hz: float, nvml_module: str = "pynvml") -> None:
    device = NvmlDevice(uuid, nvml_module)
    counter = device.has_energy_counter()
    out = sys.stdout
    buffer: List[Dict[str, Any]] = []
    period = 1.0 / hz
    out.write("READY\n")
    out.flush()
    if sys.stdin.readline().strip() != "go":  # stopped (or the parent gone) before its meter started
        return
    # answered before the parent sends anything else: stdin is read through a buffer that select() cannot see,
    # so every command waits for its answer and no second line is ever buffered unseen
    out.write("GO\n")
    out.flush()
    next_t = last_slow = last_pids = time.monotonic()

    def take() -> None:
        nonlocal last_slow, last_pids
        now = time.monotonic()
        slow, pids = now - last_slow >= SLOW_PERIOD_S or not buffer, now - last_pids >= PROCESS_PERIOD_S
        if slow:
            last_slow = now
        if pids:
            last_pids = now
        buffer.append(sample(device, slow, pids, counter))

    def flush() -> None:
        take()
        out.write("".join(json.dumps(s, separators=(",", ":")) + "\n" for s in buffer) + "END\n")
        out.flush()
        buffer.clear()

    take()
    while True:
        timeout = max(0.0, next_t - time.monotonic())
        ready, _, _ = select.select([sys.stdin], [], [], timeout)
        if ready:
            line = sys.stdin.readline()
            command = line.strip()
            if command == "flush":
                flush()
                continue
            flush()  # "stop" or EOF (the parent went away)
            return
        take()
        next_t += period
        if next_t < time.monotonic():  # fell behind (a slow NVML call): don't burst to catch up
            next_t = time.monotonic() + period


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run(sys.argv[1], float(sys.argv[2]), *(sys.argv[3:4]))
