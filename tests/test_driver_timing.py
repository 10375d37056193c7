"""The driver's own timing (where a command's wall time went around its cells) starts where the command did."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

PRINT_START = ("import time; from ecosweep.cli.run import process_start_unix_s; "
               "print(process_start_unix_s(), time.time())")


@pytest.mark.slow  # it sleeps 6 s, past the 5 s an interpreter may take to import ecosweep
def test_the_driver_counts_from_its_interpreter_start_even_when_a_shell_execs_it():
    """`bash -c "pip install ... && python -m ecosweep"` execs python into the shell's process, whose creation
    time is the shell's: the driver's "start and plan" once read 171.7 s there (the install). Counted from the
    interpreter instead; a plain start still includes the interpreter's own start."""
    launched = time.time()
    plain = subprocess.run([sys.executable, "-c", PRINT_START], capture_output=True, text=True, check=True)
    start, now = map(float, plain.stdout.split())
    assert launched - 1.5 <= start <= now  # psutil's creation time: boot time in whole seconds + clock ticks
    launched = time.time()
    shell = subprocess.run(["bash", "-c", f"sleep 6 && {sys.executable} -c '{PRINT_START}'"], capture_output=True,
                           text=True, check=True)
    start, now = map(float, shell.stdout.split())
    assert launched + 6 <= start <= now  # not the shell's start, 6 s before
