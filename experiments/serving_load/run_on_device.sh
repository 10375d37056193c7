#!/usr/bin/env bash
# The served-load scenario (#33) on a lent H200 (device tool, nvidia-h200), in phases started detached
# (experiments/device/detached.sh start NAME experiments/serving_load/run_on_device.sh PHASE; then `wait` at once,
# every call: a cold host's imports and a 7B model's load alone take minutes). Results under outputs/<host>/.
# Not run yet (2026-12-03: the session's device time was spent before it).
#
# A  the acceptance pair on one GPU: fp16 Mistral-7B served at max batch 64, all at once, 128 + 128 tokens, and the
#    fixed batch of 64 under the graph and compiled engines beside it                           study serving_b64
# B  +experiment=serving_load (3 precisions x max batch 8..256, and fixed batches 8..256)      study serving_load
# C  Poisson arrivals around the knee, chat lengths, fp16 and nf4                              study serving_poisson
# S  the server's own speed-ups at phase A's load: transformers' CUDA graphs forced on, and its compile levels
#    (h100_2026-12-07: with cuda_graphs=auto the server ran without graphs, 3.0x the fixed batch's J per token)
#                                                                                               study serving_b64
# S1 phase S's first cell alone: CUDA graphs forced on, no compile (the cheapest look at what graphs give the server)
#                                                                                               study serving_b64
# E  ecosweep's slot server (serving.server=ecosweep: fixed KV slots, a CUDA graph per row count) at phase A's load,
#    beside the fixed batch of 64 under the graph engine                                        study serving_b64
# SKIP_FIXED="eager compiled" (phase A) leaves the fixed batch under those engines out (default: none left out).
# LIMIT_S bounds the phase (default 3600 s; the study resumes where a cut-off run stopped).
set -u
phase=${1:?phase A|B|C|E|S|S1}
source "$(dirname "$0")/../device/host.sh"  # repo, card, host, root, ray_stop; cd "$repo"
limit=${LIMIT_S:-3600}
common="tracking=none ray.progress=plain output_root=$root ray.one_gpu_per=study model=Mistral-7B hardware=$card"
case $phase in
  A)
    extra_exclude=""; for e in ${SKIP_FIXED:-}; do extra_exclude+=", {scenario: fixed_batch, engine: $e}"; done
    timeout "$limit" python3 -m ecosweep -m scenario=serving,fixed_batch quantization=fp16 serving.max_batch=64 batch_size=1,64 \
      engine=eager,graph,compiled input_tokens=128 output_tokens=128 measurement=default repetitions=5 \
      study=serving_b64 $common \
      'sweep.exclude=[{scenario: serving, batch_size: 64}, {scenario: serving, engine: [graph, compiled]}, {scenario: fixed_batch, batch_size: 1}'"${extra_exclude}]"
    ;;
  B) timeout "$limit" python3 -m ecosweep +experiment=serving_load $common ;;
  E)
    timeout "$limit" python3 -m ecosweep -m scenario=serving,fixed_batch quantization=fp16 serving.max_batch=64 \
      serving.server=ecosweep batch_size=1,64 engine=eager,graph input_tokens=128 output_tokens=128 \
      measurement=default repetitions=5 study=serving_b64 $common \
      'sweep.exclude=[{scenario: serving, batch_size: 64}, {scenario: serving, engine: graph}, {scenario: fixed_batch, batch_size: 1}, {scenario: fixed_batch, engine: eager}]'
    ;;
  C)
    timeout "$limit" python3 -m ecosweep -m scenario=serving serving.arrival=poisson serving.request_rate_rps=2,4,8,16,32 \
      serving.max_batch=256 serving.lengths=chat quantization=fp16,nf4 measurement=default repetitions=5 \
      study=serving_poisson $common
    ;;
  S)
    timeout "$limit" python3 -m ecosweep -m scenario=serving quantization=fp16 serving.max_batch=64 \
      serving.cuda_graphs=auto,on serving.compile_level=0,2 input_tokens=128 output_tokens=128 \
      measurement=default repetitions=5 study=serving_b64 $common \
      'sweep.exclude=[{serving.cuda_graphs: auto, serving.compile_level: 0}]'
    ;;
  S1)
    timeout "$limit" python3 -m ecosweep scenario=serving quantization=fp16 serving.max_batch=64 serving.cuda_graphs=on \
      serving.compile_level=0 input_tokens=128 output_tokens=128 measurement=default repetitions=5 study=serving_b64 \
      $common
    ;;
  *) echo "unknown phase $phase"; exit 2 ;;
esac
echo "exit $?"; ray_stop
python3 experiments/device/summarize_cells.py "$root" 2>&1 | tail -n 40
