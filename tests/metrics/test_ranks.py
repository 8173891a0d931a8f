from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from ._metrics_reference import np_spearman
from benchmark.metrics import average_ranks, spearman


def _tied_maps(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Maps with many ties, as attribution maps have: quantized, ReLU-like, sparse."""
    return {
        "integer": rng.integers(0, 5, size=(4, 16, 24)).astype(np.float64),
        "relu": np.maximum(rng.normal(size=(4, 16, 24)), 0.0),
        "sparse": np.where(rng.random((4, 16, 24)) < 0.9, 0.0, rng.normal(size=(4, 16, 24))),
        "continuous": rng.normal(size=(4, 16, 24)),
    }


@pytest.mark.parametrize("kind", ["integer", "relu", "sparse", "continuous"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_average_ranks_equal_rankdata(np_rng: np.random.Generator, kind: str, dtype: torch.dtype) -> None:
    x = _tied_maps(np_rng)[kind].reshape(4, -1)
    ours = average_ranks(torch.from_numpy(x).to(dtype))
    assert ours.dtype == dtype
    np.testing.assert_array_equal(ours.double().numpy(), rankdata(x.astype(np.float32 if dtype == torch.float32 else np.float64), axis=1))


@pytest.mark.parametrize("kind_a", ["integer", "relu", "sparse", "continuous"])
@pytest.mark.parametrize("kind_b", ["integer", "relu", "sparse"])
def test_spearman_equals_scipy(np_rng: np.random.Generator, kind_a: str, kind_b: str) -> None:
    maps = _tied_maps(np_rng)
    a = maps[kind_a]
    b = maps[kind_b] + (0.5 * a if kind_b != "integer" else np.round(a))  # some correlation, ties kept
    ours = spearman(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(ours, [np_spearman(a[i], b[i]) for i in range(len(a))], atol=1e-12)


def test_spearman_float32_close(np_rng: np.random.Generator) -> None:
    a = np.maximum(np_rng.normal(size=(3, 32, 32)), 0)
    b = a + np.maximum(np_rng.normal(size=a.shape), 0)
    ours = spearman(torch.from_numpy(a).float(), torch.from_numpy(b).float()).numpy()
    np.testing.assert_allclose(ours, [np_spearman(a[i], b[i]) for i in range(3)], atol=1e-5)


def test_constant_map_gives_nan_like_scipy(np_rng: np.random.Generator) -> None:
    a = np_rng.normal(size=(3, 16, 16))
    b = a.copy()
    b[0] = 0.0  # constant other map
    a[1] = 2.5  # constant reference map
    ours = spearman(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    expected = [np_spearman(a[i], b[i]) for i in range(3)]
    assert np.isnan(ours[0]) and np.isnan(ours[1]) and np.isnan(expected[0]) and np.isnan(expected[1])
    np.testing.assert_allclose(ours[2], expected[2])


def test_monotone_transform_invariance(np_rng: np.random.Generator) -> None:
    a = torch.from_numpy(np_rng.normal(size=(2, 16, 16)))
    torch.testing.assert_close(spearman(a, torch.exp(a)), torch.ones(2, dtype=a.dtype))
    torch.testing.assert_close(spearman(a, -a), -torch.ones(2, dtype=a.dtype))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("side", ["reference", "other"])
def test_a_map_with_a_non_finite_pixel_gives_nan(np_rng: np.random.Generator, bad: float, side: str) -> None:
    """One broken pixel must not leave a near-perfect score (it sorted last: 0.9998 before). scipy
    propagates a NaN; for an infinity it would rank it largest, we return NaN like SSIM and MSE."""
    a = np_rng.normal(size=(3, 16, 16))
    b = a + 0.01 * np_rng.normal(size=a.shape)
    broken = a if side == "reference" else b
    broken[1, 4, 5] = bad
    ours = spearman(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert np.isnan(ours[1])
    np.testing.assert_allclose(ours[[0, 2]], [np_spearman(a[i], b[i]) for i in (0, 2)], atol=1e-12)
    if np.isnan(bad):
        assert np.isnan(np_spearman(a[1], b[1]))
