#!/usr/bin/env bash
# Harness efficiency (#34) on a lent H200 (device tool, nvidia-h200), started detached
# (experiments/device/detached.sh start NAME experiments/harness_efficiency/run_on_device.sh PHASE). Results under
# outputs/h200x1/ (kept on the warm machine between calls), a tarball of them under $OUT by `detached.sh wait`.
#
# on   the issue's three cells (Mistral-7B fp16, nf4, int8_pure, engine=graph, batch 1, 128 + 128 tokens, default
#      protocol, n = 5) with reuse on (the defaults: idle baseline, fidelity and token-check references)  study reuse_on
# off  the same three cells with every reuse.* off, on the same GPU (the results must agree within their CIs),
#      each cell's process profiled outside its measurement (profile_process=true: timings/<id>.profile.txt)
#                                                                                                        study reuse_off
# lane     the same three cells measured by one process in turn (ray.process_per=lane): memory freed between
#          cells (cuda_allocated_mib_at_start 0), NVML sees no foreign process, J per 1k within the CIs of `on`
#                                                                                                        study lane
# lane_rerun  `lane` again in a study of its own on the same host: the references the first one stored are read
#          back (what a re-run of a study costs)                                                 study lane_rerun
# off1 lane1 off2 lane2 ...  the two settings interleaved, each in a study of its own (reuse_off1, lane1, ...), the
#          off ones unprofiled: the GPU's drift between studies (2026-12-07: +0.8 % gross, 2.8-4.4 degC) shows as
#          the spread within a setting, so the two can be told apart
# laneoffN freshonN  the other two corners of lane x reuse (one process per lane with every reuse.* off; a fresh
#          process per cell with reuse on): with laneN and offN, whether the lane's ~0.5 % higher J per token follows
#          the process (its earlier cells) or the reuse (a 1.2 s idle check where reuse off settles and measures
#          10 s of idle before the warm-up, so its GPU starts its windows 1-4 degC cooler)   studies laneoffN, freshonN
# prepared a fresh process per cell, each imported while the cell before it ran (ray.prepare_next_process=true):
#          no foreign process in any window (the waiting process must hold no CUDA context)    study prepared
# crossover  `+experiment=nf4_crossover` (six models x fp16, nf4) under engine=graph at the published protocol,
#          exactly n = 10 (measurement.max_repetitions=10), each comparison's two cells in one lane process, which
#          goes on to the next comparison on its GPU (ray.reuse_actors): the issue's wall time <= 1.6x the sum of
#          its windows                                                                 study nf4_crossover_lane
# Each step is a resumable ecosweep command with its own time limit; LIMIT_S bounds the phase.
set -u
phase=${1:?phase on|off|lane|lane_rerun|offN|laneN|laneoffN|freshonN|prepared|crossover}
source "$(dirname "$0")/../device/host.sh"  # repo, card, host, root, ray_stop; cd "$repo"
limit=${LIMIT_S:-900}
cells="-m model=Mistral-7B quantization=fp16,nf4,int8_pure engine=graph batch_size=1 input_tokens=128 output_tokens=128
  measurement=default repetitions=5 measurement.max_repetitions=5 hardware=$card tracking=none ray.progress=plain
  output_root=$root ray.one_gpu_per=study"
nvidia-smi --query-gpu=index,name,uuid,power.draw,temperature.gpu,clocks.sm,clocks.mem --format=csv > "$root/logs/gpus_$phase.csv"
case $phase in
  on)  args="study=reuse_on reuse.reference_dir=$root/references" ;;
  off) args="study=reuse_off reuse_cells=false reuse.idle_baseline=false reuse.fidelity_reference=false reuse.token_reference=false profile_process=true" ;;
  lane) args="study=lane reuse_cells=false reuse.reference_dir=$root/references ray.process_per=lane" ;;
  lane_rerun) args="study=lane_rerun reuse_cells=false reuse.reference_dir=$root/references ray.process_per=lane" ;;
  off[0-9]) args="study=reuse_$phase reuse_cells=false reuse.idle_baseline=false reuse.fidelity_reference=false reuse.token_reference=false" ;;
  lane[0-9]) args="study=$phase reuse_cells=false reuse.reference_dir=$root/references ray.process_per=lane" ;;
  laneoff[0-9]) args="study=$phase reuse_cells=false reuse.idle_baseline=false reuse.fidelity_reference=false reuse.token_reference=false ray.process_per=lane" ;;
  freshon[0-9]) args="study=$phase reuse_cells=false reuse.reference_dir=$root/references" ;;
  prepared) args="study=prepared reuse_cells=false reuse.reference_dir=$root/references ray.prepare_next_process=true" ;;
  crossover) cells="+experiment=nf4_crossover engine=graph measurement.max_repetitions=10 hardware=$card tracking=none
       ray.progress=plain output_root=$root"
     args="study=nf4_crossover_lane reuse_cells=false reuse.reference_dir=$root/references ray.process_per=lane ray.reuse_actors=true" ;;
  *) echo "unknown phase $phase"; exit 2 ;;
esac
study=${args%% *}; study=${study#study=}
echo "== $study ($limit s)"
# shellcheck disable=SC2086
start=$SECONDS
timeout "$limit" python3 -m ecosweep $cells $args > "$root/logs/$study.log" 2>&1
echo "$study exit $? after $((SECONDS - start)) s"; tail -n 3 "$root/logs/$study.log"; ray_stop
python3 experiments/device/summarize_cells.py "$root/$study" 2>&1 | tail -n 10
