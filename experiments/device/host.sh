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
# That alone did not do it: on 2026-12-08 (H100 lease) a fresh process after two studies still spent 14.8 s in 5,155
# calls of builtins.compile (experiments/device/import_probe.py; the same imports on a 2-core CPU host with
# bytecode: 689 calls, 0.07 s), and a lane's first cell spent 10.6-12.9 s importing transformers, against about
# 1.5 s on that CPU host. So nothing was written there (an image with PYTHONDONTWRITEBYTECODE set, or a read-only
# site-packages). Writing is allowed again, and once per host, before the first study, everything a cell imports is
# compiled into the prefix (compileall writes whatever that flag says; processes read from the prefix either way).
# It is host setup, like the wheels' install: the time is logged (logs/bytecode.txt), outside every study.
unset PYTHONDONTWRITEBYTECODE
if [ ! -e "$PYTHONPYCACHEPREFIX/.ecosweep-compiled" ]; then
  mkdir -p "$PYTHONPYCACHEPREFIX"
  compile_start=$SECONDS
  # shellcheck disable=SC2046
  python3 -m compileall -q -j 0 $(python3 -c 'import site, sys; print(*[p for p in site.getsitepackages() + sys.path
    if p.endswith("-packages") or p == "/tmp/site"])' | tr ' ' '\n' | sort -u) "$repo/ecosweep" > /dev/null 2>&1
  touch "$PYTHONPYCACHEPREFIX/.ecosweep-compiled"
  echo "compiled into $PYTHONPYCACHEPREFIX in $((SECONDS - compile_start)) s" >> "$root/logs/bytecode.txt"
fi
python3 -c 'import sys; print("dont_write_bytecode", sys.flags.dont_write_bytecode, "pycache_prefix", sys.pycache_prefix)' \
  >> "$root/logs/bytecode.txt"
# ray stop --force ends every Ray on the machine: while another ecosweep study still runs (two studies started
# detached on disjoint CUDA_VISIBLE_DEVICES of one host, each with its own local Ray), it would take that study's
# cluster with it, so it waits; a cut-off study's leftover actors end with their driver anyway.
ray_stop() {
  pgrep -f "[p]ython3 -m ecosweep" > /dev/null && return 0
  python3 -m ray.scripts.scripts stop --force > /dev/null 2>&1
}
cd "$repo"
