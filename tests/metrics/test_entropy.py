"""eMPRT's histogram entropy: batched counts and entropies equal numpy.histogram and scipy.stats.entropy,
bin rules equal numpy.histogram_bin_edges' with n = the map's number of elements."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from benchmark.metrics import SCORES, HistogramBins, histogram_entropy
from benchmark.metrics.entropy import histogram_counts, rule_counts


@pytest.fixture
def maps(np_rng) -> np.ndarray:
    """Maps a histogram can trip over: smooth, integer-valued (values on bin edges), ReLU-like (many
    exact zeros), heavy-tailed, constant."""
    normal = np_rng.normal(size=(17, 19))
    return np.stack([
        normal,
        np_rng.integers(0, 5, size=(17, 19)).astype(np.float64),
        np.maximum(normal, 0),
        np.round(np_rng.standard_cauchy(size=(17, 19)), 2),
        np.full((17, 19), 0.25),
    ])


@pytest.mark.parametrize("bins", [2, 3, 7, 10, 100])
def test_counts_and_entropy_equal_numpy_and_scipy(maps, bins) -> None:
    tensor = torch.from_numpy(maps)
    counts = histogram_counts(tensor, torch.full((len(maps),), bins)).numpy()
    entropy = histogram_entropy(tensor, torch.full((len(maps),), bins)).numpy()
    for i, m in enumerate(maps):
        reference, _ = np.histogram(m, bins=bins)
        assert counts[i].tolist() == reference.tolist(), i
        assert entropy[i] == pytest.approx(scipy.stats.entropy(reference), abs=1e-12)
    assert entropy[-1] == 0.0  # a constant map: one bin holds everything


def test_each_map_has_its_own_bin_count_in_one_batch(maps) -> None:
    bins = torch.tensor([2, 50, 7, 200, 3])
    counts = histogram_counts(torch.from_numpy(maps), bins).numpy()
    assert counts.shape == (5, 200)
    for i, m in enumerate(maps):
        assert counts[i, : bins[i]].tolist() == np.histogram(m, bins=int(bins[i]))[0].tolist()
        assert counts[i, bins[i]:].sum() == 0


@pytest.mark.parametrize("rule, numpy_rule", [("sturges", "sturges"), ("sqrt", "sqrt"), ("rice", "rice"),
                                              ("scott", "scott"), ("freedman_diaconis", "fd")])
def test_bin_rules_equal_numpy_with_n_the_number_of_elements(maps, rule, numpy_rule) -> None:
    got = rule_counts(torch.from_numpy(maps).flatten(1), rule).tolist()
    assert got == [len(np.histogram_bin_edges(m, bins=numpy_rule)) - 1 for m in maps]
    # n is the map's 17 x 19 = 323 elements, not its 2 axes (Quantus 0.6's n_bins_func uses a_batch[0].ndim)
    if rule == "sturges":
        assert got[0] == int(np.ceil(np.log2(323) + 1)) == 10


def test_rule_counts_are_clipped_and_numbers_pass_through(maps) -> None:
    tensor = torch.from_numpy(maps)
    numpy = [len(np.histogram_bin_edges(m, bins="fd")) - 1 for m in maps]
    assert max(numpy) > 200 and min(numpy) < 10  # the heavy-tailed map: thousands; the constant one: 1
    assert HistogramBins("freedman_diaconis", min_bins=10, max_bins=200).counts(tensor).tolist() == np.clip(numpy, 10, 200).tolist()
    assert HistogramBins(64).counts(tensor).tolist() == [64] * 5  # a number is used as it is
    with pytest.raises(ValueError, match="unknown bin rule 'doane'"):
        HistogramBins("doane")
    with pytest.raises(ValueError, match="min_bins <= max_bins"):
        HistogramBins("sqrt", min_bins=20, max_bins=10)


def test_a_map_holding_nan_has_nan_entropy(maps) -> None:
    broken = maps.copy()
    broken[1, 3, 3] = np.nan
    entropy = histogram_entropy(torch.from_numpy(broken), torch.full((5,), 10))
    assert torch.isnan(entropy[1]) and torch.isfinite(entropy[[0, 2, 3, 4]]).all()


def test_the_entropy_change_is_a_registered_score_higher_is_better() -> None:
    assert SCORES["entropy_change"].better == "higher"
