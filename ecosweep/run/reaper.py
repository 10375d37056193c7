"""Leave no Ray process behind when the driver of a local Ray is killed (``kill -9``).

``python -m ecosweep`` starts a local Ray when no cluster is given. Killed without a chance to shut it down,
the driver takes the GCS and the raylet with it (Ray starts them fate-sharing), but their agents
(``DashboardAgent``, ``RuntimeEnvAgent``) and idle workers lingered for more than a minute (measured: 72 s and
more: their command lines name no session, and once the raylet is gone they are no one's children).
:func:`start_reaper` starts a small process beside the driver that notes every process the driver started,
directly or not, while it waits on a pipe from the driver: the pipe closes when the driver ends, however it
ends, and the reaper then ends the noted processes that are still alive, and the Ray workers that name
the session in their command lines (started after its last look); no other Ray on the machine is touched.
After a normal ``ray.shutdown()`` it finds none and exits.
"""

from __future__ import annotations

import subprocess
import sys

# Seconds the reaper lets the driver's processes end by themselves before it ends them, and between its looks
# at which processes the driver started (Ray starts its agents and workers over the first seconds).
GRACE_S = 2.0
REFRESH_S = 1.0

_REAPER = r"""
import os, select, sys, time
import psutil
driver, session = int(sys.argv[1]), sys.argv[2]
grace, refresh = float(sys.argv[3]), float(sys.argv[4])
known = {}  # pid -> create_time of every process the driver started, directly or not (Ray's and the cells')
def look():
    try:
        for child in psutil.Process(driver).children(recursive=True):
            if child.pid != os.getpid():
                known.setdefault(child.pid, child.create_time())
    except psutil.Error:
        pass
while True:  # wake on the pipe (the driver ended) or to look at the driver's descendants again
    ready, _, _ = select.select([sys.stdin], [], [], refresh)
    if ready and not sys.stdin.buffer.read1(1024):
        break
    look()
time.sleep(grace)
if session:  # workers started after the last look name their session in their command lines
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.pid != os.getpid() and session in " ".join(proc.info.get("cmdline") or []):
                known.setdefault(proc.pid, proc.create_time())
        except psutil.Error:
            pass
left = []
for pid, created in known.items():
    try:
        proc = psutil.Process(pid)
        if proc.create_time() == created:  # not a new process that reused the PID
            left.append(proc)
    except psutil.Error:
        pass
for proc in left:
    try:
        proc.terminate()
    except psutil.Error:
        pass
_, alive = psutil.wait_procs(left, timeout=5)
for proc in alive:
    try:
        proc.kill()
    except psutil.Error:
        pass
"""


def start_reaper(session: str = "", grace_s: float = GRACE_S, refresh_s: float = REFRESH_S) -> subprocess.Popen:
    """The reaper of this process's descendants and of the processes that name Ray ``session`` (its session name)
    in their command lines, in its own process session so that a signal to the driver's process group does not
    end it before it has done its job. Keep the returned object: its pipe is the driver's end (closed when the
    driver exits)."""
    import os

    return subprocess.Popen([sys.executable, "-c", _REAPER, str(os.getpid()), session, str(grace_s), str(refresh_s)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
