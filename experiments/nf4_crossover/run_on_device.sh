#!/usr/bin/env bash
# Issue #17's sharper size crossover: `+experiment=nf4_crossover` with its six models (TinyLlama-1.1B,
# Qwen2-1.5B, Qwen2.5-3B, Phi-3-mini, Qwen1.5-4B, Qwen2-7B) x fp16, nf4, under eager generate() AND ecosweep's
# CUDA-graph loop (24 cells), 128 + 128 tokens, batch 1, short protocol, n = 5. Each model's four cells share
# one GPU (the experiment's ray.one_gpu_per=comparison): every Δ, engine against engine too, is one device's;
# on a 4-GPU host the six models run four at a time (about 10 min), on one GPU one after another (about 30).
# Results stay under outputs/<host>/nf4_crossover; rerun to resume. EXTRA: more overrides. Best started detached:
#
#   LIMIT_S=1500 experiments/device/detached.sh start nf4 experiments/nf4_crossover/run_on_device.sh
#   experiments/device/detached.sh wait nf4 560       (each later call, until finished)
set -u
source "$(dirname "$0")/../device/host.sh"  # repo, card, host, root, ray_stop; cd "$repo"
limit=${LIMIT_S:-540}
nvidia-smi --query-gpu=index,name,uuid,power.draw,temperature.gpu --format=csv > "$root/logs/gpus_nf4_crossover.csv"
timeout -s INT -k 30 $((limit - 20)) python3 -m ecosweep +experiment=nf4_crossover \
  '+hydra.sweeper.params.engine="eager,graph"' measurement=short repetitions=5 warmup=2 \
  tracking=none ray.progress=plain output_root="$root" ${EXTRA:-} >> "$root/logs/nf4_crossover.log" 2>&1
ray_stop
python3 experiments/device/summarize_cells.py "$root/nf4_crossover" > "$root/logs/summary_nf4_crossover.txt" 2>&1
tail -n 30 "$root/logs/summary_nf4_crossover.txt"
[ -n "${OUT:-}" ] && tar czf "$OUT/results_nf4_crossover.tgz" -C "$repo/outputs" "$host"
exit 0
