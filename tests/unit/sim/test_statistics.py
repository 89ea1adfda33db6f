"""Batch means: the interval against a hand-computed case, edge cases, and its coverage."""

import math

import numpy as np
import pytest

from omnicc.sim.statistics import (
    Estimate,
    batch_means,
    lag1_autocorrelation,
    ratio_batch_means,
)

# Student's t quantile t(0.995, 9) from printed tables (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2).
T_0995_9 = 3.250


def test_interval_of_one_to_ten_matches_the_textbook_formula() -> None:
    values = [float(v) for v in range(1, 11)]
    estimate = batch_means(values)
    s = math.sqrt(sum((v - 5.5) ** 2 for v in values) / 9)  # 3.0277
    expected_half_width = T_0995_9 * s / math.sqrt(10)  # 3.1116
    assert estimate.mean == 5.5
    assert estimate.batches == 10
    assert estimate.half_width == pytest.approx(expected_half_width, rel=1e-3)
    assert estimate.low == pytest.approx(5.5 - estimate.half_width)
    assert estimate.contains(2.4) and not estimate.contains(2.3)


def test_other_confidence_levels_use_their_own_quantile() -> None:
    # t(0.975, 4) = 2.776; values 2, 4, 6, 8, 10 have s = sqrt(10).
    estimate = batch_means([2.0, 4.0, 6.0, 8.0, 10.0], confidence=0.95)
    assert estimate.half_width == pytest.approx(2.776 * math.sqrt(10) / math.sqrt(5), rel=1e-3)


def test_identical_batches_give_a_zero_width_interval() -> None:
    estimate = batch_means([0.25] * 20)
    assert (estimate.mean, estimate.low, estimate.high) == (0.25, 0.25, 0.25)


def test_batches_without_data_are_left_out() -> None:
    assert batch_means([1.0, math.nan, 3.0]).batches == 2
    assert batch_means([1.0, math.nan, 3.0]).mean == 2.0


def test_too_few_batches_give_no_interval() -> None:
    single = batch_means([4.0])
    assert single.mean == 4.0 and math.isnan(single.low) and math.isnan(single.high)
    empty = batch_means([])
    assert empty.batches == 0 and math.isnan(empty.mean)


def test_ratio_is_computed_per_batch_and_skips_empty_denominators() -> None:
    estimate = ratio_batch_means([1, 3, 0], [2, 4, 0])
    assert estimate.batches == 2
    assert estimate.mean == pytest.approx((0.5 + 0.75) / 2)


def test_ratio_inputs_must_align() -> None:
    with pytest.raises(ValueError):
        ratio_batch_means([1.0], [1.0, 2.0])


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5])
def test_confidence_must_be_a_share(confidence: float) -> None:
    with pytest.raises(ValueError):
        batch_means([1.0, 2.0], confidence=confidence)


def test_lag1_autocorrelation_of_an_alternating_sequence_is_near_minus_one() -> None:
    values = [1.0, -1.0] * 10
    assert lag1_autocorrelation(values) == pytest.approx(-19 / 20)
    assert lag1_autocorrelation([2.0, 2.0, 2.0]) == 0.0
    assert math.isnan(lag1_autocorrelation([1.0, 2.0]))


def test_the_interval_covers_the_true_mean_about_99_percent_of_the_time() -> None:
    rng = np.random.default_rng(2024)
    samples = rng.normal(loc=3.0, scale=2.0, size=(4000, 20))
    covered = sum(batch_means(list(row)).contains(3.0) for row in samples)
    # Binomial(4000, 0.99) has mean 3960 and standard deviation 6.3: ±30 is beyond chance.
    assert 3930 <= covered <= 3990


def test_estimate_is_a_value_object() -> None:
    assert Estimate(1.0, 0.5, 1.5, 3) == Estimate(1.0, 0.5, 1.5, 3)
