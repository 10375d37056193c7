#!/usr/bin/env bash
# Issue #20's first GPU check of cells over several GPUs (third 2026-11-27 session), on a lent 2-GPU host
# (device tool, nvidia-h100-x2; it may give H200s). One study, `two_gpu_cell`: TinyLlama-1.1B and then
# Mistral-7B, fp16, eager, batch 1, each on one GPU (ray.gpus_per_cell=1) and across both
# (ray.gpus_per_cell=2): the rows of a two-GPU cell must carry both GPUs' energy (energy_j_by_gpu), both
# moving above their idle power, and sum to energy_j. Results under outputs/<card>x<N>/ and a tarball of
# them under $OUT.
set -u
repo=$(cd "$(dirname "$0")/../.." && pwd)
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | grep -q H200 && echo h200 || echo h100)
host=${card}x$(nvidia-smi -L | wc -l)
root=$repo/outputs/$host
mkdir -p "$root/logs"
export RAY_AUTH_MODE=disabled PYTHONUNBUFFERED=1
limit=${LIMIT_S:-330}
R="measurement=short repetitions=3 warmup=1 batch_size=1 input_tokens=128 output_tokens=32 quantization=fp16 tracking=none ray.progress=plain output_root=$root study=two_gpu_cell"
nvidia-smi --query-gpu=index,name,uuid,power.draw,temperature.gpu --format=csv > "$root/logs/gpus.csv"
cd "$repo"
ray_stop() { python3 -m ray.scripts.scripts stop --force > /dev/null 2>&1; }
for model in TinyLlama-1.1B Mistral-7B; do
  left=$((limit - SECONDS - 10))
  [ $left -gt 30 ] || break
  timeout -s INT -k 20 $left python3 -m ecosweep -m model=$model ray.gpus_per_cell=1,2 $R \
    > "$root/logs/two_gpu_cell_$model.log" 2>&1
  ray_stop
done
nvidia-smi --query-gpu=index,power.draw,temperature.gpu,memory.used --format=csv >> "$root/logs/gpus.csv"
python3 - "$root/two_gpu_cell" <<'PY' > "$root/logs/summary.txt" 2>&1
import sys, pandas as pd, glob
rows = pd.concat(pd.read_parquet(p) for p in glob.glob(sys.argv[1] + "/cells/*.parquet"))
cols = ["model", "gpu_count", "gpu_uuid", "status", "repetition", "tok_s", "energy_j", "energy_j_by_gpu",
        "power_w_mean_by_gpu", "idle_power_w_by_gpu", "idle_power_w", "energy_j_per_1k_tok", "gpu_memory_peak_mb"]
pd.set_option("display.width", 250, "display.max_colwidth", 80)
print(rows[[c for c in cols if c in rows]].to_string())
print(rows[rows.status != "ok"].error.to_string() if (rows.status != "ok").any() else "all ok")
PY
cat "$root/logs/summary.txt"
[ -n "${OUT:-}" ] && tar czf "$OUT/results_multi_gpu.tgz" -C "$repo/outputs" "$host"
