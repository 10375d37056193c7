"""Ctrl-C while cells run: the first asks for a stop that no library call can swallow, a second interrupts."""

from __future__ import annotations

import os
import signal
import time

import pytest

from ecosweep.run.scheduler import StopRequest


def _interrupt_self() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs in the main thread at the next bytecode


def test_first_ctrl_c_is_a_request_the_second_an_interrupt_and_the_old_handler_returns():
    before = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        assert not stop.requested
        try:
            _interrupt_self()
        except Exception:  # what a library might do around a network call: nothing is lost
            pytest.fail("the first Ctrl-C must not raise")
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            _interrupt_self()
    assert signal.getsignal(signal.SIGINT) is before
