"""Occlusion faithfulness curves (DESIGN §6; supplement A.1, the perturbation test).

For every image and attribution method: rank the k×k tiles by mean attribution
(:mod:`.tiles`), then for t = 1..steps replace the t highest-ranked tiles, cumulatively, by the
same pixels of a blurred copy of the image, and record the target's softmax probability and
logit. Blurring with a box filter keeps colour statistics while removing texture, so the
occluded image is less of an outlier than one with random patches (supplement A.1).

Conventions (each is a choice the paper leaves open):

* Blur: a k×k box (mean) filter over the *unnormalized* pixels, k = 15, output the size of the
  image. Padding ``'reflect'`` is torch's reflect, which mirrors *without* repeating the edge
  pixel (``d c b | a b c d | c b a``; scipy's ``'mirror'``, numpy's ``'reflect'``);
  ``'replicate'`` repeats the edge pixel (scipy ``'nearest'``). An even kernel puts the extra
  tap before the centre, as scipy's ``uniform_filter`` does.
* Summaries, on the softmax curve f_0..f_T (T = steps, T + 1 points):
  ``auc`` = mean_t f_t (lower is better) and
  ``aopc`` = 1/(T+1) · Σ_{t=0}^{T} (f_0 − f_t) = f_0 − auc, the normalisation of Samek et al.
  2017 ("Evaluating the visualization of what a deep neural network has learned"), which counts
  the t = 0 term in the denominator.
* Fewer tiles than steps (small image, large kernel): after all n tiles are replaced the image
  is the blurred copy, so f_t = f_n for t > n; those points are copied, not recomputed.

Speed (DESIGN §10): f_0 is one forward per image, shared by all methods. The M·N·T perturbed
inputs are built on the device chunk by chunk (at most ``chunk_size`` inputs): each input's image,
blurred copy and rank map are gathered by index and ``rank < t`` is its mask, so no Python loop
runs per sample and the M·N·T images never exist at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.bundle import ModelBundle
from ..profiling import span
from .tiles import tile_ranking

BLUR_PADDINGS = ("reflect", "replicate")


def box_blur(pixels: Tensor, kernel: int, padding: str = "reflect") -> Tensor:
    """[N, C, H, W] -> same shape: each channel's k×k mean filter (the blurred copy of A.1)."""
    if padding not in BLUR_PADDINGS:
        raise ValueError(f"blur padding must be one of {BLUR_PADDINGS}, got '{padding}'")
    if kernel < 1:
        raise ValueError(f"blur kernel must be >= 1, got {kernel}")
    before, after = kernel // 2, (kernel - 1) // 2
    height, width = pixels.shape[-2:]
    if padding == "reflect" and max(before, after) >= min(height, width):
        raise ValueError(
            f"reflect padding of {max(before, after)} px needs images larger than that; got {height}×{width} "
            f"(use a smaller occlusion.blur_kernel or blur_padding=replicate)"
        )
    padded = F.pad(pixels, (before, after, before, after), mode=padding)
    return F.avg_pool2d(padded, kernel, stride=1)


@dataclass
class OcclusionCurves:
    """Curves of M methods on N images for one tile size; point t has the t top tiles replaced."""

    kernel: int
    probability: Tensor  # [M, N, steps + 1] softmax probability of the target
    logit: Tensor  # [M, N, steps + 1] logit of the target

    def auc(self) -> Tensor:
        """[M, N] mean of the probability curve over all steps + 1 points (lower is better)."""
        return self.probability.mean(dim=-1)

    def aopc(self) -> Tensor:
        """[M, N] AOPC = 1/(T+1) Σ_{t=0}^{T} (f_0 − f_t) on the probability curve (Samek et al. 2017)."""
        return (self.probability[..., :1] - self.probability).mean(dim=-1)


def target_scores(model: ModelBundle, pixels: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax probability and logit of each input's target class; pixels are unnormalized."""
    with span("passes: forward (occlusion)"):
        logits = model.module(model.normalize(pixels))
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    index = targets.view(-1, 1)
    return logits.softmax(dim=-1).gather(1, index).squeeze(1), logits.gather(1, index).squeeze(1)


def scores_in_chunks(
    model: ModelBundle, count: int, chunk_size: int, build: Callable[[Tensor], tuple[Tensor, Tensor]]
) -> tuple[Tensor, Tensor]:
    """Target probability and logit of ``count`` inputs, made by ``build(indices) -> (pixels, targets)``
    at most ``chunk_size`` at a time, so only one chunk of inputs is ever materialised."""
    probabilities, logits = [], []
    for start in range(0, count, chunk_size):
        indices = torch.arange(start, min(start + chunk_size, count), device=model.device)
        probability, logit = target_scores(model, *build(indices))
        probabilities.append(probability)
        logits.append(logit)
    if not probabilities:
        empty = torch.empty(0, device=model.device)
        return empty, empty
    return torch.cat(probabilities), torch.cat(logits)


def occluded_inputs(
    pixels: Tensor, blurred: Tensor, ranks: Tensor, targets: Tensor, images: int, steps: int
) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """Builder of the perturbed inputs; flat index q enumerates (method, image, step) with step fastest."""

    def build(q: Tensor) -> tuple[Tensor, Tensor]:
        curve, step = q // steps, q % steps + 1
        image = curve % images
        occluded = (ranks[curve] < step.view(-1, 1, 1)).unsqueeze(1)
        return torch.where(occluded, blurred[image], pixels[image]), targets[image]

    return build


def _check_inputs(pixels: Tensor, maps: Tensor, targets: Tensor, blurred: Tensor, steps: int, chunk_size: int) -> None:
    if pixels.dim() != 4:
        raise ValueError(f"pixels must be [N, C, H, W], got shape {tuple(pixels.shape)}")
    images, _, height, width = pixels.shape
    if maps.dim() != 4 or tuple(maps.shape[1:]) != (images, height, width):
        raise ValueError(f"maps must be [M, {images}, {height}, {width}], got shape {tuple(maps.shape)}")
    if tuple(targets.shape) != (images,):
        raise ValueError(f"targets must be [{images}], got shape {tuple(targets.shape)}")
    if blurred.shape != pixels.shape:
        raise ValueError(f"blurred must have the shape of pixels {tuple(pixels.shape)}, got {tuple(blurred.shape)}")
    if steps < 1 or chunk_size < 1:
        raise ValueError(f"steps and chunk_size must be >= 1, got {steps} and {chunk_size}")


@torch.no_grad()
def occlusion_curves(
    model: ModelBundle,
    pixels: Tensor,
    maps: Tensor,
    targets: Tensor,
    *,
    kernel: int,
    steps: int,
    blurred: Tensor,
    chunk_size: int,
) -> OcclusionCurves:
    """Occlusion curves of M methods' maps [M, N, H, W] on N unnormalized images [N, 3, H, W].

    ``blurred`` is :func:`box_blur` of ``pixels``, computed once per batch and shared by all tile
    sizes and methods. Inputs are moved to ``model.device``; curves come back there.
    """
    _check_inputs(pixels, maps, targets, blurred, steps, chunk_size)
    device = model.device
    pixels, blurred, maps = (t.to(device) for t in (pixels, blurred, maps))
    targets = targets.to(device, torch.long)
    methods, images, height, width = maps.shape
    ranks, tiles = tile_ranking(maps.reshape(methods * images, height, width), kernel)
    active = min(steps, tiles)  # beyond all tiles the input is the blurred copy: flat curve

    first = scores_in_chunks(model, images, chunk_size, lambda i: (pixels[i], targets[i]))
    perturbed = scores_in_chunks(
        model, methods * images * active, chunk_size, occluded_inputs(pixels, blurred, ranks, targets, images, active)
    )
    probability, logit = (
        _assemble(f0, rest, methods, images, active, steps) for f0, rest in zip(first, perturbed)
    )
    return OcclusionCurves(kernel, probability, logit)


def _assemble(first: Tensor, perturbed: Tensor, methods: int, images: int, active: int, steps: int) -> Tensor:
    """[N] f_0 and [M·N·active] steps -> [M, N, steps + 1], the last point repeated past ``active``."""
    curves = perturbed.view(methods, images, active)
    parts = [first.view(1, images, 1).expand(methods, images, 1), curves]
    if steps > active:
        parts.append(curves[..., -1:].expand(methods, images, steps - active))
    return torch.cat(parts, dim=-1)


__all__ = [
    "BLUR_PADDINGS",
    "OcclusionCurves",
    "box_blur",
    "occlusion_curves",
    "scores_in_chunks",
    "target_scores",
    "tile_ranking",
]
