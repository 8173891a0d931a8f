"""Per-image normalization of attribution maps before they are compared (supplement D, D.1).

Every statistic is taken over one map's own pixels, never over the batch: a batch-wide constant
would make an image's score depend on which other images share its batch.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

NormalizationKind = Literal["second_moment", "max_abs", "none"]
NORMALIZATIONS: tuple[str, ...] = get_args(NormalizationKind)


def check_maps(maps: Tensor, name: str = "maps") -> None:
    """Fail early on anything but a floating batch of 2-D maps [N, H, W]."""
    if maps.ndim != 3:
        raise ValueError(f"{name} must be [N, H, W], got shape {tuple(maps.shape)}")
    if not maps.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {maps.dtype}")


def _safe_divide(maps: Tensor, scale: Tensor) -> Tensor:
    """Divide by a per-image scale, leaving maps whose scale is 0 (all-zero maps) at zero."""
    return maps / torch.where(scale > 0, scale, torch.ones_like(scale))


def normalize_maps(maps: Tensor, kind: NormalizationKind | str) -> Tensor:
    """Scale each map [N, H, W] by its own statistic.

    'second_moment': A / sqrt(mean(A^2)) (supplement eq. 11), so that the mean squared distance
    from "no contribution" (0) is 1 for every method: the paper's normalization, whose estimator
    converges, unlike the maximum (supplement D.1).
    'max_abs': A / max|A| (Adebayo et al.), kept for comparison with the original sanity checks.
    'none': the maps as given.

    An all-zero map stays all zero (no NaN or inf). The second moment is taken after dividing by
    max|A| first, which is the same number but cannot underflow for maps of tiny magnitude.
    """
    check_maps(maps)
    if kind == "none":
        return maps
    if kind not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {kind!r}; expected one of {NORMALIZATIONS}")
    peak = maps.abs().amax(dim=(-2, -1), keepdim=True)
    scaled = _safe_divide(maps, peak)
    if kind == "max_abs":
        return scaled
    rms = scaled.square().mean(dim=(-2, -1), keepdim=True).sqrt()
    return _safe_divide(scaled, rms)
