"""Parallel sweeps on one machine: wall time on 1 vs N GPUs, where the time goes, interference.

    python experiments/benchmarks/parallel_scaling.py --out DIR [--gpus 1,2] [--repetitions 3]

1. The same grid (TinyLlama-1.1B x fp16/nf4 x batch 1/8 x 128/512 input tokens = 8 cells)
   through the CLI with 1, 2, ... visible GPUs (CUDA_VISIBLE_DEVICES); the random-weight
   checkpoint is built beforehand so no run pays for it. Wall time, cells per hour.
2. Where each cell's time went (actor start, load, warm-up, idle baseline, cool-down,
   measurement windows, writing), from the studies' timings/ files.
3. Interference: a GPU-bound cell measured alone, then while another GPU-bound cell runs
   on the other GPU; energy per 1k tokens of the two.
Writes DIR/scaling.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

GRID = ["model=TinyLlama-1.1B", "quantization=fp16,nf4", "batch_size=1,8", "input_tokens=128,512", "output_tokens=32"]
GPU_BOUND = ["model=TinyLlama-1.1B", "quantization=fp16", "input_tokens=2046", "output_tokens=2"]
from ecosweep.results.timing import PHASE_NAMES, has_breakdown  # noqa: E402

PHASES = [p for p in PHASE_NAMES if p != "other_s"]


def cli(args: list[str], root: Path, gpus: str) -> float:
    """Run the ecosweep CLI with only GPUs ``gpus`` visible; returns its wall time in seconds."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpus}
    cmd = [sys.executable, "-m", "ecosweep", *args, f"output_root={root}", "tracking=none", "ray.progress=plain"]
    print("+ CUDA_VISIBLE_DEVICES=%s" % gpus, " ".join(cmd), flush=True)
    t = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, text=True, capture_output=True)
    wall = time.time() - t
    print(proc.stdout[-3000:], proc.stderr[-800:], f"[{wall:.1f} s]", flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode})")
    return wall


def timings(study_dir: Path) -> list[dict]:
    """The timings/<cell_id>.json records of a study folder."""
    return [json.loads(p.read_text()) for p in sorted((study_dir / "timings").glob("*.json"))]


def breakdown(rows: list[dict]) -> dict:
    """The cells' phases summed (ecosweep.results.timing); timings written before the full breakdown are refused."""
    if not all(has_breakdown(r) for r in rows):
        raise SystemExit("these timings predate the full breakdown (results/timing.py): measure the cells again")
    total = {k: sum(r[k] for r in rows) for k in PHASES}
    span = sum(r["wall_s"] for r in rows)
    total["other_s"] = span - sum(total.values())
    measure = total["windows_s"] + total["between_windows_s"]
    return {"cell_seconds": span, **total, "measure_share": measure / span,
            "windows_share": (total["windows_s"] + total["idle_window_s"]) / span}


def energy_per_1k(study_dir: Path, batch: int) -> dict:
    from ecosweep.results.store import read_results

    df = read_results([study_dir]).to_pandas()
    g = df[df.batch_size == batch]
    return {"mean": g.energy_j_per_1k_tok.mean(), "sd": g.energy_j_per_1k_tok.std(), "n": len(g),
            "cv_pct": 100 * g.energy_j_per_1k_tok.std() / g.energy_j_per_1k_tok.mean()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gpus", default="1,2", help="GPU counts to compare, e.g. 1,2 or 1,2,4,8")
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--min-window-s", type=float, default=2.0)
    ap.add_argument("--interference-repetitions", type=int, default=5)
    ap.add_argument("--skip-interference", action="store_true")
    ap.add_argument("--skip-grid", action="store_true")
    ap.add_argument("--default-protocol", action="store_true",
                    help="run the grid at the default protocol (10 repetitions of 5 s windows, no adaptive extension)")
    args = ap.parse_args()
    root = args.out / "outputs"
    reduced = [f"repetitions={args.repetitions}", f"measurement.min_window_s={args.min_window_s}",
               "measurement.prefill_min_window_s=0.5", "measurement.warmup_min_s=1", "measurement.idle_settle_s=1",
               "measurement.idle_window_s=2", "measurement.target_ci_pct=0"]
    protocol = ["measurement.target_ci_pct=0"] if args.default_protocol else reduced
    # build the random-weight checkpoint once, outside every timed run
    if not args.skip_grid:
        cli(["model=TinyLlama-1.1B", "quantization=fp16", "repetitions=1", "measurement=quick", "study=prebuild"],
            root, "0")
    result: dict = {"grid": GRID, "protocol": protocol, "runs": []}
    for n in [] if args.skip_grid else [int(x) for x in args.gpus.split(",")]:
        study = f"scale_{n}gpu"
        wall = cli(["-m", f"study={study}", *GRID, *protocol], root, ",".join(str(i) for i in range(n)))
        rows = timings(root / study)
        result["runs"].append({"gpus": n, "wall_s": wall, "cells": len(rows), "cells_per_hour": 3600 * len(rows) / wall,
                               "devices": sorted({r["cuda_visible_devices"] for r in rows}),
                               "breakdown": breakdown(rows)})
    base = result["runs"][0]["wall_s"] if result["runs"] else None
    for r in result["runs"]:
        r["wall_ratio_vs_1gpu"] = r["wall_s"] / base
    if not args.skip_interference:
        reps = [f"repetitions={args.interference_repetitions}", "measurement.target_ci_pct=0"]
        cli(["study=interference_alone", *GPU_BOUND, "batch_size=8", *reps], root, "0")
        cli(["-m", "study=interference_shared", *GPU_BOUND, "batch_size=8,16", *reps], root, "0,1")
        alone = energy_per_1k(root / "interference_alone", 8)
        shared = energy_per_1k(root / "interference_shared", 8)
        result["interference"] = {"alone": alone, "shared": shared,
                                  "delta_pct": 100 * (shared["mean"] - alone["mean"]) / alone["mean"],
                                  "default_protocol_breakdown": breakdown(timings(root / "interference_alone"))}
    (args.out / "scaling.json").write_text(json.dumps(result, indent=1, default=float))
    for r in result["runs"]:
        b = r["breakdown"]
        phases = ", ".join(f"{k} {b[k]:.1f}" for k in PHASES + ["other_s"])
        print(f"{r['gpus']} GPU(s): {r['cells']} cells in {r['wall_s']:.1f} s ({r['cells_per_hour']:.0f} cells/h), "
              f"ratio vs 1 GPU {r['wall_ratio_vs_1gpu']:.3f}; devices {r['devices']}; measurement share "
              f"{100 * b['measure_share']:.1f} % (with the idle-baseline window {100 * b['windows_share']:.1f} %) "
              f"({phases})")
    if "interference" in result:
        i = result["interference"]
        print(f"GPU-bound cell energy/1k tok alone {i['alone']['mean']:.1f} (CV {i['alone']['cv_pct']:.2f} %), "
              f"beside another cell {i['shared']['mean']:.1f} (CV {i['shared']['cv_pct']:.2f} %): "
              f"delta {i['delta_pct']:+.2f} %; default-protocol measurement share "
              f"{100 * i['default_protocol_breakdown']['measure_share']:.1f} %")


if __name__ == "__main__":
    main()
