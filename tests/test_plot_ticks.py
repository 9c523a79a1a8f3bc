"""Tick labels of the terminal plots (explorer.widgets.plots): every tick says a different
value, also on a narrow window far from 0 — the weights plot after a surgery at t = 10⁶
shows only the new segment, t ∈ [10⁶, 10⁶ + 40]."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from explorer.widgets.plots import PlotextBackend, PlotSpec, Series, decade_ticks, distinct_labels

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.parametrize(
    "lo, hi",
    [(1e6, 1e6 + 40), (1e6, 1e6 + 0.01), (0.0485, 0.0486), (2e9, 2e9 + 3), (1e-7, 1.0001e-7)],
)
def test_ticks_of_a_narrow_window_are_distinct_and_say_their_values(lo, hi):
    pos, labels = decade_ticks(math.log10(lo), math.log10(hi))
    assert len(pos) == 3 and len(set(labels)) == 3
    for p, label in zip(pos, labels, strict=True):
        # each label is the tick's value rounded to its last digit shown
        assert abs(float(label) - 10.0**p) <= 0.5 * last_digit(label) * (1 + 1e-6)


def last_digit(label: str) -> float:
    """The place value of a label's last digit ("1000020" → 1, "1.55e-07" → 1e-9)."""
    mantissa, _, exponent = label.partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def test_labels_keep_three_digits_where_they_differ_already():
    assert decade_ticks(0.0, 0.5)[1] == ["1", "1.78", "3.16"]
    assert distinct_labels([1e6, 1e6 + 20, 1e6 + 40]) == ["1000000", "1000020", "1000040"]
    assert distinct_labels([0.0485, 0.04855, 0.0486]) == ["0.04850", "0.04855", "0.04860"]
    assert distinct_labels([1.5e-7, 1.55e-7]) == ["1.5e-07", "1.55e-07"]


def test_the_weights_plot_after_a_surgery_at_a_million_has_distinct_time_ticks():
    """The run screen's weights plot (log t, log |a|) on the segment t ∈ [10⁶, 10⁶ + 40]."""
    t = 1e6 + np.linspace(0.0, 40.0, 50)
    a = [Series(t, np.full(t.size, 0.5 + 0.3 * i), f"|a{i}|") for i in range(2)]
    spec = PlotSpec(tuple(a), "weights  (4)", log_x=True, log_y=True, xlabel="t")
    text = ANSI.sub("", PlotextBackend().render(spec, 60, 16))
    rows = [r for r in text.splitlines() if "1000020" in r]
    assert rows, text
    assert "1000000" in rows[-1] and "1000040" in rows[-1]
    assert "1e+06" not in text
