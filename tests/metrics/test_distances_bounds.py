"""MSE against numpy, the Theorem 1 and 4 bounds against independent formulas, and their noise properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ._metrics_reference import np_data_range, np_normalize, np_theorem1_bound, sk_ssim
from benchmark.metrics import SSIMWindow, mse, mse_noise_bound, normalize_maps, resolve_data_range, ssim, ssim_noise_bound


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x)


def test_mse_equals_numpy(correlated_pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = correlated_pair
    np.testing.assert_allclose(mse(_t(a), _t(b)).numpy(), ((a - b) ** 2).mean(axis=(1, 2)), rtol=1e-12)


@pytest.mark.parametrize("kind", ["second_moment", "max_abs", "none"])
def test_mse_is_bound_minus_twice_covariance(correlated_pair: tuple[np.ndarray, np.ndarray], kind: str) -> None:
    """Supplement eq. 14/18: MSE = bound - 2 sigma_AB, with pixel expectations."""
    a, b = correlated_pair
    na = np.stack([np_normalize(m, kind) for m in a])
    nb = np.stack([np_normalize(m, kind) for m in b])
    cov = ((na - na.mean(axis=(1, 2), keepdims=True)) * (nb - nb.mean(axis=(1, 2), keepdims=True))).mean(axis=(1, 2))
    ta, tb = normalize_maps(_t(a), kind), normalize_maps(_t(b), kind)
    np.testing.assert_allclose(mse(ta, tb).numpy(), mse_noise_bound(ta, tb).numpy() - 2 * cov, atol=1e-12)


def test_theorem4_bound_is_eq15_for_second_moment(correlated_pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = correlated_pair
    b = np.abs(b)  # clearly non-zero means
    closed = 2 - 2 * a.mean(axis=(1, 2)) * b.mean(axis=(1, 2)) / (
        np.sqrt((a**2).mean(axis=(1, 2))) * np.sqrt((b**2).mean(axis=(1, 2)))
    )
    ours = mse_noise_bound(normalize_maps(_t(a), "second_moment"), normalize_maps(_t(b), "second_moment"))
    np.testing.assert_allclose(ours.numpy(), closed, rtol=1e-12)


def test_theorem4_bound_is_eq19_unnormalized(correlated_pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = correlated_pair
    b = 3 * b + 1
    closed = a.var(axis=(1, 2)) + b.var(axis=(1, 2)) + (a.mean(axis=(1, 2)) - b.mean(axis=(1, 2))) ** 2
    np.testing.assert_allclose(mse_noise_bound(_t(a), _t(b)).numpy(), closed, rtol=1e-12)


@pytest.mark.parametrize(
    "window",
    [{}, {"win_size": 5}, {"gaussian_weights": True}, {"gaussian_weights": True, "win_size": 7, "use_sample_covariance": False}],
    ids=["uniform7", "uniform5", "gaussian", "gaussian-w7-population"],
)
@pytest.mark.parametrize("rule", ["joint", "reference"])
def test_theorem1_bound_on_ssim_windows(correlated_pair: tuple[np.ndarray, np.ndarray], window: dict, rule: str) -> None:
    a, b = correlated_pair
    ta, tb = _t(a), _t(b)
    dr = resolve_data_range(ta, tb, rule)
    ours = ssim_noise_bound(ta, tb, dr, SSIMWindow(**window), k2=0.05).numpy()
    expected = [np_theorem1_bound(a[i], b[i], np_data_range(a[i], b[i], rule), k2=0.05, **window) for i in range(len(a))]
    np.testing.assert_allclose(ours, expected, atol=1e-10, rtol=0)


def test_theorem1_bound_is_attained_at_zero_covariance_and_equal_means() -> None:
    """Supplement eq. 5-7 hold with equality when sigma_AB = 0 and mu_A = mu_B in every window.

    B is constant (sigma_B = sigma_AB = 0) and A = B + a pattern of period 3 whose every 3x3 block
    sums to zero, so each 3x3 window of A has mean exactly B's value.
    """
    u = np.array([1.0, -2.0, 1.0])
    pattern = np.outer(np.tile(u, 4), np.tile(u[::-1] + 0.5 * u, 5))  # 12 x 15
    a = (2.0 + pattern)[None]
    b = np.full_like(a, 2.0)
    ta, tb = _t(a), _t(b)
    window = SSIMWindow(win_size=3)
    dr = resolve_data_range(ta, tb, "joint")
    value, bound = ssim(ta, tb, dr, window), ssim_noise_bound(ta, tb, dr, window)
    np.testing.assert_allclose(value.numpy(), [sk_ssim(a[0], b[0], float(dr[0]), win_size=3)], atol=1e-12)
    torch.testing.assert_close(value, bound)
    # with unequal means the luminance factor drops below 1 (eq. 6-7) and SSIM below the bound
    value = ssim(ta, tb + 1.0, resolve_data_range(ta, tb + 1.0, "joint"), window)
    assert value.item() < ssim_noise_bound(ta, tb + 1.0, resolve_data_range(ta, tb + 1.0, "joint"), window).item()


def _noise(rng: np.random.Generator, absolute: bool) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = rng.normal(size=(2, 8, 48, 48))
    if absolute:
        a, b = np.abs(a), np.abs(b)
    return normalize_maps(_t(a), "second_moment"), normalize_maps(_t(b), "second_moment")


def test_normalized_mse_of_independent_zero_mean_noise_is_two(np_rng: np.random.Generator) -> None:
    a, b = _noise(np_rng, absolute=False)
    value, bound = mse(a, b), mse_noise_bound(a, b)
    assert abs(value.mean().item() - 2.0) < 0.05
    assert abs(bound.mean().item() - 2.0) < 0.01  # mu_A mu_B ~ 0
    # MSE - bound = -2 cov(A, B): zero mean with std 2/48 per image
    assert (value - bound).abs().max().item() < 5 * 2 / 48
    assert abs((value - bound).mean().item()) < 5 * 2 / 48 / np.sqrt(8)


def test_normalized_mse_of_independent_absolute_noise_follows_eq15(np_rng: np.random.Generator) -> None:
    a, b = _noise(np_rng, absolute=True)
    expected = 2 - 2 * 2 / np.pi  # E|Z| = sqrt(2/pi), E[Z^2] = 1
    assert abs(mse(a, b).mean().item() - expected) < 0.05
    assert abs(mse_noise_bound(a, b).mean().item() - expected) < 0.05


@pytest.mark.parametrize("window", [SSIMWindow(), SSIMWindow(gaussian_weights=True)], ids=["uniform", "gaussian"])
def test_ssim_of_independent_noise_is_near_the_theorem1_bound(np_rng: np.random.Generator, window: SSIMWindow) -> None:
    # Zero-mean noise: the luminance factor is small, so SSIM lies below the bound on average.
    a, b = _noise(np_rng, absolute=False)
    dr = resolve_data_range(a, b, "joint")
    value, bound = ssim(a, b, dr, window), ssim_noise_bound(a, b, dr, window)
    assert value.mean() < bound.mean()
    assert (value - bound).abs().max() < 0.05
    # Positive-mean noise (|N(0,1)|): the luminance factor is close to 1, so SSIM ~ bound.
    a, b = _noise(np_rng, absolute=True)
    dr = resolve_data_range(a, b, "joint")
    value, bound = ssim(a, b, dr, window), ssim_noise_bound(a, b, dr, window)
    assert abs(value.mean().item() - bound.mean().item()) < 0.01
    # Both far below the SSIM of a correlated pair.
    assert bound.max() < 0.1
