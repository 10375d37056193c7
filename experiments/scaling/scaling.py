"""Scaling of one study over 1, 2, 4, 8 GPUs: wall time, cells per hour, per-cell energy.

    # one run per GPU count (each may run in its own call / on its own GPUs)
    python experiments/scaling/scaling.py run --out DIR --gpus 1 [--devices 3]
    python experiments/scaling/scaling.py run --out DIR --gpus 4
    # then, anywhere (CPU is enough), over the folders the runs wrote
    python experiments/scaling/scaling.py summarize DIR [DIR ...] --out SUMMARY_DIR

The grid: 16 prefill-heavy cells (TinyLlama-1.1B x fp16/nf4 x batch 4/8/16/32 x 512/1024
prompt tokens, 2 new tokens), a reduced protocol (3 repetitions of >= 2.5 s windows). Batch-1
decode is left out on purpose: on these hosts it is launch-bound and its energy moves by up to
2x between runs for host reasons (see experiments/benchmarks). Measured on H200s, only the
cells at >= ~85 % GPU utilisation (batch 32, and nf4 batch 16-32 at 1024 tokens) were truly
GPU-bound; the smaller ones still followed host timing. Extra Hydra overrides after ``--``
replace the grid's, e.g. ``-- batch_size=16,32,48,64 input_tokens=1024,2046`` for a grid that
is GPU-bound throughout. The random-weight checkpoint is built before the timed run.

``run`` writes DIR/run_<N>gpu.json (wall time, cells/hour, where the time went) and the
study's results under DIR/outputs/scale_<N>gpu/. ``summarize`` compares every run with
the 1-GPU run: wall time against 1.2 x T1 / N and each cell's energy per 1k tokens
against its 1-GPU value (3 %), and writes summary.json, summary.md and scaling.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments" / "benchmarks"))
from parallel_scaling import PHASES, breakdown, cli, timings  # noqa: E402  (the same CLI runner and timings)

GRID = ["model=TinyLlama-1.1B", "quantization=fp16,nf4", "batch_size=4,8,16,32", "input_tokens=512,1024",
        "output_tokens=2"]
PROTOCOL = ["repetitions=3", "measurement.min_window_s=2.5", "measurement.prefill_min_window_s=0.3",
            "measurement.warmup_min_s=1", "measurement.idle_settle_s=1", "measurement.idle_window_s=1.5",
            "measurement.target_ci_pct=0"]
WALL_TOLERANCE = 1.2   # wall(N) <= 1.2 * wall(1) / N
ENERGY_TOLERANCE_PCT = 3.0


def merged(base: list[str], extra: list[str]) -> list[str]:
    """``base`` overrides with those of ``extra`` replacing the same keys (and added after)."""
    keys = {e.split("=", 1)[0] for e in extra}
    return [b for b in base if b.split("=", 1)[0] not in keys] + list(extra)


def run(args: argparse.Namespace) -> None:
    devices = args.devices or ",".join(str(i) for i in range(args.gpus))
    if len(devices.split(",")) != args.gpus:
        raise SystemExit(f"--devices {devices!r} names {len(devices.split(','))} GPUs, --gpus is {args.gpus}")
    root = args.out / "outputs"
    first = devices.split(",")[0]
    # the checkpoint every cell loads (fp16 and nf4 both load the fp16 one), built outside the timed run
    grid = merged(GRID + PROTOCOL, args.extra)
    model = [g for g in grid if g.startswith("model=")]
    cli([*model, "quantization=fp16", "batch_size=1", "repetitions=1", "measurement=quick",
         f"study=prebuild_{args.gpus}gpu", *[e for e in args.extra if e.startswith("hardware=")]], root, first)
    study = f"scale_{args.gpus}gpu"
    wall = cli(["-m", f"study={study}", *grid], root, devices)
    rows = timings(root / study)
    spent = breakdown(rows)
    result = {"gpus": args.gpus, "devices": devices, "wall_s": wall, "cells": len(rows),
              "cells_per_hour": 3600 * len(rows) / wall, "overrides": grid,
              "cell_seconds": spent["cell_seconds"], "phases_s": {k: spent[k] for k in PHASES},
              "actor_devices": sorted({r["cuda_visible_devices"] for r in rows}),
              "driver_s": driver_timing(root / study)}
    (args.out / f"run_{args.gpus}gpu.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "overrides"}, indent=1))


def driver_timing(study_dir: Path) -> dict | None:
    """The study's newest runs/<run_id>.json: the driver's wall time around the cells (Ray start, report, ...)."""
    found = sorted((study_dir / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(found[-1].read_text()) if found else None


def per_cell_energy(study_dir: Path):
    """Mean energy per 1k tokens of each cell (by cell_id) with its label and GPU."""
    from ecosweep.results.store import read_results

    df = read_results([study_dir]).to_pandas()
    ok = df[df.status == "ok"]
    g = ok.groupby("cell_id")
    out = g.agg(energy_j_per_1k_tok=("energy_j_per_1k_tok", "mean"),
                energy_sd=("energy_j_per_1k_tok", "std"), n=("energy_j_per_1k_tok", "size"),
                tok_s=("tok_s", "mean"), power_w_mean=("power_w_mean", "mean"),
                gpu_uuid=("gpu_uuid", "first"), quantization=("quantization", "first"),
                batch_size=("batch_size", "first"), input_tokens=("input_tokens", "first"),
                gpu_util_pct=("gpu_util_pct_mean", "mean"), throttled_reps=("throttled", "sum"))
    return out


def summarize(args: argparse.Namespace) -> None:
    import math

    runs = {}
    for d in args.dirs:
        for p in sorted(Path(d).glob("run_*gpu.json")):
            r = json.loads(p.read_text())
            r["study_dir"] = str(Path(d) / "outputs" / f"scale_{r['gpus']}gpu")
            runs[r["gpus"]] = r
    if 1 not in runs:
        raise SystemExit(f"no 1-GPU run (run_1gpu.json) among {args.dirs}")
    base = runs[1]
    base_cells = per_cell_energy(Path(base["study_dir"]))
    summary = {"runs": [], "tolerance": {"wall": WALL_TOLERANCE, "energy_pct": ENERGY_TOLERANCE_PCT}}
    lines = ["| GPUs | cells | wall s | cells/h | wall / T1 | bound 1.2·T1/N s | wall ok | "
             "max abs Δ energy/1k tok vs 1 GPU % | cells within 3 % |", "|---|---|---|---|---|---|---|---|---|"]
    cell_tables = []
    for n in sorted(runs):
        r = runs[n]
        bound = WALL_TOLERANCE * base["wall_s"] / n
        cells = per_cell_energy(Path(r["study_dir"]))
        joined = cells.merge(base_cells[["energy_j_per_1k_tok", "gpu_uuid", "gpu_util_pct"]], left_index=True, right_index=True,
                             suffixes=("", "_1gpu"))
        joined["delta_pct"] = 100 * (joined.energy_j_per_1k_tok / joined.energy_j_per_1k_tok_1gpu - 1)
        within = int((joined.delta_pct.abs() <= ENERGY_TOLERANCE_PCT).sum())
        max_abs = float(joined.delta_pct.abs().max()) if len(joined) else math.nan
        entry = {"gpus": n, "cells": r["cells"], "wall_s": r["wall_s"], "cells_per_hour": r["cells_per_hour"],
                 "wall_ratio_vs_1gpu": r["wall_s"] / base["wall_s"], "wall_bound_s": bound,
                 "wall_within_bound": r["wall_s"] <= bound, "energy_max_abs_delta_pct": max_abs,
                 "cells_within_energy_tolerance": within, "cells_compared": len(joined),
                 "devices": r["devices"],
                 "per_cell": joined.reset_index().to_dict(orient="records")}
        summary["runs"].append(entry)
        lines.append(f"| {n} | {r['cells']} | {r['wall_s']:.1f} | {r['cells_per_hour']:.0f} | "
                     f"{entry['wall_ratio_vs_1gpu']:.3f} | {bound:.1f} | {'yes' if entry['wall_within_bound'] else 'NO'} | "
                     f"{max_abs:.2f} | {within}/{len(joined)} |")
        if n != 1:
            cell_tables.append((n, joined))
    drivers = [(n, runs[n]["driver_s"]) for n in sorted(runs) if runs[n].get("driver_s")]
    if drivers:  # runs made before the driver timed itself have none
        lines += ["", "Driver wall time around the cells (s):", "",
                  "| GPUs | wall | start + plan | Ray start | cells | Ray stop | summary + report |", "|---|---|---|---|---|---|---|"]
        for n, d in drivers:
            lines.append(f"| {n} | {d['wall_s']:.1f} | {d.get('start_and_plan_s', math.nan):.1f} | "
                         f"{d.get('ray_start_s', math.nan):.1f} | {d.get('cells_s', math.nan):.1f} | "
                         f"{d.get('ray_stop_s', math.nan):.1f} | {d.get('summary_and_report_s', math.nan):.1f} |")
    for n, joined in cell_tables:
        lines += ["", f"Per cell, {n} GPUs vs 1 GPU (energy per 1k tokens, J):", "",
                  "| cell | 1 GPU | GPU (1-GPU run) | GPU util % (1 GPU) | N GPUs | GPU (N-GPU run) | Δ % | throttled reps |",
                  "|---|---|---|---|---|---|---|---|"]
        for _, c in joined.sort_values(["quantization", "batch_size", "input_tokens"]).iterrows():
            lines.append(f"| {c.quantization}/bs{c.batch_size}/in{c.input_tokens} | {c.energy_j_per_1k_tok_1gpu:.1f} | "
                         f"{_short(c.gpu_uuid_1gpu)} | {c.gpu_util_pct_1gpu:.0f} | {c.energy_j_per_1k_tok:.1f} | {_short(c.gpu_uuid)} | "
                         f"{c.delta_pct:+.2f} | {int(c.throttled_reps)} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    plot(summary, args.out / "scaling.png")
    print("\n".join(lines))


def _short(uuid) -> str:
    return uuid[-8:] if isinstance(uuid, str) else "-"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = summary["runs"]
    n = [r["gpus"] for r in runs]
    wall = [r["wall_s"] for r in runs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(n, wall, "o-", label="measured")
    a.plot(n, [wall[0] / k for k in n], "--", label="ideal T1/N")
    a.plot(n, [WALL_TOLERANCE * wall[0] / k for k in n], ":", label="bound 1.2·T1/N")
    a.set(xlabel="GPUs", ylabel="wall time, s", xticks=n, title="Study wall time (16 cells)")
    a.legend()
    for r in runs[1:]:
        deltas = [c["delta_pct"] for c in r["per_cell"]]
        b.plot([r["gpus"]] * len(deltas), deltas, "o", alpha=0.6)
    b.axhline(ENERGY_TOLERANCE_PCT, ls=":", c="grey")
    b.axhline(-ENERGY_TOLERANCE_PCT, ls=":", c="grey")
    b.set(xlabel="GPUs", ylabel="Δ energy/1k tok vs 1 GPU, %", xticks=n, title="Per-cell energy vs 1-GPU run")
    fig.tight_layout()
    fig.savefig(path, dpi=150)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the grid on N GPUs")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--gpus", type=int, required=True)
    r.add_argument("--devices", help="physical GPU indices to use, e.g. 3 or 0,1 (default 0..N-1)")
    r.add_argument("extra", nargs="*", help="Hydra overrides replacing the grid's or protocol's (e.g. a CPU rehearsal)")
    s = sub.add_parser("summarize", help="compare the runs with the 1-GPU run")
    s.add_argument("dirs", nargs="+", type=Path)
    s.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    run(args) if args.command == "run" else summarize(args)


if __name__ == "__main__":
    main()
