"""zoo.verdicts: the seed statistics and the rule behind every verdict in a reproduction report."""
from __future__ import annotations

import math

import pytest

from zoo.verdicts import at_most, better, similar, summarize


def test_summary_on_known_values():
    s = summarize([17.0, 18.0, 19.0])
    assert (s.n, s.mean, s.sd) == (3, 18.0, 1.0)
    assert s.se == pytest.approx(1 / math.sqrt(3))
    assert str(s) == "18.00 ± 1.00" and str(summarize([17.5])) == "17.50" and str(summarize([])) == "not run"


@pytest.mark.parametrize(
    ("a", "b", "verdict"),
    [
        ([17.5, 17.4, 17.9], [21.0, 21.5, 20.8], "supported"),  # far apart, tight: a beats b
        ([21.0, 21.5, 20.8], [17.5, 17.4, 17.9], "contradicted"),  # the reverse
        ([17.6, 17.5, 17.9], [24.7, 20.9, 18.1], "inconclusive (n=3)"),  # b's seeds disagree: fig7's 3x3 plain
        ([17.0], [25.0], "inconclusive (n=1)"),  # one seed never decides, however large the gap
    ],
)
def test_better(a, b, verdict):
    assert better(summarize(a), summarize(b)) == verdict


def test_boundary_is_two_standard_errors():
    a, b = summarize([10.0, 12.0]), summarize([14.0, 16.0])  # se 1 each: se of the difference sqrt(2)
    assert b.mean - a.mean == 4.0 > 2 * math.sqrt(2)
    assert better(a, b) == "supported"
    c = summarize([12.5, 14.5])  # difference 2.5 < 2 sqrt(2)
    assert better(a, c) == "inconclusive (n=2)"


def test_similar_and_at_most():
    close = summarize([14.5, 14.6, 14.7]), summarize([14.6, 14.7, 14.8])
    assert similar(*close, tolerance=1.0) == "supported"
    apart = summarize([14.5, 14.6, 14.7]), summarize([21.0, 21.2, 21.1])
    assert similar(*apart, tolerance=1.0) == "contradicted"
    assert at_most(summarize([1.6, 1.7, 1.65]), 1.82) == "supported"
    assert at_most(summarize([2.6, 2.7, 2.65]), 1.82) == "contradicted"
    assert at_most(summarize([1.70]), 1.82) == "inconclusive (n=1)"
