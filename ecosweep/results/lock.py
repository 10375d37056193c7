"""One writer per study folder.

A study command holds an exclusive ``flock`` on ``<output_root>/<study>/.ecosweep.lock`` from
before its first result is written until it ends; the file says who holds it (host, process id,
start time, command). The kernel drops the lock when its process dies, however it dies, so a
lock left by a killed run is simply taken by the next one (the file's old text is overwritten).
A second command into a held folder stops with a message naming the holder, or waits for it
(``python -m ecosweep --wait ...``).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from ecosweep.errors import EcosweepError

LOCK_NAME = ".ecosweep.lock"


class StudyBusyError(EcosweepError):
    """Another command is writing into the same study folder."""


class StudyLock:
    """The lock of one study folder (see the module docstring). Use as a context manager."""

    def __init__(self, study_dir: Path, wait: bool = False, out: TextIO = sys.stderr):
        self.path = Path(study_dir) / LOCK_NAME
        self.wait = wait
        self.out = out
        self._fd: int | None = None

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return "another process"
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started_unix_s", 0)))
        return f"process {info.get('pid')} on {info.get('host')} (since {started}: {info.get('command', '?')})"

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not self.wait:
                    raise StudyBusyError(
                        f"{self.path.parent} is being written by {self.holder()}. Two runs into one study folder "
                        "would overwrite each other's cells: wait for it to finish, choose another study=NAME, or "
                        "run with --wait to start when it is done.") from None
                print(f"Waiting for {self.holder()} to finish with {self.path.parent} ...", file=self.out)
                fcntl.flock(fd, fcntl.LOCK_EX)
            info = {"host": socket.gethostname(), "pid": os.getpid(), "started_unix_s": time.time(),
                    "command": " ".join(sys.argv)[:500]}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "StudyLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def study_locks(study_dirs: Iterable[Path], wait: bool = False) -> Iterator[None]:
    """Hold the locks of several study folders (in a fixed order, so two commands cannot deadlock)."""
    with ExitStack() as stack:
        for folder in sorted({Path(d) for d in study_dirs}):
            stack.enter_context(StudyLock(folder, wait))
        yield
