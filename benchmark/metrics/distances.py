"""Pixel-wise distances between attribution maps (supplement D)."""

from __future__ import annotations

from torch import Tensor

from benchmark.metrics.normalize import check_maps


def mse(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared error per image [N] of maps [N, H, W] (supplement eq. 12 on the sample)."""
    check_maps(a, "a")
    check_maps(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a - b).square().mean(dim=(-2, -1))
