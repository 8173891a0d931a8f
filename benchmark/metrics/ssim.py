"""Batched 2-D SSIM equal to ``skimage.metrics.structural_similarity`` (DESIGN.md 5).

skimage filters the whole image with a uniform (``scipy.ndimage.uniform_filter``) or Gaussian
(``scipy.ndimage.gaussian_filter``, truncate 3.5) window in 'reflect' mode, forms the SSIM map and
averages it after cropping ``pad = (win_size - 1) // 2`` pixels from every border. Only the cropped
positions enter the mean, so we evaluate the separable filter on exactly those positions: a
uniform window then needs no border handling at all, and a Gaussian window wider than the crop
reads just the few reflected pixels it needs.

The filter is a weighted sum of shifted slices, not ``conv2d``: elementwise arithmetic stays in
the tensors' dtype on every device, whereas a float32 convolution on a GPU may silently run in
TF32 (10-bit mantissa), which the cancellation in E[x^2] - E[x]^2 would turn into visible error.

The local statistics are shared with the Theorem 1 bound (``benchmark.metrics.bounds``), so the
bound is evaluated on the very windows the SSIM averages over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor

from benchmark.metrics.normalize import check_maps

DataRangeRuleName = Literal["joint", "reference"]
DATA_RANGE_RULES: tuple[str, ...] = get_args(DataRangeRuleName)
DataRange = DataRangeRuleName | float


@dataclass(frozen=True)
class SSIMWindow:
    """Sliding-window geometry of skimage's SSIM, with skimage's argument semantics.

    ``win_size`` None means skimage's default: 7 for uniform weights, the Gaussian filter's own
    length 2*int(truncate*sigma + 0.5) + 1 for Gaussian weights. An explicit ``win_size`` with
    Gaussian weights is what skimage does too: it sets the border crop and the sample-covariance
    factor, while the Gaussian filter keeps its length from ``sigma`` and ``truncate``.
    """

    win_size: int | None = None
    gaussian_weights: bool = False
    sigma: float = 1.5
    truncate: float = 3.5
    use_sample_covariance: bool = True

    def __post_init__(self) -> None:
        if self.win_size is not None and (self.win_size < 3 or self.win_size % 2 == 0):
            raise ValueError(f"win_size must be odd and >= 3, got {self.win_size}")
        if self.sigma <= 0 or self.truncate <= 0:
            raise ValueError("sigma and truncate must be positive")

    @property
    def _gaussian_radius(self) -> int:
        return int(self.truncate * self.sigma + 0.5)  # as scipy.ndimage.gaussian_filter

    @property
    def radius(self) -> int:
        """Half-length of the filter itself."""
        return self._gaussian_radius if self.gaussian_weights else (self.size - 1) // 2

    @property
    def size(self) -> int:
        """skimage's effective ``win_size``: sets the border crop and the covariance factor."""
        if self.win_size is not None:
            return self.win_size
        return 2 * self._gaussian_radius + 1 if self.gaussian_weights else 7

    @property
    def crop(self) -> int:
        """Pixels dropped at every border before the mean (skimage's ``pad``)."""
        return (self.size - 1) // 2

    @property
    def cov_norm(self) -> float:
        """NP / (NP - 1) with NP = win_size**2 for sample covariances, as skimage (also for Gaussian weights)."""
        if not self.use_sample_covariance:
            return 1.0
        points = self.size**2
        return points / (points - 1)

    def taps(self) -> list[float]:
        """1-D filter weights (sum 1) as Python floats: constants, so no host-device traffic."""
        if not self.gaussian_weights:
            return [1.0 / self.size] * self.size
        r = self.radius
        phi = [math.exp(-0.5 * (x / self.sigma) ** 2) for x in range(-r, r + 1)]
        total = math.fsum(phi)
        return [p / total for p in phi]

    def settings(self) -> dict[str, object]:
        return {
            "win_size": self.size,
            "win_size_requested": self.win_size,
            "gaussian_weights": self.gaussian_weights,
            "sigma": self.sigma,
            "truncate": self.truncate,
            "filter_taps": 2 * self.radius + 1,
            "border_crop": self.crop,
            "boundary": "reflect (scipy.ndimage 'reflect': edge pixel repeated)",
            "use_sample_covariance": self.use_sample_covariance,
            "covariance_factor": self.cov_norm,
        }


def _reflect_range(x: Tensor, dim: int, start: int, stop: int) -> Tensor:
    """Positions start..stop-1 along ``dim``, reflected as scipy's 'reflect' mode (d c b a | a b c d | d c b a)."""
    n = x.shape[dim]
    if start >= 0 and stop <= n:
        return x.narrow(dim, start, stop - start)
    idx = torch.arange(start, stop, device=x.device) % (2 * n)
    idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
    return x.index_select(dim, idx)


def _filter_1d(x: Tensor, dim: int, taps: list[float], radius: int, crop: int) -> Tensor:
    """Filter along ``dim``, evaluated only at the positions crop..n-crop-1 that SSIM keeps."""
    n = x.shape[dim]
    length = n - 2 * crop
    padded = _reflect_range(x, dim, crop - radius, n - crop + radius)
    out = padded.narrow(dim, 0, length) * taps[0]
    for k in range(1, len(taps)):
        out = out + padded.narrow(dim, k, length) * taps[k]
    return out


def local_mean(x: Tensor, window: SSIMWindow) -> Tensor:
    """Windowed mean of maps [..., H, W] at the cropped positions: [..., H - 2c, W - 2c]."""
    taps, radius, crop = window.taps(), window.radius, window.crop
    return _filter_1d(_filter_1d(x, -2, taps, radius, crop), -1, taps, radius, crop)


class LocalStats(NamedTuple):
    """Windowed mean and (optionally sample-corrected) variance of one batch of maps."""

    mean: Tensor
    var: Tensor


class PairStats(NamedTuple):
    """Local statistics of two batches of maps and their windowed covariance."""

    a: LocalStats
    b: LocalStats
    cov: Tensor


def _check_extent(maps: Tensor, window: SSIMWindow) -> None:
    if min(maps.shape[-2:]) < window.size:
        raise ValueError(f"win_size {window.size} exceeds the map extent {tuple(maps.shape[-2:])}")


def local_stats(maps: Tensor, window: SSIMWindow) -> LocalStats:
    """Windowed mean and variance of maps [N, H, W] (one filter pass over [x, x^2])."""
    check_maps(maps)
    _check_extent(maps, window)
    m = local_mean(torch.stack([maps, maps * maps]), window)
    return LocalStats(m[0], window.cov_norm * (m[1] - m[0] * m[0]))


def pair_stats(a: Tensor, b: Tensor, window: SSIMWindow, a_stats: LocalStats | None = None) -> PairStats:
    """Local statistics of a pair; ``a_stats`` reuses those of a reference computed once."""
    check_maps(a, "a")
    check_maps(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    _check_extent(a, window)
    if a_stats is None:
        m = local_mean(torch.stack([a, a * a, b, b * b, a * b]), window)
        a_stats = LocalStats(m[0], window.cov_norm * (m[1] - m[0] * m[0]))
        m = m[2:]
    else:
        m = local_mean(torch.stack([b, b * b, a * b]), window)
    b_stats = LocalStats(m[0], window.cov_norm * (m[1] - m[0] * m[0]))
    cov = window.cov_norm * (m[2] - a_stats.mean * b_stats.mean)
    return PairStats(a_stats, b_stats, cov)


def ssim_constants(data_range: Tensor, k1: float, k2: float) -> tuple[Tensor, Tensor]:
    """C1 = (K1 R)^2 and C2 = (K2 R)^2 per image, shaped [N, 1, 1] to broadcast over windows."""
    r = data_range.reshape(-1, 1, 1)
    return (k1 * r) ** 2, (k2 * r) ** 2


def ssim_map_from_stats(stats: PairStats, data_range: Tensor, k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """SSIM of every window [N, H - 2c, W - 2c] at the cropped positions (paper eq. 1, per window;
    skimage's ``full=True`` image without its border)."""
    c1, c2 = ssim_constants(data_range, k1, k2)
    ua, ub = stats.a.mean, stats.b.mean
    numerator = (2 * ua * ub + c1) * (2 * stats.cov + c2)
    denominator = (ua * ua + ub * ub + c1) * (stats.a.var + stats.b.var + c2)
    return numerator / denominator


def ssim_from_stats(stats: PairStats, data_range: Tensor, k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Mean SSIM [N] over the cropped window positions (paper eq. 1, per window)."""
    return ssim_map_from_stats(stats, data_range, k1, k2).mean(dim=(-2, -1))


def resolve_data_range(reference: Tensor, other: Tensor, rule: DataRange) -> Tensor:
    """SSIM's data_range per pair [N], on the maps as compared (after |.| and normalization).

    'joint': max over both maps minus min over both; 'reference': max - min of the reference
    (stage-0) map; a number: that constant. A range of 0 would make C1 = C2 = 0 and SSIM 0/0:
    where the rule gives 0 we fall back to the pair's joint range, and where that is 0 too (both
    maps the same constant) to 1, for which identical constant maps get SSIM exactly 1.
    """
    check_maps(reference, "reference")
    check_maps(other, "other")
    joint = torch.maximum(reference.amax(dim=(-2, -1)), other.amax(dim=(-2, -1))) - torch.minimum(
        reference.amin(dim=(-2, -1)), other.amin(dim=(-2, -1))
    )
    if isinstance(rule, str):
        if rule not in DATA_RANGE_RULES:
            raise ValueError(f"unknown data_range rule {rule!r}; expected {DATA_RANGE_RULES} or a number")
        value = joint if rule == "joint" else reference.amax(dim=(-2, -1)) - reference.amin(dim=(-2, -1))
    else:
        if not 0 < float(rule) < math.inf:
            raise ValueError(f"a constant data_range must be positive and finite, got {rule}")
        return torch.full_like(joint, float(rule))
    value = torch.where(value > 0, value, joint)
    return torch.where(value > 0, value, torch.ones_like(value))


def ssim(
    a: Tensor,
    b: Tensor,
    data_range: Tensor | float,
    window: SSIMWindow = SSIMWindow(),
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """SSIM per image [N] of maps [N, H, W]; ``data_range`` a number or one value per image.

    Equals skimage.metrics.structural_similarity(a[i], b[i], data_range=..., K1=k1, K2=k2, ...)
    with the window's win_size, gaussian_weights, sigma and use_sample_covariance.
    """
    stats = pair_stats(a, b, window)
    if not isinstance(data_range, Tensor):
        data_range = torch.full((a.shape[0],), float(data_range), dtype=a.dtype, device=a.device)
    return ssim_from_stats(stats, data_range.to(a.dtype), k1, k2)
