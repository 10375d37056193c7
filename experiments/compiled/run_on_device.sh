#!/usr/bin/env bash
# The compiled engine (#32) on a lent H200 (device tool, nvidia-h200), in phases started detached
# (experiments/device/detached.sh start NAME experiments/compiled/run_on_device.sh PHASE). Results under
# outputs/h200x1/ (kept on the warm machine between calls), a tarball of them under $OUT by `detached.sh wait`.
#
# A  (#32, first look, one GPU, every cell of a study on it: ray.one_gpu_per=study) Mistral-7B, batch 1,
#    128 + 128 tokens:
#    1. fp16 under graph and compiled (transformers' modules), default protocol, n = 5   study compiled_b1
#    2. fp16 compiled with ecosweep's decoder, fused projections                        study compiled_b1
#    3. torchao int8 weight-only and int4 weight-only (tinygemm), bf16, compiled, short  study torchao_b1
#       (then ecosweep's decoder unfused)
#    4. fp16 compiled again in another study (the second cell of the same shapes: from cache) study compiled_cache
#    5. fp16 graph and compiled with profile=true, short protocol, n = 3                  study compiled_profile
#    6. fp16 compiled with ecosweep's own capture of the compiled step (cudagraphs=ecosweep)  study compiled_b1
# B  (#32, what A left, 2026-12-03) Mistral-7B, 128 + 128 tokens, short protocol:
#    1. bf16 compiled, batch 1 (the 16-bit base of torchao's int4 ratio: tinygemm needs bf16)  study torchao_b1
#    2. fp16 compiled with profile=true, batch 1, n = 3 (the kernels behind the power jump)    study compiled_profile
# C  3. batch 16: fp16 graph and compiled, torchao int8 and int4 weight-only compiled          study compiled_b16
# D  4. batch 64: torchao int8 and int4 weight-only compiled (fp16 at batch 64 under graph and compiled: the fixed
#       cells of experiments/serving_load/run_on_device.sh A, default protocol)                  study compiled_b64
# E  (the acceptance's first line) fp16 compiled, batch 1, at the default protocol, n = 5: tok/s, energy CV, the
#    token check (one teacher-forced pass of the compiled step after a prefill, since 8ef37ba)  study compiled_b1_default
# F  (item 5) bitsandbytes under compiled, batch 1, short protocol: nf4 and pure int8 (one frame, no graph break on
#    the CPU, 2026-12-07), beside fp16 graph and compiled on the same GPU                      study compiled_bnb
# G  (what the kernels say would fix torchao int8 weight-only) torchao int8 weight-only compiled without and with
#    engine.compile.max_autotune=true (its compile: minutes), and fp16 compiled with ecosweep's own capture of the
#    compiled step (engine.compile.cudagraphs=ecosweep, against inductor's CUDA-graph trees), batch 1, short
#                                                                                               study compiled_options
# Each step is a resumable ecosweep command with its own time limit; LIMIT_S bounds the phase.
set -u
phase=${1:?phase A|B|C|D|E|F|G}
source "$(dirname "$0")/../device/host.sh"  # repo, card, host, root, ray_stop; cd "$repo"
limit=${LIMIT_S:-1500}
started=$SECONDS
left() { echo $(( limit - (SECONDS - started) )); }
common="tracking=none ray.progress=plain output_root=$root ray.one_gpu_per=study model=Mistral-7B input_tokens=128 output_tokens=128"
DEFAULT5="measurement=default repetitions=5 measurement.max_repetitions=5"
SHORT="measurement=short repetitions=5 warmup=1"
nvidia-smi --query-gpu=index,name,uuid,power.draw,temperature.gpu,clocks.sm,clocks.mem --format=csv > "$root/logs/gpus_$phase.csv"
run() {  # run NAME SECONDS ARGS...: one resumable study command, bounded by its own and the phase's limit
  local name=$1 seconds=$2; shift 2
  local budget; budget=$(left); [ "$budget" -gt "$seconds" ] && budget=$seconds
  [ "$budget" -le 30 ] && { echo "skipped $name: phase time spent"; return; }
  echo "== $name ($budget s): $*"
  timeout "$budget" python3 -m ecosweep "$@" $common batch_size="${batch:-1}" > "$root/logs/$name.log" 2>&1
  echo "$name exit $?"; ray_stop
}
case $phase in
  A)
    run fp16_graph_compiled 600 -m quantization=fp16 engine=graph,compiled $DEFAULT5 study=compiled_b1
    run fp16_ecosweep_decoder 300 quantization=fp16 engine=compiled engine.decode_model=ecosweep \
      engine.fuse_projections=true $DEFAULT5 study=compiled_b1
    run torchao_compiled 900 -m quantization=ao_int8_weight_only,ao_int4_weight_only,bf16 engine=compiled $SHORT \
      study=torchao_b1
    run fp16_ecosweep_unfused 300 quantization=fp16 engine=compiled engine.decode_model=ecosweep $DEFAULT5 \
      study=compiled_b1
    run fp16_from_cache 240 quantization=fp16 engine=compiled $SHORT reuse_cells=false study=compiled_cache
    run fp16_profile 420 -m quantization=fp16 engine=graph,compiled measurement=short repetitions=3 warmup=1 \
      profile=true study=compiled_profile
    run fp16_ecosweep_capture 300 quantization=fp16 engine=compiled engine.compile.cudagraphs=ecosweep $DEFAULT5 \
      study=compiled_b1
    ;;
  B)
    run bf16_compiled 300 quantization=bf16 engine=compiled $SHORT study=torchao_b1
    run fp16_compiled_profile 360 quantization=fp16 engine=compiled measurement=short repetitions=3 warmup=1 \
      profile=true study=compiled_profile
    ;;
  C)
    batch=16 run b16 900 -m quantization=fp16,ao_int4_weight_only,ao_int8_weight_only engine=graph,compiled measurement=short warmup=1 \
      repetitions=3 study=compiled_b16 \
      'sweep.exclude=[{quantization: [ao_int4_weight_only, ao_int8_weight_only], engine: graph}]'
    ;;
  D)
    batch=64 run b64 900 -m quantization=ao_int4_weight_only,ao_int8_weight_only engine=compiled measurement=short \
      warmup=1 repetitions=3 study=compiled_b64
    ;;
  E)
    run fp16_compiled_default 600 quantization=fp16 engine=compiled $DEFAULT5 study=compiled_b1_default
    ;;
  F)
    run bnb_compiled 600 -m quantization=fp16,nf4,int8_pure engine=graph,compiled $SHORT study=compiled_bnb
    ;;
  G)
    run ao_int8_autotune 900 -m quantization=ao_int8_weight_only engine=compiled \
      engine.compile.max_autotune=false,true $SHORT study=compiled_options
    run fp16_ecosweep_capture 300 -m quantization=fp16 engine=compiled engine.compile.cudagraphs=inductor,ecosweep \
      $SHORT study=compiled_options
    ;;
  *) echo "unknown phase $phase"; exit 2 ;;
esac
python3 experiments/device/summarize_cells.py "$root" 2>&1 | tail -n 40
