#!/usr/bin/env bash
# Issue #14's re-run of int8_ablation under both engines: its four models (Yi-1.5-6B, Mistral-7B, Phi-3-mini,
# Qwen2.5-7B) x fp16, pure int8 x eager generate() and ecosweep's CUDA-graph loop (16 cells; LLM.int8() cannot
# be captured, its eager cells are in h100/), batch 1, 128 + 128 tokens, short protocol, n = 5. Each model's
# four cells share one GPU (the experiment's ray.one_gpu_per=comparison), so every Δ, engine against engine
# too, is one device's. Study `int8_ablation_engines` (its own folder: the committed eager study keeps its
# protocol). Results stay under outputs/<host>/int8_ablation_engines; rerun to resume. Best started detached:
#
#   LIMIT_S=1500 experiments/device/detached.sh start ablation experiments/int8_ablation/run_graph_on_device.sh
#   experiments/device/detached.sh wait ablation 560       (each later call, until finished)
set -u
source "$(dirname "$0")/../device/host.sh"  # repo, card, host, root, ray_stop; cd "$repo"
limit=${LIMIT_S:-540}
nvidia-smi --query-gpu=index,name,uuid,power.draw,temperature.gpu --format=csv > "$root/logs/gpus_int8_ablation_engines.csv"
timeout -s INT -k 30 $((limit - 20)) python3 -m ecosweep +experiment=int8_ablation study=int8_ablation_engines \
  'hydra.sweeper.params.quantization="fp16,int8_pure"' '+hydra.sweeper.params.engine="eager,graph"' \
  measurement=short repetitions=5 warmup=2 tracking=none ray.progress=plain output_root="$root" ${EXTRA:-} \
  >> "$root/logs/int8_ablation_engines.log" 2>&1
ray_stop
python3 experiments/device/summarize_cells.py "$root/int8_ablation_engines" > "$root/logs/summary_int8_ablation_engines.txt" 2>&1
tail -n 30 "$root/logs/summary_int8_ablation_engines.txt"
[ -n "${OUT:-}" ] && tar czf "$OUT/results_int8_ablation_engines.tgz" -C "$repo/outputs" "$host"
exit 0
