#!/usr/bin/env bash
# Issue #19's GPU runs (third 2026-11-27 session), on one lent H100 (device tool, nvidia-h100-x1), in two
# phases that each fit one 10-minute device call. Results land under outputs/<card>x<N>/ (kept on a warm
# machine between calls) and a tarball of them under $OUT.
#
#   experiments/int8_outliers/run_on_device.sh G|H
#
# G  int8_ablation's Mistral-7B cells (eager; fp16, int8, int8_pure) with plain random weights (study
#    int8_ablation), then with 6 planted outlier features (study int8_ablation_outliers), one GPU, one
#    after another: does the LLM.int8() - pure int8 gap move when the decomposition has columns to take?
#    Every cell also records its fidelity against the fp16 reference and LLM.int8()'s decomposed columns.
# H  fidelity: TinyLlama-1.1B and Mistral-7B x fp16, nf4, int8, int8_pure (Mistral's fp16/int8/int8_pure
#    are G's cells, reused); then the load-time benchmark (random weights in memory against the checkpoint
#    path) for Mistral-7B fp16 and nf4.
# Protocol as the committed H100 int8_ablation (so the re-run compares with it): measurement=short,
# 5 repetitions, 1 warm-up call, 128 prompt + 32 new tokens, batch 1.
set -u
phase=${1:?phase G or H}
source "$(dirname "$0")/../device/host.sh"  # repo, card, host, root, ray_stop; cd "$repo"
export CUDA_VISIBLE_DEVICES=0
limit=${LIMIT_S:-540}
R="measurement=short repetitions=5 warmup=1 output_tokens=32 tracking=none ray.progress=plain output_root=$root"
nvidia-smi --query-gpu=index,name,uuid,power.draw,temperature.gpu --format=csv > "$root/logs/gpus_$phase.csv"
left() { echo $((limit - SECONDS - 10)); }
case $phase in
  G)
    timeout -s INT -k 30 $(left) python3 -m ecosweep +experiment=int8_ablation model=Mistral-7B $R \
      > "$root/logs/int8_ablation.log" 2>&1
    ray_stop
    timeout -s INT -k 30 $(left) python3 -m ecosweep +experiment=int8_ablation model=Mistral-7B \
      outlier_features.count=6 study=int8_ablation_outliers $R > "$root/logs/int8_ablation_outliers.log" 2>&1
    ;;
  H)
    timeout -s INT -k 30 $((limit - 230)) python3 -m ecosweep -m model=TinyLlama-1.1B,Mistral-7B \
      quantization=fp16,nf4,int8,int8_pure study=fidelity batch_size=1 input_tokens=128 $R \
      > "$root/logs/fidelity.log" 2>&1
    ray_stop
    timeout -s INT -k 30 $(left) python3 experiments/benchmarks/load_paths.py --out "$root/load_paths" \
      --model Mistral-7B --quantizations fp16,nf4 --device cuda:0 --repeats 2 > "$root/logs/load_paths.log" 2>&1
    ;;
  *) echo "unknown phase $phase"; exit 2 ;;
esac
ray_stop
nvidia-smi --query-gpu=index,power.draw,temperature.gpu,memory.used --format=csv >> "$root/logs/gpus_$phase.csv"
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/results_$phase.tgz" -C "$repo/outputs" "$host"
fi
