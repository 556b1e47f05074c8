"""Statistics of timed rounds: medians with bootstrap intervals, per-round ratios, the noisy flag.

A benchmark here times engines in interleaved rounds; each round gives one
figure per engine (the median of its timed calls). A figure's estimate is the
median over rounds, its 95% interval a percentile bootstrap over rounds; a
speed-up is the median of the per-round ratios (each round's engines ran back
to back, so a load that slows one round slows both). A figure whose interval is
wider than ``NOISY`` of its median on either side is noisy.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["NOISY", "bootstrap_interval", "is_noisy", "ratios", "summary"]

NOISY = 0.10
"""Half-width of a 95% interval, relative to its median, beyond which a figure is flagged noisy."""


def bootstrap_interval(values: Sequence[float], *, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median of ``values``; a single value is its own interval."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    data = np.asarray(values, dtype=np.float64)
    resamples = data[np.random.default_rng(seed).integers(0, len(data), size=(n, len(data)))]
    medians = np.sort(np.median(resamples, axis=1))  # 2000 resamples at once: 25 ms a figure in Python's loop
    return float(medians[int(0.025 * n)]), float(medians[int(0.975 * n) - 1])


def is_noisy(median: float, interval: tuple[float, float], tolerance: float = NOISY) -> bool:
    low, high = interval
    return high > median * (1 + tolerance) or low < median * (1 - tolerance)


def summary(rounds: Sequence[float]) -> dict[str, Any]:
    """Median, 95% interval and the noisy flag of one figure's rounds, the rounds kept."""
    median = statistics.median(rounds)
    interval = bootstrap_interval(rounds)
    return {"median": median, "ci95": list(interval), "noisy": is_noisy(median, interval), "rounds": list(rounds)}


def ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-round ratios of two engines timed in the same rounds."""
    if len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} and {len(denominator)} rounds: ratios pair the rounds of one run")
    return [a / b for a, b in zip(numerator, denominator)]
