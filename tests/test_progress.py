"""Progress lines: counts, the cell on each slot, ETA; plain when not a terminal."""

from __future__ import annotations

import io

from ecosweep.run.progress import Progress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_plain_progress_counts_running_cells_and_eta():
    out, clock = io.StringIO(), Clock()
    p = Progress(4, "auto", stream=out, clock=clock)
    assert p.mode == "plain"  # StringIO is not a terminal
    p.started("a", "m/fp16/bs1", "GPU")
    p.started("b", "m/nf4/bs1", "GPU")
    assert list(p.running.values()) == ["m/fp16/bs1 @ GPU", "m/nf4/bs1 @ GPU"]
    clock.t = 10.0
    p.finished("a", "m/fp16/bs1", "ok", 10.0)
    clock.t = 20.0
    p.finished("b", "m/nf4/bs1", "oom", 20.0)
    assert (p.done, p.failed) == (1, 1)
    assert p.eta_s() == 20.0  # 10 s per finished cell, 2 to go
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("start  a m/fp16/bs1 on GPU")
    assert lines[-2] == "ok     a m/fp16/bs1 in 10s (1/4), ETA 30s"
    assert lines[-1] == "oom    b m/nf4/bs1 in 20s (2/4), ETA 20s"
    clock.t = 40.0
    p.finished("c", "m/int8/bs1", "ok", 20.0)
    p.finished("d", "m/int8_pure/bs1", "ok", 0.0)
    assert out.getvalue().splitlines()[-1] == "ok     d m/int8_pure/bs1 in 0s (4/4)"  # no ETA once all are done


def test_live_mode_draws_a_bar_of_cells_under_the_event_lines():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    p = Progress(2, "auto", stream=out, clock=Clock())
    assert p.mode == "live"
    p.started("a", "m/fp16/bs1", "GPU")
    p.tick()
    text = out.getvalue()
    assert "start  a m/fp16/bs1 on GPU\n" in text
    assert "0/2 cells" in text and "0 ok, 0 failed | running: m/fp16/bs1 @ GPU" in text
    p.finished("a", "m/fp16/bs1", "ok", 3.0)
    p.close()
    text = out.getvalue()
    assert "ok     a m/fp16/bs1 in 3s (1/2)\n" in text
    assert "1/2 cells" in text and "1 ok, 0 failed | running: -" in text
    assert text.index("start  a") < text.index("ok     a")
