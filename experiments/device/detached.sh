#!/usr/bin/env bash
# A GPU run longer than one device call (10 min), without cutting a cell off between calls: the run starts in a
# process session of its own (setsid), which the device tool leaves running on the warm machine after the call
# returns, and each later call waits on it, prints its progress and brings the results back under $OUT.
#
#   experiments/device/detached.sh start NAME COMMAND...   start COMMAND (its output in outputs/<host>/logs/NAME.log)
#   experiments/device/detached.sh wait NAME[,NAME...] SECONDS
#                                                           wait until every one named ends or SECONDS pass,
#                                                           then tar outputs/<host> into $OUT (every call: a
#                                                           machine that goes back takes its disk with it)
#
# The run itself must be resumable (ecosweep studies are: finished cells are skipped), since the machine can
# still go back under it. Start it in the same call as the wheels' install; PYTHONPATH is inherited.
# The device tool gives an idle machine back 30 s after a call returns, and a detached run dies with it: issue
# the next `wait` at once, every time (on 2026-11-28 a run of 7 minutes was lost to a pause between two calls).
set -u
mode=${1:?start|wait}
name=${2:?name}
source "$(dirname "$0")/host.sh"  # repo, card, host, root; cd "$repo"
log=$root/logs/$name.log  # start: one NAME
rc_file=$root/logs/$name.rc
case $mode in
  start)
    shift 2
    rm -f "$rc_file"
    touch "$root/logs/$name.started"
    # without OUT: the device tool empties $OUT before each call, and a later call's results come from `wait`
    env -u OUT setsid nohup bash -c '"$@"; echo $? > "'"$rc_file"'"' _ "$@" >> "$log" 2>&1 < /dev/null &
    echo "started $name (pid $!): $*" ;;
  wait)
    limit=${3:?seconds}
    IFS=, read -r -a names <<< "$name"
    running() { for n in "${names[@]}"; do [ -e "$root/logs/$n.rc" ] || return 0; done; return 1; }
    while running && [ $SECONDS -lt "$limit" ]; do sleep 10; done
    for n in "${names[@]}"; do
      echo "== $n"
      # the cells' progress lines, from every log written since it started (the command's own logs too)
      find "$root/logs" -name '*.log' -newer "$root/logs/$n.started" -print0 | xargs -0 -r cat |
        grep -E '^(ok|failed|start|Interrupted|Done|refused) ' | tail -n 20
      tail -n 5 "$root/logs/$n.log"
      if [ -e "$root/logs/$n.rc" ]; then echo "$n finished, exit status $(cat "$root/logs/$n.rc")"; else echo "$n still running"; fi
    done
    [ -n "${OUT:-}" ] && tar czf "$OUT/results_$host.tgz" --exclude='*.profile.json.gz' --exclude='references' -C "$repo/outputs" "$host" ;;
  *) echo "unknown mode $mode"; exit 2 ;;
esac
