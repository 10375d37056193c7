"""Meter calibration on any NVIDIA GPU: reproduces the figures of the NVML-meter issue.

    python experiments/benchmarks/meter_calibration.py --out DIR [--pairs 12]

1. A GPU-bound cell (TinyLlama-1.1B fp16, batch 8, 2046 input, 2 new tokens), 10
   repetitions of >= 5 s, through the full CLI (Ray actor, NVML by UUID): counter vs
   sampled integral per repetition, energy and tok/s CV, idle baseline, static share.
2. Launch-bound decode (TinyLlama-1.1B fp16 and nf4, batch 1, 128 + 128 tokens),
   10 repetitions each: CV with the host (CPU steal, load) and GPU (utilisation,
   clocks, temperature) metrics recorded beside it.
3. Sampler cost: the sampler's CPU use at the default rate on an idle GPU, and
   alternated pairs of windows of the GPU-bound workload with the sampler on and off:
   the tok/s ratio (on / off) with its 95 % CI.

Writes DIR/summary.json and DIR/summary.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

GPU_BOUND = ["model=TinyLlama-1.1B", "quantization=fp16", "batch_size=8", "input_tokens=2046", "output_tokens=2"]


def cli(args, out_root: Path, log) -> None:
    cmd = [sys.executable, "-m", "ecosweep", *args, f"output_root={out_root}", "tracking=none", "ray.progress=plain"]
    print("+", " ".join(cmd), flush=True)
    t = time.time()
    proc = subprocess.run(cmd, cwd=REPO, text=True, capture_output=True)
    log.write(proc.stdout + proc.stderr)
    print(proc.stdout[-2500:], proc.stderr[-1500:], f"[{time.time() - t:.0f} s]", flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode})")


def cv_pct(values) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return 100 * statistics.stdev(v) / statistics.fmean(v) if len(v) > 1 else math.nan


def describe_cells(study_dir: Path) -> list[dict]:
    from ecosweep.results.store import read_results

    df = read_results([study_dir]).to_pandas()
    out = []
    for _, g in df.groupby("cell_id"):
        first = g.iloc[0]
        out.append({
            "cell": f"{first.model}/{first.quantization}/bs{first.batch_size}/in{first.input_tokens}/out{first.output_tokens}",
            "n": len(g), "device": g.device_name.iloc[0], "energy_source": g.energy_source.iloc[0],
            "tok_s_mean": g.tok_s.mean(), "tok_s_cv_pct": cv_pct(g.tok_s),
            "energy_j_per_1k_tok_mean": g.energy_j_per_1k_tok.mean(), "energy_cv_pct": cv_pct(g.energy_j_per_1k_tok),
            "power_w_mean": g.power_w_mean.mean(), "power_w_peak_max": g.power_w_peak.max(),
            "window_s_min": g.seconds.min(),
            "counter_vs_sampled_pct_max_abs": g.counter_vs_sampled_pct.abs().max(),
            "idle_power_w": g.idle_power_w.iloc[0], "idle_temperature_c": g.idle_temperature_c.iloc[0],
            "static_energy_share_mean": g.static_energy_share.mean(),
            "gpu_util_pct_mean": g.gpu_util_pct_mean.mean(), "sm_clock_mhz_mean": g.sm_clock_mhz_mean.mean(),
            "temperature_c_max": g.temperature_c_max.max(), "cpu_steal_pct_mean": g.cpu_steal_pct.mean(),
            "cpu_util_pct_mean": g.cpu_util_pct.mean(), "cpu_load_1m_mean": g.cpu_load_1m.mean(),
            "sampler_cpu_pct_mean": g.sampler_cpu_pct.mean(),
            "throttled_reps": int(g.throttled.fillna(False).sum()), "contaminated_reps": int(g.contaminated.fillna(False).sum()),
            "tok_s_vs_cpu_steal_r": g.tok_s.corr(g.cpu_steal_pct) if g.cpu_steal_pct.std() > 0 else math.nan,
            "tok_s_vs_sm_clock_r": g.tok_s.corr(g.sm_clock_mhz_mean) if g.sm_clock_mhz_mean.std() > 0 else math.nan,
            "tok_s_trend_per_rep_pct": 100 * _slope(g.sort_values("repetition").tok_s.tolist()) / g.tok_s.mean(),
        })
    return out


def _slope(y) -> float:
    from scipy import stats

    return float(stats.linregress(range(len(y)), y).slope) if len(y) > 2 else math.nan


def sampler_cost(out_root: Path, pairs: int, window_s: float) -> dict:
    """Idle CPU cost of the sampler and the on/off tok/s ratio on the GPU-bound workload."""
    import torch
    from scipy import stats

    sys.path.insert(0, str(REPO / "tests"))
    from hydra import compose, initialize_config_dir

    from ecosweep.cells import to_settings
    from ecosweep.config.schema import register_configs
    from ecosweep.measure.meters.nvml import NvmlMeter
    from ecosweep.workload.generation import FixedLengthGeneration
    from ecosweep.workload.models import load_model

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        s = to_settings(compose("config", overrides=GPU_BOUND + ["hardware=auto"]))
    loaded = load_model(s, "cuda:0")
    w = FixedLengthGeneration(loaded.model, loaded.vocab_size, 8, 2046, 2, 0, "cuda:0")
    uuid = "GPU-" + str(torch.cuda.get_device_properties(0).uuid)
    for _ in range(5):
        w.generate()

    # idle CPU cost of the sampler at the default rate
    m = NvmlMeter(uuid, sample_hz=20.0)
    m.start()
    cpu0, t0 = m._sampler_cpu_s(), time.monotonic()
    time.sleep(10)
    idle_cpu_pct = 100 * (m._sampler_cpu_s() - cpu0) / (time.monotonic() - t0)
    m.close()

    def window(sampler_on: bool) -> float:
        meter = NvmlMeter(uuid, sample_hz=20.0) if sampler_on else None
        if meter:
            meter.start()
        try:
            torch.cuda.synchronize()
            start, tokens = time.perf_counter(), 0
            while time.perf_counter() - start < window_s:
                tokens += w.generate()
            torch.cuda.synchronize()
            return tokens / (time.perf_counter() - start)
        finally:
            if meter:
                meter.close()

    ratios = []
    for i in range(pairs):
        if i % 2 == 0:
            on, off = window(True), window(False)
        else:
            off, on = window(False), window(True)
        ratios.append(on / off)
    mean = statistics.fmean(ratios)
    half = stats.t.ppf(0.975, len(ratios) - 1) * statistics.stdev(ratios) / math.sqrt(len(ratios))
    return {"sampler_idle_cpu_pct_of_one_core": idle_cpu_pct, "pairs": pairs, "window_s": window_s,
            "tok_s_ratio_on_off_mean": mean, "ratio_ci95_low": mean - half, "ratio_ci95_high": mean + half,
            "ratios": ratios}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--pair-window-s", type=float, default=3.0)
    ap.add_argument("--skip-cells", action="store_true")
    ap.add_argument("--override", action="append", default=[],
                    help="extra Hydra override for the cells, e.g. measurement.align_counter_ticks=true (repeatable)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root = args.out / "outputs"
    summary: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with open(args.out / "cli.log", "w") as log:
        if not args.skip_cells:
            cli(["study=calib_gpu_bound", *GPU_BOUND, "repetitions=10", "measurement.target_ci_pct=0", *args.override],
                root, log)
            cli(["-m", "study=calib_decode", "model=TinyLlama-1.1B", "quantization=fp16,nf4", "batch_size=1",
                 "input_tokens=128", "output_tokens=128", "repetitions=10", "measurement.target_ci_pct=0",
                 *args.override], root, log)
            summary["gpu_bound"] = describe_cells(root / "calib_gpu_bound")
            summary["decode"] = describe_cells(root / "calib_decode")
    summary["sampler"] = sampler_cost(root, args.pairs, args.pair_window_s)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    lines = ["| cell | n | tok/s | tok/s CV % | J/1k tok | energy CV % | W mean | idle W | static share | "
             "max |counter-sampled| % | GPU util % | SM MHz | CPU steal % | throttled | contaminated |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in summary.get("gpu_bound", []) + summary.get("decode", []):
        lines.append(f"| {c['cell']} | {c['n']} | {c['tok_s_mean']:.1f} | {c['tok_s_cv_pct']:.2f} | "
                     f"{c['energy_j_per_1k_tok_mean']:.1f} | {c['energy_cv_pct']:.2f} | {c['power_w_mean']:.0f} | "
                     f"{c['idle_power_w']:.0f} | {c['static_energy_share_mean']:.2f} | "
                     f"{c['counter_vs_sampled_pct_max_abs']:.2f} | {c['gpu_util_pct_mean']:.0f} | "
                     f"{c['sm_clock_mhz_mean']:.0f} | {c['cpu_steal_pct_mean']:.2f} | {c['throttled_reps']} | "
                     f"{c['contaminated_reps']} |")
    sp = summary["sampler"]
    lines.append(f"\nSampler: {sp['sampler_idle_cpu_pct_of_one_core']:.2f} % of one core at 20 Hz (idle GPU); "
                 f"tok/s ratio on/off over {sp['pairs']} pairs: {sp['tok_s_ratio_on_off_mean']:.4f} "
                 f"(95 % CI {sp['ratio_ci95_low']:.4f} .. {sp['ratio_ci95_high']:.4f})")
    text = "\n".join(lines)
    (args.out / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
