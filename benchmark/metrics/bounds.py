"""Per-pair noise bounds: what an uncorrelated (sigma_AB = 0) attribution process would score.

Theorem 1 (supplement B): for sigma_AB >= 0, SSIM is minimized at sigma_AB = 0, where it is at
most C2 / (sigma_A^2 + sigma_B^2 + C2) (eq. 7). Theorem 4 (supplement D): the expected MSE of
second-moment-normalized maps is maximized at sigma_AB = 0, with value
2 - 2 mu_A mu_B / (E[A^2]^1/2 E[B^2]^1/2) (eq. 15). A score beyond its bound is what pure noise
would achieve, so reporting both per pair shows how much of a "passed" sanity check noise explains.
Spearman (Theorem 3) has a constant bound of 0 that depends on nothing, so no per-pair value.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from benchmark.metrics.normalize import check_maps
from benchmark.metrics.ssim import LocalStats, PairStats, SSIMWindow, pair_stats, ssim_constants


def ssim_bound_from_stats(a: LocalStats, b: LocalStats, data_range: Tensor, k2: float = 0.03) -> Tensor:
    """Theorem 1 bound [N] as the mean over SSIM's windows of C2 / (sigma_A^2 + sigma_B^2 + C2).

    SSIM is itself a mean over local windows, and the theorem holds window by window; we therefore
    take the local variances from the same filter, covariance factor and cropped positions, and
    C2 = (K2 * data_range)^2 with the same data_range, so that bound and SSIM value are directly
    comparable numbers (not a bound from whole-map variances, which mixes in spatial structure).
    """
    _, c2 = ssim_constants(data_range, 0.0, k2)
    return (c2 / (a.var + b.var + c2)).mean(dim=(-2, -1))


def ssim_noise_bound(
    a: Tensor, b: Tensor, data_range: Tensor | float, window: SSIMWindow = SSIMWindow(), k2: float = 0.03
) -> Tensor:
    """Theorem 1 bound [N] for maps [N, H, W], with the arguments ``ssim`` takes."""
    stats: PairStats = pair_stats(a, b, window)
    if not isinstance(data_range, Tensor):
        data_range = a.new_full((a.shape[0],), float(data_range))
    return ssim_bound_from_stats(stats.a, stats.b, data_range.to(a.dtype), k2)


class MapMoments(NamedTuple):
    """Whole-map mean and second moment [N] of maps as compared."""

    mean: Tensor
    second: Tensor


def map_moments(maps: Tensor) -> MapMoments:
    check_maps(maps)
    return MapMoments(maps.mean(dim=(-2, -1)), maps.square().mean(dim=(-2, -1)))


def mse_bound_from_moments(a: MapMoments, b: MapMoments) -> Tensor:
    """Theorem 4 bound [N]: E[A^2] + E[B^2] - 2 mu_A mu_B of the maps as compared.

    This is the MSE at zero covariance (eq. 13-14 with sigma_AB = 0). For second-moment
    normalized maps E[A^2] = E[B^2] = 1 and it is eq. 15, 2 - 2 mu_A mu_B / (E[A^2]^1/2 E[B^2]^1/2)
    of the raw maps; for unnormalized maps it is eq. 19, sigma_A^2 + sigma_B^2 + (mu_A - mu_B)^2.
    Expectations are over the pixels of one map, so MSE = bound - 2 cov(A, B) exactly.
    """
    return a.second + b.second - 2 * a.mean * b.mean


def mse_noise_bound(a: Tensor, b: Tensor) -> Tensor:
    """Theorem 4 bound [N] for maps [N, H, W] as compared (normalize them first)."""
    return mse_bound_from_moments(map_moments(a), map_moments(b))
