"""Confidence intervals by the method of batch means.

A long run, after its warm-up, is cut into b equal batches. When batches are much longer than
the correlation time of the system, their means are nearly independent and normal, so
mean ± t(1 - α/2, b - 1) · s / √b is a confidence interval for the steady-state value.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.99


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its confidence interval; NaN where there were too few batches."""

    mean: float
    low: float
    high: float
    batches: int
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def batch_means(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Estimate from one value per batch; NaN values (batches without data) are left out."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    kept = [v for v in values if not math.isnan(v)]
    count = len(kept)
    if count == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, confidence)
    mean = math.fsum(kept) / count
    if count == 1:
        return Estimate(mean, math.nan, math.nan, 1, confidence)
    variance = math.fsum((v - mean) ** 2 for v in kept) / (count - 1)
    quantile = float(stats.t.ppf(0.5 + confidence / 2, count - 1))
    half_width = quantile * math.sqrt(variance / count)
    return Estimate(mean, mean - half_width, mean + half_width, count, confidence)


def ratio_batch_means(
    numerators: Sequence[float], denominators: Sequence[float], confidence: float = CONFIDENCE
) -> Estimate:
    """Batch means of a ratio (e.g. handled within T / offered) computed in each batch."""
    if len(numerators) != len(denominators):
        raise ValueError("numerators and denominators differ in length")
    return batch_means(
        [n / d if d else math.nan for n, d in zip(numerators, denominators, strict=True)],
        confidence,
    )


def lag1_autocorrelation(values: Sequence[float]) -> float:
    """Lag-1 autocorrelation of the batch means: near 0 when batches are long enough."""
    kept = [v for v in values if not math.isnan(v)]
    if len(kept) < 3:
        return math.nan
    mean = math.fsum(kept) / len(kept)
    deviations = [v - mean for v in kept]
    denominator = math.fsum(d * d for d in deviations)
    if denominator == 0:
        return 0.0
    numerator = math.fsum(a * b for a, b in itertools.pairwise(deviations))
    return numerator / denominator
