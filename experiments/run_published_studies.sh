#!/usr/bin/env bash
# Run the four published studies on this machine's GPUs and report each beside the published table.
#   experiments/run_published_studies.sh OUTPUT_ROOT [extra overrides...]
# e.g. on a lent GPU with little device time:
#   experiments/run_published_studies.sh /tmp/studies measurement=short repetitions=5 output_tokens=64 tracking=none
set -euo pipefail
root=$(realpath -m "$1"); shift
for study in nf4_crossover int8_paradox int8_ablation batch_size_sweep; do
  python3 -m ecosweep +experiment=$study output_root="$root" ray.progress=plain "$@" || echo "study $study: some cells failed"
  python3 -m ecosweep report "$root/$study" experiments/published_rtx4090d/summary.csv --out "$root/$study/report_vs_published"
done
