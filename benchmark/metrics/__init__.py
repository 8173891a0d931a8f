"""Similarity metrics of the randomization sanity checks (DESIGN.md 5; supplement B, C, D).

The experiment code prepares the stage-0 maps once and compares every stage's maps with them:

    comparer = MapComparer(spec.metrics)
    prepared = comparer.prepare(reference)          # stage-0 maps [N, H, W]
    values, bounds = comparer.compare(prepared, m)  # [K, N] each, rows in comparer.keys order

Per key the order of operations is: absolute value (if ``absolute``) -> per-image normalization
-> metric. Everything runs batched on the maps' device; nothing is moved to the host. The metrics
themselves are registered objects (``base.Metric``; the paper's three in ``similarities``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from benchmark.config.spec import MetricsSpec
from benchmark.metrics.base import HEADLINE, METRICS, Metric, NoiseBound, default_metrics, metric, register_metric, unregister_metric
from benchmark.metrics.bounds import mse_noise_bound, ssim_noise_bound
from benchmark.metrics.distances import mse
from benchmark.metrics.entropy import BIN_RULES, ENTROPY_CHANGE, HistogramBins, histogram_entropy
from benchmark.metrics.masked import masked_normalize
from benchmark.metrics.normalize import NORMALIZATIONS, check_maps, normalize_maps
from benchmark.metrics.ranks import average_ranks, spearman
from benchmark.metrics.scores import SCORES, Score, register_score, score
from benchmark.metrics.similarities import MSE, SSIM, Spearman
from benchmark.metrics.ssim import SSIMWindow, resolve_data_range, ssim

__all__ = [
    "BIN_RULES",
    "ENTROPY_CHANGE",
    "HEADLINE",
    "HistogramBins",
    "METRICS",
    "SCORES",
    "ComparisonKey",
    "MapComparer",
    "Metric",
    "MSE",
    "NoiseBound",
    "PreparedReference",
    "SSIM",
    "SSIMWindow",
    "Score",
    "Spearman",
    "average_ranks",
    "default_metrics",
    "histogram_entropy",
    "metric",
    "mse",
    "mse_noise_bound",
    "normalize_maps",
    "register_metric",
    "register_score",
    "resolve_data_range",
    "score",
    "spearman",
    "ssim",
    "ssim_noise_bound",
    "unregister_metric",
]


@dataclass(frozen=True)
class ComparisonKey:
    metric: str  # a registered metric's name
    normalization: str  # 'second_moment' | 'max_abs' | 'none'
    absolute: bool  # compare |maps| instead of signed maps


@dataclass(frozen=True)
class _Side:
    """One transformed version of a batch of maps with what each metric needs of it alone."""

    maps: Tensor
    prepared: dict[str, Any]


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
        self.metrics: dict[str, Metric] = {name: metric(name).configured(spec) for name in spec.similarities}
        for name in spec.normalizations:
            if name not in NORMALIZATIONS:
                raise ValueError(f"unknown normalization {name!r}; expected one of {NORMALIZATIONS}")
        self.keys: list[ComparisonKey] = [
            ComparisonKey(name, normalization, bool(absolute))
            for absolute in spec.absolute
            for normalization in spec.normalizations
            for name in spec.similarities
        ]
        self._variants: list[tuple[bool, str]] = list(dict.fromkeys((k.absolute, k.normalization) for k in self.keys))

    def _cast(self, maps: Tensor) -> Tensor:
        check_maps(maps)
        return maps if self.dtype is None else maps.to(self.dtype)

    def _side(self, maps: Tensor, absolute: bool, normalization: str) -> _Side:
        x = normalize_maps(maps.abs() if absolute else maps, normalization)
        return _Side(maps=x, prepared={name: m.prepare(x) for name, m in self.metrics.items()})

    def prepare(self, reference: Tensor) -> PreparedReference:
        """Transform the stage-0 maps [N, H, W] once for all stages."""
        reference = self._cast(reference)
        sides = {(a, n): self._side(reference, a, n) for a, n in self._variants}
        return PreparedReference(tuple(reference.shape), sides, all_finite(reference))

    def compare(self, prepared: PreparedReference, other: Tensor) -> tuple[Tensor, Tensor]:
        """Values and bounds [K, N] of ``other`` [N, H, W] against the prepared reference.

        Rows follow ``self.keys``; bounds are NaN for metrics without a per-pair bound (Spearman). Every
        value and bound of a pair whose maps hold a NaN or an infinity is NaN: the method broke down there,
        and no metric may score it (an infinite MSE or a finite Spearman of such a map would).
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
            for name, m in self.metrics.items():
                value, bound = m.compare(ref.maps, ref.prepared[name], x)
                row[name] = (value, nan if bound is None else bound)
            results[(absolute, normalization)] = row
        pairs = [results[(k.absolute, k.normalization)][k.metric] for k in self.keys]
        values, bounds = torch.stack([v for v, _ in pairs]), torch.stack([b for _, b in pairs])
        finite = prepared.finite & all_finite(other)
        return values.where(finite, nan), bounds.where(finite, nan)

    def compare_masked(self, reference: Tensor, other: Tensor, mask: Tensor) -> Tensor:
        """Values [K, N] of ``other`` against ``reference`` (maps [N, H, W], neither prepared) on the pixels
        of ``mask`` only: |.|, the normalization's statistic over the mask, then each metric's masked
        version (``metrics.masked``); NaN for a pair holding NaN or inf, or where the mask leaves nothing
        to compare. Refuses a metric without a masked version."""
        reference, other = self._cast(reference), self._cast(other)
        unmasked = [name for name, m in self.metrics.items() if not m.masked]
        if unmasked:
            raise ValueError(f"no masked version of the metric(s) {', '.join(unmasked)} (Metric.compare_masked)")
        nan = other.new_full((other.shape[0],), float("nan"))
        results: dict[tuple[bool, str], dict[str, Tensor]] = {}
        for absolute, normalization in self._variants:
            a = masked_normalize(reference.abs() if absolute else reference, mask, normalization)
            b = masked_normalize(other.abs() if absolute else other, mask, normalization)
            results[(absolute, normalization)] = {name: m.compare_masked(a, b, mask) for name, m in self.metrics.items()}
        values = torch.stack([results[(k.absolute, k.normalization)][k.metric] for k in self.keys])
        return values.where(all_finite(reference) & all_finite(other), nan)

    def settings(self) -> dict[str, object]:
        """Every setting that shapes the numbers, for the run's metadata (JSON-serializable)."""
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
            **{name: m.settings() for name, m in self.metrics.items()},
            "non_finite_map": "nan for every metric and bound",
            "bounds": {name: m.bound.computation if m.bound else None for name, m in self.metrics.items()},
        }
