"""Similarity metrics of the randomization sanity checks (DESIGN.md 5; supplement B, C, D).

The experiment code prepares the stage-0 maps once and compares every stage's maps with them:

    comparer = MapComparer(spec.metrics)
    prepared = comparer.prepare(reference)          # stage-0 maps [N, H, W]
    values, bounds = comparer.compare(prepared, m)  # [K, N] each, rows in comparer.keys order

Per key the order of operations is: absolute value (if ``absolute``) -> per-image normalization
-> metric. Everything runs batched on the maps' device; nothing is moved to the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.config.spec import MetricsSpec
from benchmark.metrics.bounds import (
    MapMoments,
    map_moments,
    mse_bound_from_moments,
    mse_noise_bound,
    ssim_bound_from_stats,
    ssim_noise_bound,
)
from benchmark.metrics.distances import mse
from benchmark.metrics.normalize import NORMALIZATIONS, check_maps, normalize_maps
from benchmark.metrics.ranks import RankProfile, average_ranks, rank_profile, spearman, spearman_from_profiles
from benchmark.metrics.ssim import (
    LocalStats,
    SSIMWindow,
    local_stats,
    pair_stats,
    resolve_data_range,
    ssim,
    ssim_from_stats,
)

__all__ = [
    "ComparisonKey",
    "MapComparer",
    "PreparedReference",
    "SSIMWindow",
    "average_ranks",
    "mse",
    "mse_noise_bound",
    "normalize_maps",
    "resolve_data_range",
    "spearman",
    "ssim",
    "ssim_noise_bound",
]

METRICS: tuple[str, ...] = ("ssim", "mse", "spearman")


@dataclass(frozen=True)
class ComparisonKey:
    metric: str  # 'ssim' | 'mse' | 'spearman'
    normalization: str  # 'second_moment' | 'max_abs' | 'none'
    absolute: bool  # compare |maps| instead of signed maps


@dataclass(frozen=True)
class _Side:
    """One transformed version of a batch of maps with what its metrics need of it alone."""

    maps: Tensor
    local: LocalStats | None
    moments: MapMoments | None
    ranks: RankProfile | None


@dataclass(frozen=True)
class PreparedReference:
    """Stage-0 maps in every (absolute, normalization) version, computed once per batch, and which
    of them hold only finite values [N]."""

    shape: tuple[int, ...]
    sides: dict[tuple[bool, str], _Side]
    finite: Tensor


def all_finite(maps: Tensor) -> Tensor:
    """[N]: whether each map [N, H, W] holds only finite values."""
    return torch.isfinite(maps).flatten(1).all(dim=-1)


class MapComparer:
    """Computes every configured (metric, normalization, absolute) comparison and its noise bound.

    ``dtype`` is the compute dtype (float64 by default): it keeps SSIM equal to skimage to 1e-5,
    ranks and second moments exact, and results identical across devices and TF32 settings.
    None computes in the maps' own floating dtype. Results come back in the compute dtype.
    """

    def __init__(self, spec: MetricsSpec, dtype: torch.dtype | None = torch.float64) -> None:
        self.spec = spec
        self.dtype = dtype
        s = spec.ssim
        self.window = SSIMWindow(
            win_size=s.win_size,
            gaussian_weights=s.gaussian_weights,
            sigma=s.sigma,
            truncate=s.truncate,
            use_sample_covariance=s.use_sample_covariance,
        )
        for name in spec.similarities:
            if name not in METRICS:
                raise ValueError(f"unknown similarity {name!r}; expected one of {METRICS}")
        for name in spec.normalizations:
            if name not in NORMALIZATIONS:
                raise ValueError(f"unknown normalization {name!r}; expected one of {NORMALIZATIONS}")
        self.keys: list[ComparisonKey] = [
            ComparisonKey(metric, normalization, bool(absolute))
            for absolute in spec.absolute
            for normalization in spec.normalizations
            for metric in spec.similarities
        ]
        self._variants: list[tuple[bool, str]] = list(dict.fromkeys((k.absolute, k.normalization) for k in self.keys))
        self._needs = set(spec.similarities)

    def _cast(self, maps: Tensor) -> Tensor:
        check_maps(maps)
        return maps if self.dtype is None else maps.to(self.dtype)

    def _side(self, maps: Tensor, absolute: bool, normalization: str) -> _Side:
        x = normalize_maps(maps.abs() if absolute else maps, normalization)
        return _Side(
            maps=x,
            local=local_stats(x, self.window) if "ssim" in self._needs else None,
            moments=map_moments(x) if "mse" in self._needs else None,
            ranks=rank_profile(x) if "spearman" in self._needs else None,
        )

    def prepare(self, reference: Tensor) -> PreparedReference:
        """Transform the stage-0 maps [N, H, W] once for all stages."""
        reference = self._cast(reference)
        sides = {(a, n): self._side(reference, a, n) for a, n in self._variants}
        return PreparedReference(tuple(reference.shape), sides, all_finite(reference))

    def compare(self, prepared: PreparedReference, other: Tensor) -> tuple[Tensor, Tensor]:
        """Values and bounds [K, N] of ``other`` [N, H, W] against the prepared reference.

        Rows follow ``self.keys``; bounds are NaN for Spearman (no per-pair bound). Every value and
        bound of a pair whose maps hold a NaN or an infinity is NaN: the method broke down there, and
        no metric may score it (an infinite MSE or a finite Spearman of such a map would).
        """
        other = self._cast(other)
        if tuple(other.shape) != prepared.shape:
            raise ValueError(f"maps {tuple(other.shape)} do not match the reference {prepared.shape}")
        nan = other.new_full((other.shape[0],), float("nan"))
        results: dict[tuple[bool, str], dict[str, tuple[Tensor, Tensor]]] = {}
        for absolute, normalization in self._variants:
            ref = prepared.sides[(absolute, normalization)]
            x = normalize_maps(other.abs() if absolute else other, normalization)
            row: dict[str, tuple[Tensor, Tensor]] = {}
            if ref.local is not None:
                stats = pair_stats(ref.maps, x, self.window, a_stats=ref.local)
                data_range = resolve_data_range(ref.maps, x, self.spec.ssim.data_range)
                row["ssim"] = (
                    ssim_from_stats(stats, data_range, self.spec.ssim.k1, self.spec.ssim.k2),
                    ssim_bound_from_stats(stats.a, stats.b, data_range, self.spec.ssim.k2),
                )
            if ref.moments is not None:
                row["mse"] = (mse(ref.maps, x), mse_bound_from_moments(ref.moments, map_moments(x)))
            if ref.ranks is not None:
                row["spearman"] = (spearman_from_profiles(ref.ranks, rank_profile(x)), nan)
            results[(absolute, normalization)] = row
        pairs = [results[(k.absolute, k.normalization)][k.metric] for k in self.keys]
        values, bounds = torch.stack([v for v, _ in pairs]), torch.stack([b for _, b in pairs])
        finite = prepared.finite & all_finite(other)
        return values.where(finite, nan), bounds.where(finite, nan)

    def settings(self) -> dict[str, object]:
        """Every setting that shapes the numbers, for the run's metadata (JSON-serializable)."""
        s = self.spec.ssim
        return {
            "similarities": list(self.spec.similarities),
            "normalizations": list(self.spec.normalizations),
            "absolute": [bool(a) for a in self.spec.absolute],
            "keys": [[k.metric, k.normalization, k.absolute] for k in self.keys],
            "order": "absolute -> per-image normalization -> metric",
            "compute_dtype": str(self.dtype).removeprefix("torch.") if self.dtype is not None else "input",
            "normalization": {
                "second_moment": "A / sqrt(mean(A^2)) per image (supplement eq. 11)",
                "max_abs": "A / max|A| per image (Adebayo et al.)",
                "none": "A",
                "all_zero_map": "stays zero",
            },
            "ssim": {
                "reference": "skimage.metrics.structural_similarity (2-D, mean over cropped windows)",
                **self.window.settings(),
                "k1": s.k1,
                "k2": s.k2,
                "data_range": s.data_range,
                "data_range_zero_fallback": "joint range of the pair, then 1.0",
            },
            "mse": {"reduction": "mean over pixels"},
            "spearman": {"ties": "average", "constant_map": "nan", "reference": "scipy.stats.spearmanr"},
            "non_finite_map": "nan for every metric and bound",
            "bounds": {
                "ssim": "Theorem 1: mean over SSIM's windows of C2/(var_A+var_B+C2), same filter, crop and data_range",
                "mse": "Theorem 4: mean(A^2)+mean(B^2)-2*mean(A)*mean(B) of the compared maps (eq. 15; eq. 19 unnormalized)",
                "spearman": None,
            },
        }
