#!/usr/bin/env bash
# Run the published studies on this machine's GPUs and report each beside the published table.
#
#   experiments/run_published_studies.sh OUTPUT_ROOT [overrides...]
#
# Environment:
#   STUDIES="nf4_crossover int8_paradox int8_ablation batch_size_sweep"   which studies, in order
#   RESUME_FROM=h100     first copy the committed cells of experiments/<study>/h100/ into
#                        OUTPUT_ROOT/<study>/, so only the cells missing there are measured
#   STUDY_TIMEOUT_S=0    stop each study after this many seconds (0: no limit); the cells finished by
#                        then are complete on disk and the same command resumes
#   ENGINE=eager         decode engine (conf/engine); under graph, int8_ablation measures fp16 and
#                        int8_pure only (LLM.int8() cannot be captured) and int8_paradox is skipped
#
# The studies place a model's cells on one GPU (ray.one_gpu_per=comparison), so int8_ablation after
# int8_paradox measures its fp16 and int8 cells again beside int8_pure; add ray.one_gpu_per=cell to
# reuse them instead (same cell ids; their deltas may then cross GPUs, and the report says so).
#
# The reduced protocol of the committed H100 runs (README, "Results on H100"):
#   R="measurement=short repetitions=5 warmup=1 tracking=none"
#   STUDIES="nf4_crossover int8_paradox int8_ablation" experiments/run_published_studies.sh /tmp/st $R output_tokens=32
#   STUDIES=batch_size_sweep experiments/run_published_studies.sh /tmp/st $R output_tokens=64
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,20p "$0"; exit 2; }
root=$(realpath -m "$1"); shift
repo=$(cd "$(dirname "$0")/.." && pwd)
for study in ${STUDIES:-nf4_crossover int8_paradox int8_ablation batch_size_sweep}; do
  [ -f "$repo/conf/experiment/$study.yaml" ] || { echo "unknown study '$study': choose from $(ls "$repo/conf/experiment" | sed 's/.yaml//' | tr '\n' ' ')"; exit 2; }
  if [ -n "${RESUME_FROM:-}" ] && [ -d "$repo/experiments/$study/$RESUME_FROM/cells" ]; then
    mkdir -p "$root/$study"
    for part in cells configs timings traces; do
      [ -d "$repo/experiments/$study/$RESUME_FROM/$part" ] && cp -rn "$repo/experiments/$study/$RESUME_FROM/$part" "$root/$study/"
    done
  fi
  limit=()
  [ "${STUDY_TIMEOUT_S:-0}" != 0 ] && limit=(timeout "$STUDY_TIMEOUT_S")
  engine=()
  if [ "${ENGINE:-eager}" != eager ]; then
    engine=(engine="$ENGINE")
    [ "$ENGINE" = graph ] && [ "$study" = int8_paradox ] && { echo "int8_paradox: LLM.int8() cannot run under engine=graph; skipped"; continue; }
    [ "$ENGINE" = graph ] && [ "$study" = int8_ablation ] && engine+=('hydra.sweeper.params.quantization="fp16,int8_pure"')
  fi
  "${limit[@]}" python3 -m ecosweep +experiment="$study" output_root="$root" ray.progress=plain "${engine[@]}" "$@" \
    || echo "study $study: stopped early or some cells failed (run the same command again to resume)"
  published=()
  [ "$study" = int8_paradox ] && published=("$repo/experiments/published_rtx4090d/summary.csv")
  python3 -m ecosweep report "$root/$study" "${published[@]}" --out "$root/$study/report" || echo "study $study: no report (no usable results yet)"
done
