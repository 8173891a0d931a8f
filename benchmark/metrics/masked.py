"""The similarity metrics restricted to a mask of pixels (the paper's §5 refinement (1)).

Binder et al. (2023, §5) propose to "only measure change w.r.t. input features to which the model
is not invariant". Given a boolean mask per image (the pixels kept), every step of the comparison
looks at the masked pixels only:

- **normalization**: the per-image statistic (second moment, max |A|) is taken over the masked
  pixels; unmasked pixels are set to 0 and never read again;
- **SSIM**: the mean of the SSIM windows (skimage's windows at the cropped positions, the job's
  window) that lie *fully inside* the mask, so that no window's statistics see an unmasked pixel;
  the data range (``joint``/``reference``) is the range over the masked pixels. No such window:
  NaN. (Chosen over masked window means, which would change the window weights pixel by pixel
  and no longer be skimage's SSIM on any image.)
- **MSE**: the mean squared difference over the masked pixels;
- **Spearman**: the rank correlation of the masked pixels alone (ranks within the mask, ties
  averaged), i.e. ``scipy.stats.spearmanr(a[mask], b[mask])``; NaN for fewer than 2 pixels or a
  map constant on the mask.

Every metric is NaN for an empty mask. Batched over images; masks differ per image.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .normalize import NORMALIZATIONS, check_maps
from .ranks import average_ranks
from .ssim import DataRange, SSIMWindow, local_mean, pair_stats, ssim_map_from_stats

# A window counts as inside the mask when the mask's windowed mean is 1 up to the filter taps' rounding.
INSIDE = 1.0 - 1e-9


def _check_mask(maps: Tensor, mask: Tensor) -> None:
    check_maps(maps)
    if mask.shape != maps.shape or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor of the maps' shape {tuple(maps.shape)}, got {mask.dtype} {tuple(mask.shape)}")


def masked_normalize(maps: Tensor, mask: Tensor, kind: str) -> Tensor:
    """``normalize_maps`` with the statistic taken over the masked pixels; unmasked pixels become 0."""
    _check_mask(maps, mask)
    if kind not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {kind!r}; expected one of {NORMALIZATIONS}")
    x = torch.where(mask, maps, torch.zeros_like(maps))
    if kind == "none":
        return x
    peak = x.abs().amax(dim=(-2, -1), keepdim=True)
    scaled = x / torch.where(peak > 0, peak, torch.ones_like(peak))
    if kind == "max_abs":
        return scaled
    pixels = mask.sum(dim=(-2, -1), keepdim=True).clamp(min=1).to(maps.dtype)
    rms = (scaled.square().sum(dim=(-2, -1), keepdim=True) / pixels).sqrt()
    return scaled / torch.where(rms > 0, rms, torch.ones_like(rms))


def _masked_extrema(maps: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    high = torch.where(mask, maps, torch.full_like(maps, -math.inf)).amax(dim=(-2, -1))
    low = torch.where(mask, maps, torch.full_like(maps, math.inf)).amin(dim=(-2, -1))
    return low, high


def masked_data_range(reference: Tensor, other: Tensor, mask: Tensor, rule: DataRange) -> Tensor:
    """``resolve_data_range`` over the masked pixels (same rules and the same fallbacks for a range of 0)."""
    low_a, high_a = _masked_extrema(reference, mask)
    low_b, high_b = _masked_extrema(other, mask)
    joint = torch.maximum(high_a, high_b) - torch.minimum(low_a, low_b)
    joint = torch.where(torch.isfinite(joint), joint, torch.zeros_like(joint))  # an empty mask: no range
    if not isinstance(rule, str):
        return torch.full_like(joint, float(rule))
    value = joint if rule == "joint" else torch.nan_to_num(high_a - low_a, nan=0.0, posinf=0.0, neginf=0.0)
    value = torch.where(value > 0, value, joint)
    return torch.where(value > 0, value, torch.ones_like(value))


def inside_windows(mask: Tensor, window: SSIMWindow) -> Tensor:
    """[N, H - 2c, W - 2c]: the SSIM windows whose every pixel (every filter tap) is in the mask."""
    return local_mean(mask.to(torch.float64), window) >= INSIDE


def masked_ssim(
    reference: Tensor, maps: Tensor, mask: Tensor, window: SSIMWindow, data_range: DataRange, k1: float, k2: float
) -> Tensor:
    """Mean SSIM [N] over the windows fully inside the mask; NaN where no window is."""
    _check_mask(maps, mask)
    stats = pair_stats(reference, maps, window)
    windows = ssim_map_from_stats(stats, masked_data_range(reference, maps, mask, data_range), k1, k2)
    inside = inside_windows(mask, window)
    count = inside.sum(dim=(-2, -1))
    total = torch.where(inside, windows, torch.zeros_like(windows)).sum(dim=(-2, -1))
    return torch.where(count > 0, total / count.clamp(min=1).to(total.dtype), torch.full_like(total, math.nan))


def masked_mse(reference: Tensor, maps: Tensor, mask: Tensor) -> Tensor:
    """Mean squared difference [N] over the masked pixels; NaN for an empty mask."""
    _check_mask(maps, mask)
    pixels = mask.sum(dim=(-2, -1))
    squares = torch.where(mask, (reference - maps).square(), torch.zeros_like(maps)).sum(dim=(-2, -1))
    return torch.where(pixels > 0, squares / pixels.clamp(min=1).to(squares.dtype), torch.full_like(squares, math.nan))


def _masked_centered_ranks(maps: Tensor, mask: Tensor) -> Tensor:
    """Ranks within the mask (ties averaged), centred on their mean, 0 outside the mask [N, M]: unmasked
    pixels are set above every masked one, so they cannot move a masked pixel's rank."""
    flat_mask = mask.flatten(1)
    ranks = average_ranks(torch.where(flat_mask, maps.flatten(1), torch.full_like(maps.flatten(1), math.inf)))
    pixels = flat_mask.sum(dim=1, keepdim=True).to(ranks.dtype)
    return torch.where(flat_mask, ranks - (pixels + 1) / 2, torch.zeros_like(ranks))


def masked_spearman(reference: Tensor, maps: Tensor, mask: Tensor) -> Tensor:
    """Spearman correlation [N] of the masked pixels (scipy.stats.spearmanr(a[mask], b[mask])); NaN for
    fewer than 2 masked pixels or a map constant on the mask."""
    _check_mask(maps, mask)
    a, b = _masked_centered_ranks(reference, mask), _masked_centered_ranks(maps, mask)
    denominator = a.square().sum(dim=1).sqrt() * b.square().sum(dim=1).sqrt()
    rho = (a * b).sum(dim=1) / torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, rho.clamp(-1.0, 1.0), torch.full_like(rho, math.nan))
