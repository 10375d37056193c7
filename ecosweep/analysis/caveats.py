"""The report's warnings: comparisons across GPUs, random weights, engines that ran otherwise than asked,
slow fallbacks, high CVs, drift, throttling, contamination, host contention, launch-bound cells.
"""

from __future__ import annotations

from typing import List, Optional

import pandas as pd

from ecosweep.analysis.inputs import DEFAULT_ENGINE, has_random_weights

# What may run for each engine asked for without a warning (graph runs uncaptured on a CPU by design).
EXPECTED_EFFECTIVE = {"eager": {"eager"}, "graph": {"graph", "graph_uncaptured"}, "compiled": {"compiled"},
                      "hf_static": {"hf_static_compiled"}}

def _short_uuids(devices: str) -> str:
    """``gpu_uuids`` shortened for a warning: configurations pooled over devices stay comma-separated, the
    GPUs of one cell over several stay joined with '+'."""
    return ", ".join(" + ".join(gpu[:12] for gpu in cell.split("+")) for cell in devices.split(","))

def _gpu_set(devices: object) -> Optional[frozenset]:
    """The GPUs of a configuration measured on one device set (a cell's GPUs, '+'-joined), else None."""
    if not isinstance(devices, str) or not devices or "," in devices:
        return None
    return frozenset(devices.split("+"))

def _within_baseline_gpus(c: pd.Series) -> bool:
    """A comparison across GPU counts whose fewer GPUs are among the other side's (fewer_gpus: NF4 on one of
    the two GPUs fp16 needed)."""
    mine, theirs = _gpu_set(c.get("devices")), _gpu_set(c.get("baseline_devices"))
    return mine is not None and theirs is not None and mine != theirs and (mine < theirs or theirs < mine)

def device_warnings(configs: pd.DataFrame, comp: pd.DataFrame, batch: Optional[pd.DataFrame] = None) -> List[str]:
    """Comparisons whose two sides ran on different GPUs, and configurations pooled over several.

    Lent GPUs of one model differ by more than the effects measured here when decode is launch-bound
    (host speed, idle power), so a cross-device delta mixes device and precision (or batch size).
    """
    out: List[str] = []
    if "gpu_uuids" not in configs:
        return out
    for _, r in configs.iterrows():
        devices = r.get("gpu_uuids")
        if isinstance(devices, str) and "," in devices:
            out.append(f"Mixed devices: {r.hardware} {r.model} {r.quantization} bs{r.batch_size} pools "
                       f"repetitions from {devices.count(',') + 1} GPUs ({_short_uuids(devices)}).")

    def short(devices: object) -> str:
        return _short_uuids(devices) if isinstance(devices, str) and devices else "?"

    crossed = comp[comp.same_device.eq(False)] if "same_device" in comp else comp.iloc[0:0]
    for _, c in crossed.iterrows():
        engine = "" if c.get("engine", DEFAULT_ENGINE) == DEFAULT_ENGINE else f" {c.engine}"
        if _within_baseline_gpus(c):
            mine, theirs = _gpu_set(c.devices), _gpu_set(c.baseline_devices)
            out.append(f"GPU count: {c.hardware} {c.model} bs{c.batch_size} {c.quantization}{engine} ran on "
                       f"{len(mine)} GPU(s) ({short(c.devices)}), its {c.baseline} baseline on {len(theirs)} "
                       f"({short(c.baseline_devices)}); the fewer GPUs are among the others, so the Δ is the "
                       "GPU count by design plus the chip-to-chip difference of the GPUs only one side held.")
            continue
        out.append(f"Cross-device: {c.hardware} {c.model} bs{c.batch_size} {c.quantization}{engine} ran on "
                   f"{short(c.devices)}, its {c.baseline} baseline on {short(c.baseline_devices)}; "
                   "the Δ mixes device and precision. To separate them, measure both with one GPU visible "
                   "(and reuse_cells=false where another study measured one of them).")
    if batch is not None and "same_device" in batch:
        for _, c in batch[batch.same_device.eq(False)].iterrows():
            engine = "" if c.get("engine", DEFAULT_ENGINE) == DEFAULT_ENGINE else f" {c.engine}"
            out.append(f"Cross-device: {c.hardware} {c.model} {c.quantization}{engine} bs{c.batch_size} ran on "
                       f"{short(c.devices)}, batch 1 on {short(c.baseline_devices)}; its change against "
                       "batch 1 mixes device and batch size.")
    return out

def _engine_warnings(r: pd.Series, label: str) -> List[str]:
    """What ran other than asked, and torchao's slow or launch-bound paths."""
    out: List[str] = []
    engine = r.get("engine", DEFAULT_ENGINE)
    effective = r.get("engine_effective")
    kind = r.get("engine_kind") if isinstance(r.get("engine_kind"), str) else engine
    if isinstance(effective, str) and effective not in EXPECTED_EFFECTIVE.get(kind, {kind}):
        out.append(f"Engine: {label} asked for engine={engine} but ran {effective}; its numbers are {effective}'s "
                   "(rows: engine_note).")
    if r.get("quant_fallback") is True:
        out.append(f"Fallback: {label} ran {r.get('quant_kernel_path')}: this torchao precision reaches its fast "
                   "kernels only through torch.compile, so its numbers are its slow path's, not the precision's "
                   "cost (run it with engine=compiled).")
    path = r.get("quant_kernel_path")
    if (r.get("quant_fallback") is False and isinstance(path, str) and path.startswith("torchao Float8Tensor")
            and str(effective or engine).startswith("eager")):
        out.append(f"Launch-bound: {label} ran {path} under eager generate(): torchao's fp8 reaches its fast "
                   "_scaled_mm kernel, but quantizes every activation in separate small kernels that eager "
                   "launches one by one, so its numbers are mostly launch overhead; engine=graph or "
                   "engine=compiled gives the precision's cost.")
    return out


def _repetition_warnings(r: pd.Series, label: str, static_limit: float) -> List[str]:
    """What the cell's repetitions show: drift, throttling, a foreign process, host contention, static power."""
    out: List[str] = []
    if r.get("drift_p") is not None and r.drift_p == r.drift_p and r.drift_p < 0.05:
        out.append(f"Drift: {label} has a significant trend over its repetitions (p = {r.drift_p:.3g}).")
    if r.get("throttled_reps"):
        out.append(f"Throttled: {label} had {int(r.throttled_reps)} repetition(s) with a clock-event reason active.")
    if r.get("contaminated_reps"):
        out.append(f"Contaminated: {label} had {int(r.contaminated_reps)} repetition(s) with a foreign process on "
                   "its GPU.")
    if isinstance(r.get("host_contention"), str):
        out.append(f"Host contention: {label} {r.host_contention}")
    share = r.get("static_energy_share_mean")
    if share == share and share is not None and share > static_limit:
        out.append(f"Launch-bound: {label} spends {100 * share:.0f} % of its energy as idle (static) power; "
                   "its energy per token follows host speed more than the GPU.")
    return out


def warnings_for(configs: pd.DataFrame, cv_limit_pct: float = 5.0, static_limit: float = 0.7,
                 comp: Optional[pd.DataFrame] = None, batch: Optional[pd.DataFrame] = None) -> List[str]:
    """Every warning of the report, in order: devices, random weights, then each configuration's."""
    out: List[str] = []
    if configs.empty:
        return out
    if comp is not None:
        out += device_warnings(configs, comp, batch)
    if has_random_weights(configs):
        out.append("Random weights: speed and energy follow the architecture, but LLM.int8() outlier handling "
                   "depends on trained weights; int8 (threshold 6.0) results on random weights are not the "
                   "published mechanism.")
    for _, r in configs.iterrows():
        engine = r.get("engine", DEFAULT_ENGINE)
        label = f"{r.hardware} {r.model} {r.quantization}" + ("" if engine == DEFAULT_ENGINE else f" {engine}") \
            + f" bs{r.batch_size}"
        raw = bool(r.get("raw"))
        cv = r.get("energy_j_per_1k_tok_cv_pct")
        warnings = _engine_warnings(r, label) if raw else []
        if cv == cv and cv is not None and cv > cv_limit_pct:
            warnings.append(f"High CV: {label} energy per 1k tokens CV {cv:.1f} % (> {cv_limit_pct:g} %).")
        out += warnings + (_repetition_warnings(r, label, static_limit) if raw else [])
    return out
