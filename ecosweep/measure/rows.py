"""The columns of one repetition's row, from its windows' readings: speed, energy (gross, net of the idle
baseline, per token and request, prefill and decode), and what the meter saw of the device. Units are in the
names (``_s`` seconds, ``_j`` joules, ``_w`` watts, ``tok_s`` tokens per second)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Protocol

from ecosweep.measure.meters.base import WindowReading

NAN = math.nan


class Shape(Protocol):
    """What the columns need of a workload: its requests per call and tokens per request."""

    batch_size: int
    input_tokens: int
    output_tokens: int


def ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else NAN


def bool_or_none(observed: bool, flag: bool) -> Any:
    return flag if observed else None


def per_gpu(window: WindowReading, idle: WindowReading) -> Dict[str, Any]:
    """Each metered GPU's energy and mean power in the window and its idle power, in the order of the
    GPUs named in ``gpu_uuid`` (joined with '+'); null where the meter read no GPU."""
    if not window.device_energy_j:
        return {"energy_j_by_gpu": None, "power_w_mean_by_gpu": None, "idle_power_w_by_gpu": None}
    idle_w = [e / idle.seconds if idle.seconds > 0 else NAN for e in idle.device_energy_j] or None
    return {"gpu_uuid": "+".join(window.device_uuids),  # what the meter read, in the order of the lists
            "energy_j_by_gpu": list(window.device_energy_j),
            "power_w_mean_by_gpu": [e / window.seconds if window.seconds > 0 else NAN for e in window.device_energy_j],
            "idle_power_w_by_gpu": idle_w}


@dataclass(frozen=True)
class Counts:
    """What one repetition's windows held: whole calls and their new tokens, and prefill calls."""

    calls: int
    tokens: int
    prefill_calls: int


def speed_columns(w: Shape, r: WindowReading, pr: WindowReading, n: Counts) -> Dict[str, Any]:
    latency = r.seconds / n.calls
    prefill_s = pr.seconds / n.prefill_calls
    decode_s = latency - prefill_s
    return {
        "generate_calls": n.calls,
        "tokens_generated": n.tokens,
        "seconds": r.seconds,
        "tok_s": n.tokens / r.seconds,
        "latency_s_per_request": latency,
        "prefill_s": prefill_s,
        "decode_s": decode_s,
        "prefill_tok_s": ratio(w.batch_size * w.input_tokens, prefill_s),
        "decode_tok_s": ratio(w.batch_size * (w.output_tokens - 1), decode_s) if w.output_tokens > 1 else NAN,
    }


def energy_columns(w: Shape, r: WindowReading, pr: WindowReading,
        idle: WindowReading, n: Counts) -> Dict[str, Any]:
    energy = r.energy_j
    idle_w = idle.power_w_mean
    static_j = idle_w * r.seconds
    prefill_energy = pr.energy_j / n.prefill_calls
    sampled = r.sampled_energy_j
    mismatch_pct = 100.0 * ratio(energy - sampled, energy)
    return {
        "energy_source": r.energy_source,
        "energy_j": energy,
        "power_w_mean": r.power_w_mean,
        "power_w_peak": r.power_w_peak,
        "energy_j_per_1k_tok": 1000.0 * ratio(energy, n.tokens),
        "energy_j_per_request": ratio(energy, n.calls * w.batch_size),
        "energy_j_per_output_token": ratio(energy, n.tokens),
        "prefill_energy_j": prefill_energy,
        "decode_energy_j": ratio(energy, n.calls) - prefill_energy,
        "idle_power_w": idle_w,
        "idle_temperature_c": idle.device_stats.temperature_c_mean,
        "net_energy_j": energy - static_j,
        "net_energy_j_per_1k_tok": 1000.0 * ratio(energy - static_j, n.tokens),
        "static_energy_share": ratio(static_j, energy),
        "sampled_energy_j": sampled,
        "counter_vs_sampled_pct": mismatch_pct,
        "energy_mismatch": abs(mismatch_pct) > 5.0 if math.isfinite(mismatch_pct) else None,
    }


DEVICE_STATS = ("gpu_util_pct_mean", "mem_util_pct_mean", "memory_used_mib_max", "sm_clock_mhz_mean",
                 "mem_clock_mhz_mean", "temperature_c_start", "temperature_c_max", "sampler_cpu_pct")


def device_columns(r: WindowReading, pr: WindowReading, idle: WindowReading, observed: bool) -> Dict[str, Any]:
    """What the meter saw of the device: samples, throttling, foreign processes, each GPU, its statistics."""
    return {
        "samples": r.samples,
        "throttle_reasons": ",".join(r.throttle_reasons) or None,
        "throttled": bool_or_none(observed, bool(r.throttle_reasons)),
        "contaminated": bool_or_none(observed, bool(r.foreign_pids or pr.foreign_pids)),
        "foreign_pids": ",".join(str(p) for p in sorted(set(r.foreign_pids) | set(pr.foreign_pids))) or None,
        **per_gpu(r, idle),
        **{key: getattr(r.device_stats, key) for key in DEVICE_STATS},
    }
