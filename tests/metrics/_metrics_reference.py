"""Independent numpy/scipy/skimage references for the metric tests (no code from benchmark.metrics)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from scipy.ndimage import gaussian_filter, uniform_filter
from skimage.metrics import structural_similarity


def np_normalize(a: np.ndarray, kind: str) -> np.ndarray:
    """Per-image normalization of one 2-D map, written straight from the formulas."""
    if kind == "none":
        return a
    if kind == "max_abs":
        peak = np.abs(a).max()
        return a / peak if peak > 0 else a
    if kind == "second_moment":
        rms = np.sqrt(np.mean(a**2))
        return a / rms if rms > 0 else a
    raise ValueError(kind)


def np_data_range(ref: np.ndarray, other: np.ndarray, rule: str | float) -> float:
    if rule == "joint":
        return float(max(ref.max(), other.max()) - min(ref.min(), other.min()))
    if rule == "reference":
        return float(ref.max() - ref.min())
    return float(rule)


def sk_ssim(a: np.ndarray, b: np.ndarray, data_range: float, **kw: object) -> float:
    return float(structural_similarity(a, b, data_range=data_range, **kw))


def np_spearman(a: np.ndarray, b: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(a.ravel(), b.ravel()).statistic)


def np_theorem1_bound(
    a: np.ndarray,
    b: np.ndarray,
    data_range: float,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    k2: float = 0.03,
    use_sample_covariance: bool = True,
) -> float:
    """C2/(var_A+var_B+C2) on skimage's local windows, following skimage's own recipe."""
    if gaussian_weights:
        size = win_size or 2 * int(3.5 * sigma + 0.5) + 1
        filt = lambda x: gaussian_filter(x, sigma=sigma, truncate=3.5, mode="reflect")  # noqa: E731
    else:
        size = win_size or 7
        filt = lambda x: uniform_filter(x, size=size)  # noqa: E731
    norm = size**2 / (size**2 - 1) if use_sample_covariance else 1.0
    va = norm * (filt(a * a) - filt(a) ** 2)
    vb = norm * (filt(b * b) - filt(b) ** 2)
    c2 = (k2 * data_range) ** 2
    pad = (size - 1) // 2
    bound = c2 / (va + vb + c2)
    return float(bound[pad : a.shape[0] - pad, pad : a.shape[1] - pad].mean())
