"""Seed statistics, and the rule that turns one of the paper's claims into a verdict.

A claim compares runs by a metric measured once per seed (a top-1 error in
percent, lower is better). Each side is summarised by its mean and standard
error over seeds; the difference of two means is called only when it exceeds
twice its standard error (about a 95% two-sided test), so one seed, or seeds
that disagree, give "inconclusive", never a verdict written by hand.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RULE", "Summary", "at_most", "better", "similar", "summarize"]

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
Z = 2.0
RULE = (
    "Each verdict compares means over seeds: a difference counts only beyond 2 standard errors "
    "(se of a difference = sqrt(se_a^2 + se_b^2), se = sd / sqrt(n)). \"A beats B\": supported when "
    "B - A > 2 se, contradicted when A - B > 2 se. \"A and B are similar (within t points)\": supported "
    "when |A - B| + 2 se <= t, contradicted when |A - B| - 2 se > t. \"A reaches at most v\": supported when "
    "mean + 2 se <= v, contradicted when mean - 2 se > v. Anything else, or fewer than 2 seeds a side, "
    "is inconclusive."
)


@dataclass(frozen=True)
class Summary:
    """One metric over seeds."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if self.n >= 2 else math.nan

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n) if self.n >= 2 else math.nan

    def __str__(self) -> str:
        if not self.values:
            return "not run"
        return f"{self.mean:.2f}" if self.n == 1 else f"{self.mean:.2f} ± {self.sd:.2f}"


def summarize(values: Sequence[float]) -> Summary:
    return Summary(tuple(float(v) for v in values))


def _inconclusive(*sides: Summary) -> str | None:
    small = min(s.n for s in sides)
    return f"{INCONCLUSIVE} (n={small})" if small < 2 else None


def better(a: Summary, b: Summary) -> str:
    """Verdict on "a has a lower error than b"."""
    if (early := _inconclusive(a, b)) is not None:
        return early
    diff, se = b.mean - a.mean, math.hypot(a.se, b.se)
    if diff > Z * se:
        return SUPPORTED
    if -diff > Z * se:
        return CONTRADICTED
    return f"{INCONCLUSIVE} (n={min(a.n, b.n)})"


def similar(a: Summary, b: Summary, tolerance: float) -> str:
    """Verdict on "a and b are within ``tolerance`` points of each other"."""
    if (early := _inconclusive(a, b)) is not None:
        return early
    diff, se = abs(a.mean - b.mean), math.hypot(a.se, b.se)
    if diff + Z * se <= tolerance:
        return SUPPORTED
    if diff - Z * se > tolerance:
        return CONTRADICTED
    return f"{INCONCLUSIVE} (n={min(a.n, b.n)})"


def at_most(a: Summary, value: float) -> str:
    """Verdict on "a's error is at most ``value``"."""
    if (early := _inconclusive(a)) is not None:
        return early
    if a.mean + Z * a.se <= value:
        return SUPPORTED
    if a.mean - Z * a.se > value:
        return CONTRADICTED
    return f"{INCONCLUSIVE} (n={a.n})"
