"""Host contention: a repetition that decoded clearly slower than its cell's others while the host's CPUs were
clearly busier is named in the report, and nothing is dropped."""

from __future__ import annotations

import pandas as pd
import pytest

from ecosweep.analysis.contention import contended_repetitions, contention_note


def _reps(tok_s, util, steal=None):
    steal = steal or [0.5] * len(tok_s)
    return pd.DataFrame({"repetition": range(len(tok_s)), "tok_s": tok_s, "cpu_util_pct": util,
                         "cpu_steal_pct": steal, "energy_j_per_1k_tok": [3000 * 120 / t for t in tok_s]})


def test_a_slow_repetition_on_a_busy_host_is_named_with_the_cv_with_and_without_it():
    reps = _reps([92.9, 117.5, 121.5, 121.7, 120.4], [35.3, 9.6, 9.7, 9.6, 9.4], [9.3, 0.9, 1.8, 0.9, 0.8])
    (found,) = contended_repetitions(reps)
    assert (found.repetition, found.tok_s, found.median_tok_s) == (0, 92.9, 120.4)
    assert found.others_cpu_util_pct == pytest.approx(9.6) and found.others_cpu_steal_pct == pytest.approx(0.9)
    note = contention_note(reps)
    assert note.startswith("repetition 0 decoded at 92.9 tok/s against the cell's median 120.4 while the host's "
                           "CPUs were 35 % busy (9.3 % stolen) against 10 % (0.9 %)")
    assert "energy_j_per_1k_tok CV 12.5 % with it, 1.6 % without" in note


@pytest.mark.parametrize("tok_s,util,steal,why", [
    ([100, 120, 121, 119, 120], [9, 9, 10, 9, 9], None, "slower on a quiet host: the GPU's doing (clocks, heat)"),
    ([119, 120, 121, 119, 120], [40, 9, 10, 9, 9], None, "a busy host that did not slow it"),
    ([112, 120, 121, 119, 120], [40, 9, 10, 9, 9], None, "slower by less than 10 %"),
    ([100, 120, 121, 119, 120], [9, 9, 10, 9, 9], [1.5, 0.5, 0.5, 0.5, 0.5], "steal up by less than 2 points"),
    ([100, 120], [40, 9], None, "two repetitions: no others to judge by"),
])
def test_no_contention_without_both_a_slowdown_and_a_busier_host(tok_s, util, steal, why):
    assert contended_repetitions(_reps(tok_s, util, steal)) == [], why


def test_stolen_cpu_alone_marks_a_busier_host():
    reps = _reps([100, 120, 121, 119, 120], [9, 9, 10, 9, 9], [4.0, 0.5, 0.5, 0.5, 0.5])
    assert [c.repetition for c in contended_repetitions(reps)] == [0]


def test_rows_without_host_figures_are_not_judged():
    reps = _reps([90, 120, 121, 119, 120], [40, 9, 10, 9, 9]).drop(columns=["cpu_steal_pct"])
    assert contended_repetitions(reps) == [] and contention_note(reps) is None
