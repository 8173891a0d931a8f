"""Discrete entropy of an attribution map's histogram, batched: the complexity of eMPRT.

Hedström et al. (2023) score a method by how much the entropy of its explanation's histogram rises
when the model is fully randomized. A map's histogram has equal-width bins over *that map's own*
range, counted as ``numpy.histogram`` counts them (the last bin holds its right edge; a constant
map spans [v − 0.5, v + 0.5]); its entropy is ``scipy.stats.entropy`` of the counts (natural log).
Every map of a batch is binned at once: a bin index per pixel, then one ``scatter_add`` per batch.

The bin count is a number, or a rule of ``numpy.histogram_bin_edges`` evaluated on the map itself,
with n the number of the map's elements — not the number of its axes, as Quantus 0.6's
``n_bins_func`` does (``a_batch[0].ndim``: 2 for every image, so Sturges gives 2 bins). Quantus
also computes the rule once on the whole batch; here it is per map. Rule counts are clipped to
[min_bins, max_bins] (Quantus' ``find_n_bins`` defaults, 10 and 200).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

import torch
from torch import Tensor

from ..config.repaired_checks import BinRule
from .scores import Score, register_score

BIN_RULES: tuple[str, ...] = get_args(BinRule)


@dataclass(frozen=True)
class HistogramBins:
    """How many equal-width bins each map's histogram has: ``n_bins`` a number, or a rule."""

    n_bins: int | str = 100
    min_bins: int = 10
    max_bins: int = 200

    def __post_init__(self) -> None:
        if isinstance(self.n_bins, str):
            if self.n_bins not in BIN_RULES:
                raise ValueError(f"unknown bin rule {self.n_bins!r}; expected a number or one of {BIN_RULES}")
        elif self.n_bins < 1:
            raise ValueError(f"n_bins must be at least 1, got {self.n_bins}")
        if not 1 <= self.min_bins <= self.max_bins:
            raise ValueError(f"need 1 <= min_bins <= max_bins, got {self.min_bins}, {self.max_bins}")

    def counts(self, maps: Tensor) -> Tensor:
        """Bins per map [N] (int64) for maps [N, ...] (each map flattened)."""
        flat = maps.flatten(1).to(torch.float64)
        if not isinstance(self.n_bins, str):
            return torch.full((flat.shape[0],), int(self.n_bins), dtype=torch.int64, device=flat.device)
        return rule_counts(flat, self.n_bins).clamp(self.min_bins, self.max_bins)

    def settings(self) -> dict[str, object]:
        rule = isinstance(self.n_bins, str)
        return {
            "n_bins": self.n_bins,
            "bins": "equal width over each map's own range (numpy.histogram)",
            **({"rule_n": "elements of the map", "clipped_to": [self.min_bins, self.max_bins]} if rule else {}),
            "entropy": "scipy.stats.entropy of the counts (natural log)",
        }


def rule_counts(flat: Tensor, rule: str) -> Tensor:
    """``numpy.histogram_bin_edges(x, bins=rule)``'s bin count per row of ``flat`` [N, M] (float64):
    the rule's bin width w, then ceil(ptp / w) bins, 1 where w = 0 (numpy's arithmetic, in its order)."""
    n = flat.shape[1]
    ptp = flat.amax(dim=1) - flat.amin(dim=1)
    if rule == "sturges":
        width = ptp / (math.log2(n) + 1.0)
    elif rule == "sqrt":
        width = ptp / math.sqrt(n)
    elif rule == "rice":
        width = ptp / (2.0 * n ** (1.0 / 3))
    elif rule == "scott":
        width = (24.0 * math.pi**0.5 / n) ** (1.0 / 3.0) * flat.std(dim=1, unbiased=False)
    elif rule == "freedman_diaconis":
        quartiles = torch.quantile(flat, torch.tensor([0.75, 0.25], dtype=flat.dtype, device=flat.device), dim=1)
        width = 2.0 * (quartiles[0] - quartiles[1]) * n ** (-1.0 / 3.0)
    else:
        raise ValueError(f"unknown bin rule {rule!r}; expected one of {BIN_RULES}")
    safe = torch.where(width > 0, width, torch.ones_like(width))
    return torch.where(width > 0, torch.ceil(ptp / safe), torch.ones_like(ptp)).to(torch.int64)


def histogram_counts(maps: Tensor, bins: Tensor) -> Tensor:
    """Counts [N, max(bins)] of each map [N, ...] in ``bins[n]`` equal-width bins over its own range,
    as ``numpy.histogram(map, bins=bins[n])`` counts them (in float64); bins beyond a map's count stay 0."""
    flat = maps.flatten(1).to(torch.float64)
    if not torch.isfinite(flat).all():
        raise ValueError("histogram of a map holding NaN or inf")
    bins = bins.to(device=flat.device, dtype=torch.int64)
    first, last = flat.amin(dim=1), flat.amax(dim=1)
    constant = first == last
    first = torch.where(constant, first - 0.5, first)
    last = torch.where(constant, last + 0.5, last)
    span = last - first
    count = bins.to(torch.float64)
    widest = int(bins.max())
    # the edges as numpy.linspace makes them: start + j * (span / bins), the last one the stop itself
    j = torch.arange(widest + 2, dtype=torch.float64, device=flat.device)
    edges = first[:, None] + j[None, :] * (span / count)[:, None]
    edges = torch.where(j[None, :] == count[:, None], last[:, None], edges)
    edges = torch.where(j[None, :] > count[:, None], torch.full_like(edges, math.inf), edges)
    index = (((flat - first[:, None]) / span[:, None]) * count[:, None]).to(torch.int64)
    index = torch.where(index == bins[:, None], index - 1, index)
    # numpy's correction of the ~1 ulp inconsistencies at bin edges
    index = index - (flat < edges.gather(1, index)).to(torch.int64)
    up = (flat >= edges.gather(1, index + 1)) & (index != bins[:, None] - 1)
    index = index + up.to(torch.int64)
    counts = torch.zeros(flat.shape[0], widest, dtype=torch.float64, device=flat.device)
    return counts.scatter_add_(1, index, torch.ones_like(flat))


def entropy_of_counts(counts: Tensor) -> Tensor:
    """Shannon entropy [N] (natural log) of histograms [N, B], as ``scipy.stats.entropy(counts)``."""
    p = counts / counts.sum(dim=1, keepdim=True)
    terms = torch.where(p > 0, -p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p))
    return terms.sum(dim=1)


def histogram_entropy(maps: Tensor, bins: Tensor) -> Tensor:
    """Entropy [N] of each map's histogram in ``bins[n]`` bins; NaN for a map holding NaN or inf."""
    flat = maps.flatten(1).to(torch.float64)
    finite = torch.isfinite(flat).all(dim=1)
    entropy = entropy_of_counts(histogram_counts(torch.where(finite[:, None], flat, torch.zeros_like(flat)), bins))
    return torch.where(finite, entropy, torch.full_like(entropy, math.nan))


# eMPRT's score: (H(ê) − H(e)) / H(e); the explanation should grow more complex when the model is randomized.
ENTROPY_CHANGE = register_score(
    Score("entropy_change", "relative rise of the histogram entropy (eMPRT)", "higher", short="eMPRT entropy rise")
)
