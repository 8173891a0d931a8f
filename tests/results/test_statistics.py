"""The bootstrap CI, summaries and Kendall's tau against independent references:
the t-interval and scipy.stats.bootstrap on normal data, explicit index resampling, pandas,
scipy.stats.kendalltau and rankings counted by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.results.statistics import (
    BootstrapSettings, bootstrap_ci, bootstrap_means, image_stats, kendall_tau, rank, resample_counts, summarize,
)


def test_resample_counts_count_each_draw() -> None:
    rng = np.random.default_rng(3)
    indices = rng.integers(0, 7, size=(50, 7))
    counts = resample_counts(indices, 7)
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all()
    for row, drawn in zip(counts, indices):
        assert np.array_equal(row, np.bincount(drawn, minlength=7))


def test_bootstrap_means_equal_explicit_index_resampling() -> None:
    """The matrix product is exactly the mean of values[indices] for the same seeded draws."""
    values = np.random.default_rng(0).normal(size=(4, 30))
    settings = BootstrapSettings(resamples=300, seed=11)
    indices = np.random.default_rng([11, 30]).integers(0, 30, size=(300, 30))
    expected = values[:, indices].mean(axis=-1)
    assert np.allclose(bootstrap_means(values, settings), expected, rtol=0, atol=1e-12)


def test_nan_values_are_left_out_of_each_resample_mean() -> None:
    values = np.random.default_rng(1).normal(size=(1, 20))
    values[0, [2, 9]] = np.nan
    settings = BootstrapSettings(resamples=200, seed=5)
    indices = np.random.default_rng([5, 20]).integers(0, 20, size=(200, 20))
    expected = np.nanmean(values[:, indices], axis=-1)
    assert np.allclose(bootstrap_means(values, settings), expected, atol=1e-12)


def test_ci_agrees_with_the_t_interval_on_normal_data_and_covers_the_mean() -> None:
    rng = np.random.default_rng(2024)
    groups, n, true_mean = 400, 60, 1.5
    values = rng.normal(true_mean, 2.0, size=(groups, n))
    low, high = bootstrap_ci(values, BootstrapSettings(resamples=2000, seed=0))
    mean = values.mean(axis=1)
    half = stats.t.ppf(0.975, n - 1) * values.std(axis=1, ddof=1) / np.sqrt(n)
    width = 2 * half
    # the percentile interval of the mean is slightly narrower than t's at n=60 (by ~sqrt((n-1)/n) and z vs t)
    assert np.median(np.abs(low - (mean - half)) / width) < 0.05
    assert np.median(np.abs(high - (mean + half)) / width) < 0.05
    assert 0.94 < np.median((high - low) / width) < 1.0
    coverage = np.mean((low <= true_mean) & (true_mean <= high))
    assert 0.90 <= coverage <= 0.98  # nominal 0.95; 400 groups: sd of the estimate ~0.011


def test_ci_agrees_with_scipy_bootstrap_percentile() -> None:
    rng = np.random.default_rng(7)
    for n in (15, 40, 120):
        sample = rng.exponential(1.0, size=n)  # skewed: percentile intervals are asymmetric
        low, high = bootstrap_ci(sample[None, :], BootstrapSettings(resamples=8000, seed=1))
        reference = stats.bootstrap((sample,), np.mean, n_resamples=8000, method="percentile",
                                    confidence_level=0.95, random_state=np.random.default_rng(99))
        width = reference.confidence_interval.high - reference.confidence_interval.low
        assert abs(low[0] - reference.confidence_interval.low) < 0.06 * width
        assert abs(high[0] - reference.confidence_interval.high) < 0.06 * width


def test_ci_is_seeded() -> None:
    values = np.random.default_rng(0).normal(size=(3, 25))
    first = bootstrap_ci(values, BootstrapSettings(resamples=300, seed=4))
    again = bootstrap_ci(values, BootstrapSettings(resamples=300, seed=4))
    other = bootstrap_ci(values, BootstrapSettings(resamples=300, seed=5))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_confidence_level_changes_the_percentiles() -> None:
    values = np.random.default_rng(0).normal(size=(1, 50))
    settings = BootstrapSettings(resamples=1000, seed=0, confidence=0.8)
    low, high = bootstrap_ci(values, settings)
    means = bootstrap_means(values, settings)[0]
    assert low[0] == pytest.approx(np.percentile(means, 10)) and high[0] == pytest.approx(np.percentile(means, 90))


def test_summary_equals_numpy_and_handles_degenerate_groups() -> None:
    values = np.array([[1.0, 2.0, 4.0, np.nan], [3.0, np.nan, np.nan, np.nan], [np.nan] * 4])
    result = summarize(values, BootstrapSettings(resamples=100))
    assert result["mean"][0] == pytest.approx(7 / 3) and result["std"][0] == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert list(result["count"]) == [3, 1, 0]
    assert result["mean"][1] == 3.0 and np.isnan(result["std"][1])  # one value: no spread
    assert result["ci_low"][1] == result["ci_high"][1] == 3.0
    assert np.isnan(result["mean"][2]) and np.isnan(result["ci_low"][2])


def test_image_stats_match_pandas_groupby_and_count_nans() -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        [{"method": m, "stage": s, "image_id": f"i{i}", "value": rng.normal()} for m in "ab" for s in (1, 2) for i in range(12)]
    )
    frame.loc[(frame.method == "b") & (frame.image_id.isin(["i3", "i4"])), "value"] = np.nan
    frame = frame[~((frame.method == "a") & (frame.stage == 2) & (frame.image_id == "i0"))]  # a missing image
    result = image_stats(frame, ["method", "stage"], BootstrapSettings(resamples=200)).set_index(["method", "stage"])
    expected = frame.groupby(["method", "stage"]).value.agg(["mean", "std", "count"])
    assert np.allclose(result["mean"], expected["mean"]) and np.allclose(result["std"], expected["std"])
    assert (result["count"] == expected["count"]).all()
    assert result.loc[("b", 1), "nans"] == 2 and result.loc[("a", 2), "nans"] == 0 and result.loc[("a", 2), "count"] == 11
    assert (result.ci_low < result["mean"]).all() and (result["mean"] < result.ci_high).all()


@pytest.mark.parametrize(
    "first, second, expected",
    [
        ([1, 2, 3, 4], [1, 2, 3, 4], 1.0),
        ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
        ([1, 2, 3, 4], [2, 1, 3, 4], 4 / 6),  # one discordant pair of six
        ([1, 2, 3, 4, 5], [1, 2, 3, 5, 4], 8 / 10),
        # ties: tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2)); n0 = 6, one tie in the first ranking:
        # pairs (1,2) D, (1,3) C, (1,4) C, (2,3) tied, (2,4) C, (3,4) C -> (4 - 1) / sqrt(5 * 6)
        ([1, 2.5, 2.5, 4], [2, 1, 3, 4], 3 / np.sqrt(30)),
    ],
)
def test_kendall_tau_on_hand_made_rankings(first, second, expected) -> None:
    tau, p_value = kendall_tau(np.array(first, float), np.array(second, float))
    assert tau == pytest.approx(expected)
    reference = stats.kendalltau(first, second)
    assert tau == pytest.approx(reference.statistic) and p_value == pytest.approx(reference.pvalue)


def test_kendall_tau_undefined_cases() -> None:
    assert np.isnan(kendall_tau(np.array([1.0]), np.array([1.0]))[0])
    assert np.isnan(kendall_tau(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0]))[0])


def test_rank_direction_and_ties() -> None:
    assert list(rank(np.array([0.3, 0.1, 0.2]), "lower")) == [3, 1, 2]
    assert list(rank(np.array([0.3, 0.1, 0.2]), "higher")) == [1, 3, 2]
    assert list(rank(np.array([0.1, 0.1, 0.5]), "lower")) == [1.5, 1.5, 3]
