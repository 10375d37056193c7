#!/usr/bin/env bash
# Issue #18's GPU run, `+experiment=int8_alternatives`, on a lent H100 host (device tool), in phases that each fit one 10-minute device call; results stay on the warm machine under
# outputs/<card>x1/ between calls, and a tarball of them comes back under $OUT. Needs the torchao wheel
# in .whl (EXTRA_WHEELS="torchao==0.18.0" ../shared/device/wheelhouse .whl, then
# python3 experiments/device/slim_wheels.py .whl).
#
#   experiments/int8_alternatives/run_on_device.sh A|B|C|D
#
# A  Mistral-7B, batch 1: fp16, LLM.int8(), pure int8, torchao int8 dynamic / int8 weight-only / fp8,
#    eager and compiled (12 cells), short protocol, n = 3.
# B  Mistral-7B, batch 16 (12 cells).   C  Yi-1.5-6B, batch 1.   D  Yi-1.5-6B, batch 16.
# ALL  the whole grid on a 4-GPU host (nvidia-h100-x4): ray.one_gpu_per=precision gives each (model, batch size)
#    its own GPU, all of that lane's 12 cells in turn on it, the four lanes at once.
# A-D run on one GPU (nvidia-h100-x1). Short protocol, n = 3, two warm-up calls.
# The 2026-11-27 run (h100x4_2026-11-27/) measured 20 cells of ALL before the device time ran out; what it
# lacks, with fp16 again as each lane's baseline on the new host, in two calls of one warm 4-GPU machine:
# REST_COMPILED  fp16, torchao int8 weight-only and fp8 under engine=compiled (12 cells, 3 per GPU)
# REST_EAGER     fp16, pure int8 and the three torchao precisions under eager generate() (20 cells, 5 per GPU)
# REST           both, the compiled cells first with the whole call, the eager ones with what is left (run it
#                again on the warm machine until both are done: finished cells are skipped)
# The second host (h100x4_2026-11-27b/, run detached: experiments/device/detached.sh) measured REST but for 6 eager
# cells; what neither host has, with fp16 of each engine again as the lanes' baselines on a third host:
# LAST_EAGER     fp16, torchao int8 weight-only and fp8 under eager generate() (12 cells, 3 per GPU)
# LAST_COMPILED  fp16 and LLM.int8() under engine=compiled (8 cells, 2 per GPU; bitsandbytes runs eager with a
#                static cache there, which is the finding)
# LAST           both, eager first: about 12 min on a 4-GPU host, so start it detached
# Each phase resumes its cells if an earlier call was cut off by the time limit.
set -u
phase=${1:?phase: A-D, ALL, REST[_COMPILED|_EAGER] or LAST[_EAGER|_COMPILED]}
source "$(dirname "$0")/../device/host.sh"  # repo, card, host, root, ray_stop; cd "$repo"
limit=${LIMIT_S:-540}
case $phase in
  A) grid=(hydra.sweeper.params.model=Mistral-7B hydra.sweeper.params.batch_size=1) ;;
  B) grid=(hydra.sweeper.params.model=Mistral-7B hydra.sweeper.params.batch_size=16) ;;
  C) grid=(hydra.sweeper.params.model=Yi-1.5-6B hydra.sweeper.params.batch_size=1) ;;
  D) grid=(hydra.sweeper.params.model=Yi-1.5-6B hydra.sweeper.params.batch_size=16) ;;
  ALL) grid=() ;;  # the experiment's own grid
  REST_COMPILED) grid=(hydra.sweeper.params.engine=compiled
                       'hydra.sweeper.params.quantization="fp16,ao_int8_weight_only,ao_fp8"') ;;
  REST_EAGER) grid=(hydra.sweeper.params.engine=eager
                    'hydra.sweeper.params.quantization="fp16,int8_pure,ao_int8_dynamic,ao_int8_weight_only,ao_fp8"') ;;
  LAST_EAGER) grid=(hydra.sweeper.params.engine=eager
                    'hydra.sweeper.params.quantization="fp16,ao_int8_weight_only,ao_fp8"') ;;
  LAST_COMPILED) grid=(hydra.sweeper.params.engine=compiled 'hydra.sweeper.params.quantization="fp16,int8"') ;;
  LAST) LIMIT_S=$limit "$0" LAST_EAGER; left=$((limit - SECONDS))
        [ $left -gt 120 ] && LIMIT_S=$left exec "$0" LAST_COMPILED; exit 0 ;;
  # compiled cells may take 5-7 min each (fp8's token check): they get the whole call, the eager ones what is left
  REST) LIMIT_S=$limit "$0" REST_COMPILED; left=$((limit - SECONDS))
        [ $left -gt 120 ] && LIMIT_S=$left exec "$0" REST_EAGER; exit 0 ;;
  *) echo "unknown phase $phase"; exit 2 ;;
esac
nvidia-smi --query-gpu=index,name,uuid,power.draw,temperature.gpu --format=csv > "$root/logs/gpus_$phase.csv"
python3 -c "import torchao; print('torchao', torchao.__version__)" > "$root/logs/torchao_$phase.txt" 2>&1
timeout -s INT -k 30 $((limit - 20)) python3 -m ecosweep +experiment=int8_alternatives \
  "${grid[@]}" measurement=short repetitions=3 \
  warmup=2 ray.one_gpu_per=precision tracking=none ray.progress=plain output_root="$root" >> "$root/logs/int8_alternatives_$phase.log" 2>&1
ray_stop
python3 - "$root/int8_alternatives" <<'PY' > "$root/logs/summary_$phase.txt" 2>&1
import sys, glob, pandas as pd
rows = pd.concat(pd.read_parquet(p) for p in glob.glob(sys.argv[1] + "/cells/*.parquet"))
cols = ["model", "quantization", "engine", "engine_effective", "batch_size", "status", "tok_s",
        "energy_j_per_1k_tok", "quant_kernel_path", "quant_fallback", "quant_weight_type", "error"]
pd.set_option("display.width", 250, "display.max_colwidth", 60)
print(rows.groupby(["model", "quantization", "engine", "batch_size"], dropna=False)
      .agg(status=("status", "first"), n=("tok_s", "count"), tok_s=("tok_s", "mean"),
           j_per_1k=("energy_j_per_1k_tok", "mean"), kernel=("quant_kernel_path", "first"),
           fallback=("quant_fallback", "first")).to_string())
bad = rows[rows.status != "ok"]
print(bad[["quantization", "engine", "batch_size", "error"]].to_string() if len(bad) else "all ok")
PY
tail -n 40 "$root/logs/summary_$phase.txt"
[ -n "${OUT:-}" ] && tar czf "$OUT/results_int8_alternatives_$phase.tgz" -C "$repo/outputs" "$host"
