from __future__ import annotations

import numpy as np
import pytest
import torch

from ._metrics_reference import np_data_range, np_normalize, sk_ssim
from benchmark.metrics import SSIMWindow, normalize_maps, resolve_data_range, ssim

WINDOWS = [
    {},
    {"win_size": 3},
    {"win_size": 7},
    {"win_size": 11},
    {"win_size": 7, "use_sample_covariance": False},
    {"gaussian_weights": True},
    {"gaussian_weights": True, "sigma": 1.0},
    {"gaussian_weights": True, "win_size": 7},
    {"gaussian_weights": True, "win_size": 15, "sigma": 0.8},
    {"gaussian_weights": True, "win_size": 3, "sigma": 2.5, "use_sample_covariance": False},
]


def _ours(a: np.ndarray, b: np.ndarray, rule: str | float, window: dict, k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return ssim(ta, tb, resolve_data_range(ta, tb, rule), SSIMWindow(**window), k1, k2).numpy()


def _reference(a: np.ndarray, b: np.ndarray, rule: str | float, window: dict, k1: float = 0.01, k2: float = 0.03) -> list[float]:
    return [sk_ssim(a[i], b[i], np_data_range(a[i], b[i], rule), K1=k1, K2=k2, **window) for i in range(len(a))]


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: ",".join(f"{k}={v}" for k, v in w.items()) or "default")
@pytest.mark.parametrize("rule", ["joint", "reference", 3.0])
def test_equals_skimage(correlated_pair: tuple[np.ndarray, np.ndarray], window: dict, rule: str | float) -> None:
    a, b = correlated_pair
    np.testing.assert_allclose(_ours(a, b, rule, window), _reference(a, b, rule, window), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["second_moment", "max_abs", "none"])
@pytest.mark.parametrize("absolute", [False, True])
@pytest.mark.parametrize("window", [{}, {"gaussian_weights": True}], ids=["uniform", "gaussian"])
def test_equals_skimage_on_transformed_maps(
    correlated_pair: tuple[np.ndarray, np.ndarray], kind: str, absolute: bool, window: dict
) -> None:
    a, b = correlated_pair
    if absolute:
        a, b = np.abs(a), np.abs(b)
    na = np.stack([np_normalize(m, kind) for m in a])
    nb = np.stack([np_normalize(m, kind) for m in b])
    ta = normalize_maps(torch.from_numpy(a), kind)
    tb = normalize_maps(torch.from_numpy(b), kind)
    ours = ssim(ta, tb, resolve_data_range(ta, tb, "joint"), SSIMWindow(**window)).numpy()
    np.testing.assert_allclose(ours, _reference(na, nb, "joint", window), atol=1e-5, rtol=0)


def test_other_constants_and_square_maps(np_rng: np.random.Generator) -> None:
    a = np_rng.normal(size=(2, 32, 32))
    b = a + np_rng.normal(size=a.shape)
    np.testing.assert_allclose(
        _ours(a, b, "joint", {"win_size": 5}, k1=0.05, k2=0.1),
        _reference(a, b, "joint", {"win_size": 5}, k1=0.05, k2=0.1),
        atol=1e-5,
        rtol=0,
    )


def test_map_as_small_as_the_window(np_rng: np.random.Generator) -> None:
    a = np_rng.normal(size=(2, 7, 9))
    b = a + np_rng.normal(size=a.shape)
    for window in ({}, {"gaussian_weights": True, "win_size": 7}):
        np.testing.assert_allclose(_ours(a, b, "joint", window), _reference(a, b, "joint", window), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="exceeds"):
        _ours(a, b, "joint", {"win_size": 9})


def test_float32_close_to_float64_reference(correlated_pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = correlated_pair
    ta, tb = torch.from_numpy(a).float(), torch.from_numpy(b).float()
    for window in ({}, {"gaussian_weights": True}):
        ours = ssim(ta, tb, resolve_data_range(ta, tb, "joint"), SSIMWindow(**window))
        assert ours.dtype == torch.float32
        np.testing.assert_allclose(ours.numpy(), _reference(a, b, "joint", window), atol=1e-4, rtol=0)


def test_batch_independence(correlated_pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = (torch.from_numpy(x) for x in correlated_pair)
    full = ssim(a, b, resolve_data_range(a, b, "joint"))
    single = ssim(a[1:2], b[1:2], resolve_data_range(a[1:2], b[1:2], "joint"))
    torch.testing.assert_close(full[1:2], single)


def test_data_range_rules(correlated_pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = correlated_pair
    for rule in ("joint", "reference", 2.5):
        got = resolve_data_range(torch.from_numpy(a), torch.from_numpy(b), rule).numpy()
        np.testing.assert_allclose(got, [np_data_range(a[i], b[i], rule) for i in range(len(a))])
    with pytest.raises(ValueError):
        resolve_data_range(torch.from_numpy(a), torch.from_numpy(b), 0.0)
    with pytest.raises(ValueError):
        resolve_data_range(torch.from_numpy(a), torch.from_numpy(b), "max")


def test_zero_data_range_guards(np_rng: np.random.Generator) -> None:
    zeros = torch.zeros(2, 16, 16, dtype=torch.float64)
    noise = torch.from_numpy(np_rng.normal(size=(2, 16, 16)))
    # Identical constant maps: joint range 0 falls back to 1, and SSIM is exactly 1.
    for rule in ("joint", "reference"):
        dr = resolve_data_range(zeros, zeros + 0.0, rule)
        torch.testing.assert_close(dr, torch.ones(2, dtype=torch.float64))
        torch.testing.assert_close(ssim(zeros, zeros, dr), torch.ones(2, dtype=torch.float64))
    # Constant reference under the 'reference' rule: falls back to the pair's joint range.
    dr = resolve_data_range(zeros, noise, "reference")
    torch.testing.assert_close(dr, resolve_data_range(zeros, noise, "joint"))
    ours = ssim(zeros, noise, dr)
    assert torch.isfinite(ours).all()
    reference = [sk_ssim(zeros[i].numpy(), noise[i].numpy(), float(dr[i])) for i in range(2)]
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-5, rtol=0)


def test_window_geometry_follows_skimage() -> None:
    assert SSIMWindow().size == 7
    assert SSIMWindow(gaussian_weights=True).size == 11  # 2 * int(3.5 * 1.5 + 0.5) + 1
    assert SSIMWindow(gaussian_weights=True, win_size=7).radius == 5  # filter keeps its length
    assert SSIMWindow(gaussian_weights=True, win_size=7).crop == 3
    assert SSIMWindow(win_size=5).cov_norm == pytest.approx(25 / 24)
    with pytest.raises(ValueError):
        SSIMWindow(win_size=4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_float32_matches_cpu(correlated_pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = (torch.from_numpy(x).float() for x in correlated_pair)
    cpu = ssim(a, b, resolve_data_range(a, b, "joint"), SSIMWindow(gaussian_weights=True))
    ca, cb = a.cuda(), b.cuda()
    gpu = ssim(ca, cb, resolve_data_range(ca, cb, "joint"), SSIMWindow(gaussian_weights=True))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
