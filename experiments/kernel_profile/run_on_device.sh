#!/usr/bin/env bash
# Issue #17's GPU run: `+experiment=kernel_profile` (Mistral-7B fp16 / nf4 / int8_pure x eager / graph, and
# LLM.int8() eager, batch 1 and 16, each cell profiled after its energy windows) on a lent one-GPU H100
# (device tool, nvidia-h100-x1), short protocol, n = 3. Results stay on a warm machine under outputs/<card>x1/
# between calls (run it again to resume), a tarball of them comes back under $OUT, and the distinct kernel
# names every cell recorded (traces/*.kernels.csv) are gathered into kernel_names.csv: the recorded list the
# classification's tests read.
#
#   LIMIT_S=580 experiments/kernel_profile/run_on_device.sh            (in 10-minute calls, resumed by rerunning)
#   LIMIT_S=1500 experiments/device/detached.sh start kernel_profile experiments/kernel_profile/run_on_device.sh
#   experiments/device/detached.sh wait kernel_profile 560               (each later call, until finished)
set -u
source "$(dirname "$0")/../device/host.sh"  # repo, card, host, root, ray_stop; cd "$repo"
limit=${LIMIT_S:-540}
# EXTRA: more overrides, e.g. EXTRA=ray.one_gpu_per=precision (batch 1 and 16 on two GPUs of a larger host,
# with CUDA_VISIBLE_DEVICES naming them) or EXTRA=ray.one_gpu_per=cell (every GPU of the host, a cell each);
# INT8_RESERVE_S: seconds of LIMIT_S kept for the LLM.int8() cells (a profiled cell takes ~3 min)
common="measurement=short repetitions=3 warmup=2 tracking=none ray.progress=plain output_root=$root ${EXTRA:-}"
nvidia-smi --query-gpu=index,name,uuid,power.draw,temperature.gpu --format=csv > "$root/logs/gpus_kernel_profile.csv"
timeout -s INT -k 30 $((limit - ${INT8_RESERVE_S:-60})) python3 -m ecosweep +experiment=kernel_profile $common \
  >> "$root/logs/kernel_profile.log" 2>&1
ray_stop
left=$((limit - SECONDS - 20))
[ $left -gt 60 ] && timeout -s INT -k 20 $left python3 -m ecosweep +experiment=kernel_profile \
  hydra.sweeper.params.quantization=int8 hydra.sweeper.params.engine=eager $common \
  >> "$root/logs/kernel_profile.log" 2>&1
ray_stop
python3 - "$root/kernel_profile" <<'PY' > "$root/logs/summary_kernel_profile.txt" 2>&1
import glob, sys
import pandas as pd
sys.path.insert(0, "experiments/kernel_profile")
from recompute_from_kernel_tables import kernel_names
study = sys.argv[1]
tables = {path.split("/")[-1].split(".")[0]: pd.read_csv(path)
          for path in sorted(glob.glob(f"{study}/traces/*.kernels.csv"))}
if tables:
    names = kernel_names(tables)
    names.to_csv(f"{study}/kernel_names.csv", index=False, lineterminator="\n")
    print(names.groupby("kernel_class").total_us.sum().sort_values(ascending=False).to_string())
rows = pd.concat(pd.read_parquet(p) for p in glob.glob(f"{study}/cells/*.parquet"))
cols = [c for c in rows.columns if c.startswith("profile_ms_per_tok_")]
pd.set_option("display.width", 250)
print(rows.groupby(["quantization", "engine", "batch_size"]).agg(
    tok_s=("tok_s", "mean"), idle=("profile_gpu_idle_share", "first"), launches=("profile_launches_per_tok", "first"),
    **{c[19:]: (c, "first") for c in cols}).round(3).to_string())
print(rows[rows.status != "ok"][["quantization", "engine", "batch_size", "error"]].to_string())
PY
tail -n 40 "$root/logs/summary_kernel_profile.txt"
ls -la "$root/kernel_profile/traces" > "$root/logs/trace_sizes.txt" 2>&1
# The Chrome traces of a 7B model's calls run to megabytes each: the tarball leaves them out (the checkout, and
# with it every committed result, must stay under the device tool's 64 MiB); the kernel tables and the rows
# carry what the report needs. One trace per engine at batch 1 is kept as samples/<engine>_<cell>.trace.json.gz
# (a name the tarball keeps), to be opened in Perfetto. Run detached (experiments/device/detached.sh), the
# script has no $OUT: `detached.sh wait` brings outputs/<host> back, samples included.
python3 - "$root/kernel_profile" <<'PY'
import glob, shutil, sys
from pathlib import Path
import pandas as pd
study = sys.argv[1]
rows = pd.concat(pd.read_parquet(p) for p in glob.glob(f"{study}/cells/*.parquet"))
picked = rows[(rows.status == "ok") & (rows.batch_size == 1) & (rows.quantization == "fp16")
              & rows.profile_trace_file.notna()]  # a failed profile (profile_error) has no trace
Path(f"{study}/samples").mkdir(exist_ok=True)
for _, r in picked.drop_duplicates("engine").iterrows():
    name = r.profile_trace_file.replace(".profile.json.gz", ".trace.json.gz")
    shutil.copy(f"{study}/traces/{r.profile_trace_file}", f"{study}/samples/{r.engine}_{name}")
PY
[ -n "${OUT:-}" ] && tar czf "$OUT/results_kernel_profile.tgz" --exclude='*.profile.json.gz' -C "$repo/outputs" "$host"
exit 0
