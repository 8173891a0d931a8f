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

Both orders and two imputers (Blücher et al., TMLR 2024, "Decoupling pixel flipping and occlusion
strategy"): ``mif`` (most relevant first, the paper's order) occludes the tiles of highest mean
attribution first, ``lif`` (least relevant first) those of lowest mean first, on the same tiles;
their symmetric relevance gain SRG = mean(LIF curve) − mean(MIF curve) (higher is better) rewards a
map for both finding what the model needs and what it does not. The occluded pixels come from an
*imputer*: ``blur``, the blurred copy of the image above, or ``mean``, the image's per-channel mean
colour (a plain fill without texture or edges), so a ranking that flips with the imputer shows.

Speed (DESIGN §10): f_0 is one forward per image, shared by all methods, orders and imputers. The
V·M·N·T perturbed inputs (V = imputers × orders) are built on the device chunk by chunk (at most
``chunk_size`` inputs): each input's image, fill and rank map are gathered by index and
``rank < t`` is its mask, so no Python loop runs per sample and the images never exist at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.bundle import ModelBundle
from ..profiling import span
from .tiles import tile_ranking

BLUR_PADDINGS = ("reflect", "replicate")
ORDERS = ("mif", "lif")  # most / least relevant first
IMPUTERS = ("blur", "mean")  # what replaces an occluded tile: the blurred copy, the mean colour


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


def mean_colour(pixels: Tensor) -> Tensor:
    """[N, C, H, W] -> same shape: every pixel the image's per-channel mean colour (the ``mean`` imputer)."""
    return pixels.mean(dim=(-2, -1), keepdim=True).expand_as(pixels)


def imputed(pixels: Tensor, imputer: str, blur_kernel: int, blur_padding: str = "reflect") -> Tensor:
    """The copy of ``pixels`` an imputer puts into occluded tiles."""
    if imputer == "blur":
        return box_blur(pixels, blur_kernel, blur_padding)
    if imputer == "mean":
        return mean_colour(pixels)
    raise ValueError(f"imputer must be one of {IMPUTERS}, got '{imputer}'")


@dataclass
class OcclusionCurves:
    """Curves of M methods on N images for one tile size, order and imputer; point t has t tiles replaced
    (the t of highest mean attribution for ``mif``, of lowest for ``lif``)."""

    kernel: int
    probability: Tensor  # [M, N, steps + 1] softmax probability of the target
    logit: Tensor  # [M, N, steps + 1] logit of the target
    order: str = "mif"
    imputer: str = "blur"

    def auc(self) -> Tensor:
        """[M, N] mean of the probability curve over all steps + 1 points (lower is better)."""
        return self.probability.mean(dim=-1)

    def aopc(self) -> Tensor:
        """[M, N] AOPC = 1/(T+1) Σ_{t=0}^{T} (f_0 − f_t) on the probability curve (Samek et al. 2017)."""
        return (self.probability[..., :1] - self.probability).mean(dim=-1)


def target_scores(model: ModelBundle, pixels: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax probability and logit of each input's target class; pixels are unnormalized."""
    with span("passes: forward (occlusion)"):
        logits = model.forward_only(model.normalize(pixels))
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
    pixels: Tensor, fills: Tensor, ranks: Tensor, targets: Tensor, images: int, steps: int
) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """Builder of the perturbed inputs. ``fills`` [F, N, C, H, W] are the imputers' copies, ``ranks``
    [R·N, H, W] the rank maps (R = orders × methods); flat index q enumerates (fill, rank map, step)
    with step fastest."""
    rank_maps = ranks.shape[0]

    def build(q: Tensor) -> tuple[Tensor, Tensor]:
        curve, step = q // steps, q % steps + 1
        row = curve % rank_maps
        image, fill = row % images, curve // rank_maps
        occluded = (ranks[row] < step.view(-1, 1, 1)).unsqueeze(1)
        return torch.where(occluded, fills[fill, image], pixels[image]), targets[image]

    return build


def _check_inputs(pixels: Tensor, maps: Tensor, targets: Tensor, fills: dict[str, Tensor], orders: Sequence[str],
                  steps: int, chunk_size: int) -> None:
    if pixels.dim() != 4:
        raise ValueError(f"pixels must be [N, C, H, W], got shape {tuple(pixels.shape)}")
    images, _, height, width = pixels.shape
    if maps.dim() != 4 or tuple(maps.shape[1:]) != (images, height, width):
        raise ValueError(f"maps must be [M, {images}, {height}, {width}], got shape {tuple(maps.shape)}")
    if tuple(targets.shape) != (images,):
        raise ValueError(f"targets must be [{images}], got shape {tuple(targets.shape)}")
    for name, fill in fills.items():
        if fill.shape != pixels.shape:
            raise ValueError(f"{name} must have the shape of pixels {tuple(pixels.shape)}, got {tuple(fill.shape)}")
    if not fills or not orders:
        raise ValueError("occlusion needs at least one imputer and one order")
    unknown = [order for order in orders if order not in ORDERS]
    if unknown or len(set(orders)) != len(orders):
        raise ValueError(f"orders must be distinct values of {ORDERS}, got {list(orders)}")
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
    """The paper's curves: most relevant first, tiles replaced by ``blurred`` (:func:`box_blur` of
    ``pixels``). See :func:`occlusion_variants` for the arguments."""
    return occlusion_variants(model, pixels, maps, targets, kernel=kernel, steps=steps, fills={"blurred": blurred},
                              orders=("mif",), chunk_size=chunk_size)[0]


@torch.no_grad()
def occlusion_variants(
    model: ModelBundle,
    pixels: Tensor,
    maps: Tensor,
    targets: Tensor,
    *,
    kernel: int,
    steps: int,
    fills: dict[str, Tensor],
    orders: Sequence[str],
    chunk_size: int,
) -> list[OcclusionCurves]:
    """Occlusion curves of M methods' maps [M, N, H, W] on N unnormalized images [N, 3, H, W], for
    every imputer (``fills``: name -> the copy its tiles come from, [N, 3, H, W]) and order, in that
    nesting (imputer outer). All perturbed inputs of all variants go through the model as one
    chunked stream; the fills are computed once per batch and shared by all tile sizes and methods.
    Inputs are moved to ``model.device``; curves come back there.
    """
    _check_inputs(pixels, maps, targets, fills, orders, steps, chunk_size)
    device = model.device
    pixels, maps = pixels.to(device), maps.to(device)
    stacked_fills = torch.stack([fill.to(device) for fill in fills.values()])
    targets = targets.to(device, torch.long)
    methods, images, height, width = maps.shape
    flat = maps.reshape(methods * images, height, width)
    # lif ranks the tiles of the negated map: lowest mean first, ties still to the lower tile index
    rankings = [tile_ranking(flat if order == "mif" else -flat, kernel) for order in orders]
    ranks, tiles = torch.cat([r for r, _ in rankings]), rankings[0][1]
    active = min(steps, tiles)  # beyond all tiles the input is the fill: flat curve
    variants = len(fills) * len(orders)

    first = scores_in_chunks(model, images, chunk_size, lambda i: (pixels[i], targets[i]))
    perturbed = scores_in_chunks(
        model, variants * methods * images * active, chunk_size,
        occluded_inputs(pixels, stacked_fills, ranks, targets, images, active),
    )
    probability, logit = (
        _assemble(f0, rest, variants * methods, images, active, steps).view(variants, methods, images, steps + 1)
        for f0, rest in zip(first, perturbed)
    )
    names = [(imputer, order) for imputer in fills for order in orders]
    return [OcclusionCurves(kernel, probability[v], logit[v], order=order, imputer=imputer)
            for v, (imputer, order) in enumerate(names)]


def symmetric_relevance_gain(mif: OcclusionCurves, lif: OcclusionCurves) -> Tensor:
    """[M, N] SRG = mean(LIF curve) − mean(MIF curve) of the softmax probability (Blücher et al. 2024;
    higher is better): the two curves must be of the same tiles and imputer."""
    if (mif.order, lif.order) != ("mif", "lif") or (mif.kernel, mif.imputer) != (lif.kernel, lif.imputer):
        raise ValueError(f"SRG needs a mif and a lif curve of the same kernel and imputer, got "
                         f"{(mif.order, mif.kernel, mif.imputer)} and {(lif.order, lif.kernel, lif.imputer)}")
    return lif.auc() - mif.auc()


def _assemble(first: Tensor, perturbed: Tensor, methods: int, images: int, active: int, steps: int) -> Tensor:
    """[N] f_0 and [M·N·active] steps -> [M, N, steps + 1], the last point repeated past ``active``."""
    curves = perturbed.view(methods, images, active)
    parts = [first.view(1, images, 1).expand(methods, images, 1), curves]
    if steps > active:
        parts.append(curves[..., -1:].expand(methods, images, steps - active))
    return torch.cat(parts, dim=-1)


__all__ = [
    "BLUR_PADDINGS",
    "IMPUTERS",
    "ORDERS",
    "OcclusionCurves",
    "box_blur",
    "imputed",
    "mean_colour",
    "occlusion_curves",
    "occlusion_variants",
    "symmetric_relevance_gain",
    "scores_in_chunks",
    "target_scores",
    "tile_ranking",
]
