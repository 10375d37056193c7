# Sourced by the experiments' run_on_device.sh scripts: what every GPU run sets up the same way.
# Sets repo (the checkout), card (h100 | h200: a lease for H100s may give H200s), host (<card>x<GPUs>),
# root (outputs/<host>, kept on a warm machine between calls, with logs/), the environment Ray and the
# logs need, and ray_stop (after a study cut off by its time limit). Changes into the checkout.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | grep -q H200 && echo h200 || echo h100)
host=${card}x$(nvidia-smi -L | wc -l)
root=$repo/outputs/$host
mkdir -p "$root/logs"
export RAY_AUTH_MODE=disabled PYTHONUNBUFFERED=1
# Bytecode in one writable folder: on 2026-12-07 (H100 lease) every cell process compiled 2,500-3,100 source files
# of torch, transformers and the wheels again (builtins.compile 4.7-8.7 s in its cProfile, profile_process=true),
# so no .pyc was being kept for them; with a prefix every process after the first reads them back.
export PYTHONPYCACHEPREFIX=${PYTHONPYCACHEPREFIX:-/tmp/ecosweep-pycache}
# ray stop --force ends every Ray on the machine: while another ecosweep study still runs (two studies started
# detached on disjoint CUDA_VISIBLE_DEVICES of one host, each with its own local Ray), it would take that study's
# cluster with it, so it waits; a cut-off study's leftover actors end with their driver anyway.
ray_stop() {
  pgrep -f "[p]ython3 -m ecosweep" > /dev/null && return 0
  python3 -m ray.scripts.scripts stop --force > /dev/null 2>&1
}
cd "$repo"
