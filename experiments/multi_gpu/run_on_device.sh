#!/usr/bin/env bash
# Issue #20's GPU runs of cells over several GPUs, on a lent 2-GPU host (device tool, nvidia-h100-x2; it may
# give H200s), in phases that each fit one 10-minute device call (results kept on a warm machine between calls,
# under outputs/<card>x<N>/, and a tarball of them under $OUT):
#
#   experiments/multi_gpu/run_on_device.sh A|B|C|D
#
# A  study `two_gpu_cell`: TinyLlama-1.1B and then Mistral-7B, fp16, eager, batch 1, each on one GPU
#    (ray.gpus_per_cell=1) and across both (ray.gpus_per_cell=2): the rows of a two-GPU cell must carry both
#    GPUs' energy (energy_j_by_gpu), both moving above their idle power, and sum to energy_j. (Run on
#    2026-11-27; Mistral's two-GPU cell did not finish loading: weights were then drawn on the CPU.)
# B  +experiment=fewer_gpus (Llama-3-70B: fp16 on both GPUs, nf4 and int8_pure on one, batch 1 and 16) under
#    the short protocol, n = 3 (device time: each cell draws its 141 GB of 16-bit random weights; on
#    2026-11-27 through host memory, 137-251 s a cell; since, as the loader asks for each tensor);
#    resumable: run B again on the warm machine until every cell is done.
# D  the batch-16 half of fewer_gpus, whole on one host (fp16 on both GPUs, nf4 and pure int8 on one), as its
#    own study `fewer_gpus_bs16`: the 2026-11-27 host measured every cell but pure int8 at batch 16, and a
#    cell from another host cannot join its comparisons. Long (three 70B cells): start it detached,
#    LIMIT_S=1500 experiments/device/detached.sh start fewer experiments/multi_gpu/run_on_device.sh D
# C  the load-time benchmark with the tensor-by-tensor path (Mistral-7B fp16, nf4), then A again (resumes
#    Mistral's two-GPU cell).
set -u
phase=${1:-A}
source "$(dirname "$0")/../device/host.sh"  # repo, card, host, root, ray_stop; cd "$repo"
limit=${LIMIT_S:-330}
R="measurement=short repetitions=3 warmup=1 batch_size=1 input_tokens=128 output_tokens=32 quantization=fp16 tracking=none ray.progress=plain output_root=$root study=two_gpu_cell"
nvidia-smi --query-gpu=index,name,uuid,power.draw,temperature.gpu --format=csv > "$root/logs/gpus.csv"
two_gpu_cell() {
  for model in TinyLlama-1.1B Mistral-7B; do
    left=$((limit - SECONDS - 10))
    [ $left -gt 30 ] || break
    timeout -s INT -k 20 $left python3 -m ecosweep -m model=$model ray.gpus_per_cell=1,2 $R \
      > "$root/logs/two_gpu_cell_$model.log" 2>&1
    ray_stop
  done
}
case $phase in
  A) two_gpu_cell ;;
  B) timeout -s INT -k 30 $((limit - 10)) python3 -m ecosweep +experiment=fewer_gpus measurement=short repetitions=3 \
       tracking=none ray.progress=plain output_root="$root" >> "$root/logs/fewer_gpus.log" 2>&1
     ray_stop ;;
  D) timeout -s INT -k 30 $((limit - 10)) python3 -m ecosweep +experiment=fewer_gpus hydra.sweeper.params.batch_size=16 \
       study=fewer_gpus_bs16 measurement=short repetitions=3 tracking=none ray.progress=plain output_root="$root" \
       >> "$root/logs/fewer_gpus_bs16.log" 2>&1
     ray_stop ;;
  C) timeout -s INT -k 20 240 python3 experiments/benchmarks/load_paths.py --out "$root/load_paths" --model Mistral-7B \
       --quantizations fp16,nf4 --device cuda:0 --repeats 1 > "$root/logs/load_paths.log" 2>&1
     two_gpu_cell ;;
  *) echo "unknown phase $phase"; exit 2 ;;
esac
nvidia-smi --query-gpu=index,power.draw,temperature.gpu,memory.used --format=csv >> "$root/logs/gpus.csv"
case $phase in B) study=fewer_gpus ;; D) study=fewer_gpus_bs16 ;; *) study=two_gpu_cell ;; esac
[ -d "$root/$study/cells" ] && python3 - "$root/$study" <<'PY' > "$root/logs/summary_$study.txt" 2>&1
import sys, pandas as pd, glob, json
rows = pd.concat(pd.read_parquet(p) for p in glob.glob(sys.argv[1] + "/cells/*.parquet"))
cols = ["model", "quantization", "batch_size", "gpu_count", "status", "repetition", "tok_s", "energy_j",
        "energy_j_by_gpu", "power_w_mean_by_gpu", "idle_power_w_by_gpu", "energy_j_per_1k_tok", "gpu_memory_peak_mib"]
pd.set_option("display.width", 250, "display.max_colwidth", 80)
print(rows[[c for c in cols if c in rows]].to_string())
print(rows[rows.status != "ok"].error.to_string() if (rows.status != "ok").any() else "all ok")
for p in sorted(glob.glob(sys.argv[1] + "/timings/*.json")):
    t = json.load(open(p))
    print(t.get("label"), t.get("status"), {k: round(v, 1) for k, v in t.items() if k.endswith("_s") and isinstance(v, float)})
PY
tail -n 40 "$root/logs/summary_$study.txt" 2>/dev/null
[ -n "${OUT:-}" ] && tar czf "$OUT/results_multi_gpu_$phase.tgz" -C "$repo/outputs" "$host"
