"""Spearman rank correlation with average ranks for ties (supplement C, eq. 8).

Attribution maps tie a lot (ReLU-like maps with many exact zeros, quantized maps), and the
tie rule changes the score, so ties get the average rank like scipy.stats.rankdata('average').
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from benchmark.metrics.normalize import check_maps


def average_ranks(x: Tensor) -> Tensor:
    """1-based ranks along the last dim of x [N, M], ties averaged; batched, no Python loop.

    A value's tie group occupies the sorted positions [left, right) found by two binary searches,
    so its average 1-based rank is (left + 1 + right) / 2. Values must be finite.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be [N, M], got shape {tuple(x.shape)}")
    x = x.contiguous()
    ordered = torch.sort(x, dim=-1).values
    left = torch.searchsorted(ordered, x, right=False)
    right = torch.searchsorted(ordered, x, right=True)
    dtype = x.dtype if x.is_floating_point() else torch.float64
    return (left + right + 1).to(dtype) / 2


class RankProfile(NamedTuple):
    """Centered average ranks [N, M] of flattened maps, their norms [N] and whether each map is all
    finite [N]: all Spearman needs of one side."""

    centered: Tensor
    norm: Tensor
    finite: Tensor


def rank_profile(maps: Tensor) -> RankProfile:
    """Precompute one side of the Spearman correlation (reused for the stage-0 map)."""
    check_maps(maps)
    flat = maps.flatten(1)
    ranks = average_ranks(flat)
    centered = ranks - ranks.mean(dim=-1, keepdim=True)
    return RankProfile(centered, centered.square().sum(dim=-1).sqrt(), torch.isfinite(flat).all(dim=-1))


def spearman_from_profiles(a: RankProfile, b: RankProfile) -> Tensor:
    """Pearson correlation of the ranks [N]; NaN where a map is constant (its ranks have no spread)
    or holds a NaN or an infinity.

    NaN, as scipy.stats.spearmanr, rather than 0: a constant map carries no ranking at all, and a 0
    would be read as "fully randomized", the very result the sanity check rewards. A NaN pixel
    would otherwise just sort last and leave a near-perfect score (scipy propagates the NaN). An
    infinite pixel is where the method broke down numerically: scipy ranks it as the largest value,
    we return NaN, as SSIM and MSE of such a map are (``MapComparer``), so that no metric scores it.
    """
    denominator = a.norm * b.norm
    rho = (a.centered * b.centered).sum(dim=-1) / denominator
    valid = (denominator > 0) & a.finite & b.finite
    return torch.where(valid, rho.clamp(-1.0, 1.0), torch.full_like(rho, float("nan")))


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation per image [N] of maps [N, H, W], equal to scipy.stats.spearmanr."""
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return spearman_from_profiles(rank_profile(a), rank_profile(b))
