"""From [N,C,H,W] attributions to the 2-D maps every metric compares (DESIGN §4)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

REDUCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "sum": lambda maps: maps.sum(dim=1),  # signed relevance per pixel (the default)
    "mean": lambda maps: maps.mean(dim=1),
    "l2": lambda maps: torch.linalg.vector_norm(maps, ord=2, dim=1),  # "sensitivity": unsigned by construction
}


def reduce_channels(maps: Tensor, reduction: str) -> Tensor:
    """[N,C,H,W] -> [N,H,W] by the named reduction: 'sum', 'mean' or 'l2' over channels."""
    if maps.ndim != 4:
        raise ValueError(f"expected maps of shape [N,C,H,W], got {tuple(maps.shape)}")
    try:
        return REDUCTIONS[reduction](maps)
    except KeyError:
        raise ValueError(f"unknown reduction '{reduction}'; allowed: {', '.join(REDUCTIONS)}") from None
