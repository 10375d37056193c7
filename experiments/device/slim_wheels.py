"""Shrink the device wheel folder (``../shared/device/wheelhouse .whl``) so that it and the
checkout fit the device tool's 64 MiB: the device runs torch 2.11 + CUDA 13.0, so bitsandbytes'
CUDA 13.2 and XPU libraries go, and so do Ray libraries ecosweep never imports (RLlib, Serve,
Ray LLM, Data, Train, Tune). ``import ray``, local clusters and actors do not touch them. What is
kept is recompressed with LZMA (pip reads any zipfile method): Ray's binaries shrink from 38.7 to
28.2 MiB, which the checkout needed once its committed results passed 28 MB. ELF binaries of 1 MiB or more
lose their symbol tables (`strip --strip-unneeded`: the dynamic symbols that loading needs stay; Ray's raylet,
gcs_server and _raylet.so ship unstripped, a third of their size), and the Ray dashboard's web client goes
(ecosweep starts Ray with include_dashboard=False), which the checkout needed once its results passed 33 MB.
At 34.3 MB of tracked files (2026-12-07; the tool counts disk use, 40 MiB) the folder no longer fits whole: a run
without torchao cells carries it without torchao's wheel (1.8 MB), moved aside for that call. At 40.8 MiB of tracked
files on disk (later on 2026-12-07) even that was refused: `experiments/device/slim_tree.sh on` leaves the committed
results out of the working tree for the device calls (2.3 MiB travel), and the whole wheel folder fits again.

    python experiments/device/slim_wheels.py .whl
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DROP = [
    re.compile(r"^bitsandbytes/libbitsandbytes_(cuda13[1-9]|xpu\d+)\.so$"),
    re.compile(r"^ray/(rllib|serve|llm|data|train|tune)/"),
    re.compile(r"^ray/dashboard/client/build/"),
    re.compile(r"^test/"),  # torchao's wheel ships its tests as a top-level package
]
STRIP_FROM_BYTES = 2**20


def stripped(data: bytes) -> bytes:
    """``data`` (an ELF file) without its symbol tables, or unchanged when it is not ELF, is small, or
    ``strip`` is missing or fails."""
    if len(data) < STRIP_FROM_BYTES or not data.startswith(b"\x7fELF") or shutil.which("strip") is None:
        return data
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "elf"
        path.write_bytes(data)
        done = subprocess.run(["strip", "--strip-unneeded", str(path)], capture_output=True)
        return path.read_bytes() if done.returncode == 0 else data



def slim(wheel: Path) -> None:
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_LZMA) as zout:
        for info in zin.infolist():
            if not any(p.search(info.filename) for p in DROP):
                data = stripped(zin.read(info))  # before the copy below changes how the entry is compressed
                entry = copy.copy(info)  # keeps the file mode bits (raylet, gcs_server are executables)
                entry.compress_type = zipfile.ZIP_LZMA
                zout.writestr(entry, data)
    before, after = wheel.stat().st_size, tmp.stat().st_size
    tmp.replace(wheel)
    print(f"{before / 2**20:6.1f} -> {after / 2**20:6.1f} MiB  {wheel.name}")


if __name__ == "__main__":
    for path in sorted(Path(sys.argv[1] if len(sys.argv) > 1 else ".whl").glob("*.whl")):
        if path.name.startswith(("ray-", "bitsandbytes-", "torchao-")):
            slim(path)
