"""Occlusion curves (DESIGN §6, supplement A.1) against scipy, a numpy tile ranking and analytic models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from benchmark.experiments.occlusion import (
    OcclusionCurves, box_blur, imputed, mean_colour, occlusion_curves, occlusion_variants, symmetric_relevance_gain,
    target_scores,
)
from benchmark.experiments.tiles import tile_ranking
from benchmark.models.bundle import ModelBundle
from benchmark.models.registry import IMAGENET_MEAN, IMAGENET_STD, model_def

DTYPE = torch.float64
MEAN = torch.tensor(IMAGENET_MEAN, dtype=DTYPE).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD, dtype=DTYPE).view(1, 3, 1, 1)


# --- independent references ------------------------------------------------------------------


def reference_ranks(score: np.ndarray, tile: int) -> tuple[np.ndarray, int]:
    """Rank map of one [H, W] map: tiles row-major, mean over own pixels, ties to the lower index."""
    height, width = score.shape
    boxes = [
        (top, left)
        for top in range(0, height, tile)
        for left in range(0, width, tile)
    ]
    means = [score[top : top + tile, left : left + tile].mean() for top, left in boxes]
    order = sorted(range(len(boxes)), key=lambda index: (-means[index], index))
    ranks = np.empty((height, width), dtype=np.int64)
    for rank, index in enumerate(order):
        top, left = boxes[index]
        ranks[top : top + tile, left : left + tile] = rank
    return ranks, len(boxes)


def removed_mass(pixels: torch.Tensor, blurred: torch.Tensor, score: torch.Tensor, tile: int, steps: int) -> np.ndarray:
    """[steps + 1]: Σ over the t top tiles of (pixels − blurred), for one image and one map."""
    ranks, _ = reference_ranks(score.numpy(), tile)
    difference = (pixels - blurred).sum(dim=0).numpy()
    return np.array([difference[ranks < t].sum() for t in range(steps + 1)])


class MassModel(nn.Module):
    """logit_c = a_c · Σ(unnormalized pixels − ½) + b_c: occluding lowers it by a_c × the removed mass.

    Centring on ½ keeps the logits O(1) so that the softmax does not saturate."""

    def __init__(self, slopes: list[float], offsets: list[float]) -> None:
        super().__init__()
        self.register_buffer("slopes", torch.tensor(slopes, dtype=DTYPE))
        self.register_buffer("offsets", torch.tensor(offsets, dtype=DTYPE))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        mass = (x * STD + MEAN - 0.5).sum(dim=(1, 2, 3))
        return mass[:, None] * self.slopes + self.offsets


def bundle(module: nn.Module) -> ModelBundle:
    return ModelBundle("test", model_def("resnet50"), module.eval(), torch.device("cpu"), "test", MEAN, STD)


def mass_bundle(
    slopes: tuple[float, ...] = (0.3, -0.1, 0.05), offsets: tuple[float, ...] = (0.5, 0.0, -0.2)
) -> ModelBundle:
    return bundle(MassModel(list(slopes), list(offsets)))


def random_case(rng: torch.Generator, methods: int, images: int, height: int, width: int):
    pixels = torch.rand(images, 3, height, width, generator=rng, dtype=DTYPE)
    maps = torch.randn(methods, images, height, width, generator=rng, dtype=DTYPE)
    return pixels, maps, box_blur(pixels, 15)


# --- blur ------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding, scipy_mode", [("reflect", "mirror"), ("replicate", "nearest")])
@pytest.mark.parametrize("kernel", [1, 3, 5, 15, 4])
def test_box_blur_matches_scipy_uniform_filter(rng, padding, scipy_mode, kernel):
    pixels = torch.rand(2, 3, 20, 33, generator=rng, dtype=DTYPE)
    expected = ndimage.uniform_filter(pixels.numpy(), size=(1, 1, kernel, kernel), mode=scipy_mode)
    blurred = box_blur(pixels, kernel, padding)
    assert blurred.shape == pixels.shape
    np.testing.assert_allclose(blurred.numpy(), expected, rtol=0, atol=1e-12)


def test_box_blur_keeps_constant_images_and_dtype():
    pixels = torch.full((1, 3, 32, 32), 0.25)
    blurred = box_blur(pixels, 15)
    assert blurred.dtype == torch.float32
    torch.testing.assert_close(blurred, pixels)


def test_box_blur_rejects_images_smaller_than_the_reflect_padding():
    with pytest.raises(ValueError, match="reflect padding"):
        box_blur(torch.rand(1, 3, 6, 40), 15)
    assert box_blur(torch.rand(1, 3, 6, 40), 15, "replicate").shape == (1, 3, 6, 40)
    with pytest.raises(ValueError, match="padding"):
        box_blur(torch.rand(1, 3, 32, 32), 15, "circular")


# --- tile ranking ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "height, width, tile", [(20, 20, 8), (20, 27, 8), (32, 40, 15), (16, 16, 15), (9, 7, 1), (10, 12, 16)]
)
def test_tile_ranking_matches_numpy_reference(rng, height, width, tile):
    maps = torch.randn(3, height, width, generator=rng, dtype=DTYPE)
    ranks, count = tile_ranking(maps, tile)
    assert ranks.shape == maps.shape and ranks.dtype == torch.long
    for score, rank in zip(maps, ranks):
        expected, expected_count = reference_ranks(score.numpy(), tile)
        np.testing.assert_array_equal(rank.numpy(), expected)
        assert count == expected_count
    strided = maps.transpose(1, 2).contiguous().transpose(1, 2)  # same values, non-contiguous memory
    assert torch.equal(tile_ranking(strided, tile)[0], ranks)


def test_partial_tiles_are_scored_by_their_own_mean():
    score = torch.zeros(1, 20, 20)
    score[0, 16:20, 16:20] = 1.0  # the 4×4 corner tile: sum 16, mean 1
    score[0, 0:4, 0:5] = 2.0  # 20 pixels of the first full tile: sum 40, mean 0.625
    ranks, count = tile_ranking(score, 8)
    assert count == 9
    assert ranks[0, 19, 19] == 0 and ranks[0, 0, 0] == 1
    np.testing.assert_array_equal(ranks[0].numpy(), reference_ranks(score[0].numpy(), 8)[0])


def test_ties_go_to_the_lower_tile_index():
    score = torch.zeros(1, 20, 20)
    score[0, 0:8, 16:20] = 3.0  # tile 2 (partial)
    score[0, 8:16, 16:20] = 3.0  # tile 5 (partial), same mean
    ranks, _ = tile_ranking(score, 8)
    assert ranks[0, 0, 16] == 0 and ranks[0, 8, 16] == 1
    # the remaining tiles all have mean 0: ranked in tile-index order
    tile_starts = [(0, 0), (0, 8), (8, 0), (8, 8), (16, 0), (16, 8), (16, 16)]
    assert [int(ranks[0, top, left]) for top, left in tile_starts] == list(range(2, 9))


# --- curves ----------------------------------------------------------------------------------


def test_curves_equal_the_analytic_model(rng):
    pixels, maps, blurred = random_case(rng, methods=2, images=3, height=20, width=27)
    targets = torch.tensor([0, 2, 1])
    model = mass_bundle()
    slopes, offsets = model.module.slopes, model.module.offsets
    result = occlusion_curves(model, pixels, maps, targets, kernel=8, steps=5, blurred=blurred, chunk_size=7)
    assert result.probability.shape == result.logit.shape == (2, 3, 6)
    for m in range(2):
        for n in range(3):
            mass = (pixels[n] - 0.5).sum() - torch.from_numpy(removed_mass(pixels[n], blurred[n], maps[m, n], 8, 5))
            all_logits = mass[:, None] * slopes + offsets  # [steps + 1, classes]
            target = int(targets[n])
            torch.testing.assert_close(result.logit[m, n], all_logits[:, target], rtol=0, atol=1e-10)
            torch.testing.assert_close(result.probability[m, n], all_logits.softmax(-1)[:, target], rtol=0, atol=1e-12)


def test_every_step_occludes_exactly_the_top_tiles_cumulatively(rng):
    pixels, maps, blurred = random_case(rng, methods=2, images=2, height=24, width=21)
    model = mass_bundle()
    occlusion_curves(model, pixels, maps, torch.tensor([0, 1]), kernel=8, steps=5, blurred=blurred, chunk_size=4)
    seen = torch.cat(model.module.seen)
    assert len(seen) == 2 + 2 * 2 * 5  # f_0 once per image, not once per method
    clean, occluded = model.normalize(pixels), model.normalize(blurred)
    assert (clean != occluded).all()  # so every pixel of an input tells which copy it came from
    found = []
    for x in seen:
        n = int(torch.nonzero(((x == clean) | (x == occluded)).flatten(1).all(1))[0])
        assert ((x == clean[n]) | (x == occluded[n])).all()
        found.append((n, (x == occluded[n]).all(0).numpy()))
    for n in range(2):
        masks = [mask for image, mask in found if image == n]
        for m in range(2):
            ranks, _ = reference_ranks(maps[m, n].numpy(), 8)
            for t in range(6):
                assert any(np.array_equal(mask, ranks < t) for mask in masks), (m, n, t)


def test_curve_is_monotone_when_the_map_ranks_by_removed_mass(rng):
    pixels = torch.rand(1, 3, 48, 48, generator=rng, dtype=DTYPE)
    blurred = box_blur(pixels, 15)
    score = (pixels - blurred).sum(dim=1)  # mean over a full tile ∝ the mass its occlusion removes
    tile_mass = score[0].reshape(6, 8, 6, 8).sum(dim=(1, 3))
    steps = min(int((tile_mass > 0).sum()), 30)  # monotone while the removed mass is positive
    assert steps >= 3
    model = mass_bundle(slopes=(0.2, -0.1), offsets=(0.0, 0.0))
    result = occlusion_curves(
        model, pixels, score[None], torch.tensor([0]), kernel=8, steps=steps, blurred=blurred, chunk_size=64
    )
    logit, probability = result.logit[0, 0], result.probability[0, 0]
    drops = -logit.diff()
    assert (drops > 0).all() and (probability.diff() < 0).all()
    assert (drops.diff() <= 1e-12).all()  # the most massive tile goes first


@pytest.mark.parametrize("chunk_size", [1, 5, 1000])
def test_chunk_size_does_not_change_the_curves(rng, chunk_size):
    pixels, maps, blurred = random_case(rng, methods=2, images=3, height=24, width=20)
    targets = torch.tensor([1, 0, 2])
    reference, result = (
        occlusion_curves(mass_bundle(), pixels, maps, targets, kernel=8, steps=7, blurred=blurred, chunk_size=size)
        for size in (64, chunk_size)
    )
    assert torch.equal(result.probability, reference.probability)
    assert torch.equal(result.logit, reference.logit)


def test_summaries_and_the_shared_first_point(rng):
    pixels, maps, blurred = random_case(rng, methods=3, images=2, height=20, width=20)
    targets = torch.tensor([2, 0])
    model = mass_bundle()
    result = occlusion_curves(model, pixels, maps, targets, kernel=8, steps=6, blurred=blurred, chunk_size=64)
    probability = result.probability.numpy()
    first = probability[..., 0]
    aopc = sum(first - probability[..., t] for t in range(7)) / 7
    np.testing.assert_allclose(result.aopc().numpy(), aopc, rtol=0, atol=1e-15)
    np.testing.assert_allclose(result.auc().numpy(), probability.sum(-1) / 7, rtol=0, atol=1e-15)
    assert (first == first[:1]).all()  # f_0 does not depend on the method
    expected, _ = target_scores(model, pixels, targets)
    torch.testing.assert_close(result.probability[0, :, 0], expected, rtol=0, atol=1e-15)


def test_fewer_tiles_than_steps_keeps_the_curve_flat(rng):
    pixels, maps, blurred = random_case(rng, methods=2, images=2, height=16, width=16)
    targets = torch.tensor([0, 1])
    model = mass_bundle()
    result = occlusion_curves(model, pixels, maps, targets, kernel=15, steps=30, blurred=blurred, chunk_size=64)
    assert result.probability.shape == (2, 2, 31)
    assert len(torch.cat(model.module.seen)) == 2 + 2 * 2 * 4  # 2×2 tiles: steps past 4 are not recomputed
    fully_blurred, _ = target_scores(model, blurred, targets)
    for curve in (result.probability, result.logit):
        assert (curve[..., 4:] == curve[..., 4:5]).all()
    torch.testing.assert_close(result.probability[..., 4], fully_blurred.expand(2, 2), rtol=0, atol=1e-12)
    assert not torch.allclose(result.probability[..., 3], result.probability[..., 4])


def test_nonlinear_model_matches_a_naive_step_by_step_reference(rng):
    torch.manual_seed(0)
    layers = (nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    module = nn.Sequential(*layers).to(DTYPE)
    model = bundle(module)
    pixels, maps, blurred = random_case(rng, methods=2, images=2, height=20, width=18)
    targets = torch.tensor([2, 1])
    result = occlusion_curves(model, pixels, maps, targets.int(), kernel=8, steps=4, blurred=blurred, chunk_size=3)
    for m in range(2):
        for n in range(2):
            ranks, _ = reference_ranks(maps[m, n].numpy(), 8)
            steps = [torch.where(torch.from_numpy(ranks < t), blurred[n], pixels[n]) for t in range(5)]
            with torch.no_grad():
                logits = module(model.normalize(torch.stack(steps)))
            torch.testing.assert_close(result.logit[m, n], logits[:, targets[n]], rtol=0, atol=1e-12)
            torch.testing.assert_close(result.probability[m, n], logits.softmax(-1)[:, targets[n]], rtol=0, atol=1e-12)


def test_rejects_mismatched_shapes(rng):
    pixels, maps, blurred = random_case(rng, methods=1, images=2, height=20, width=20)
    settings = dict(kernel=8, steps=3, blurred=blurred, chunk_size=4)
    with pytest.raises(ValueError, match="maps must be"):
        occlusion_curves(mass_bundle(), pixels, maps[:, :1], torch.tensor([0, 1]), **settings)
    with pytest.raises(ValueError, match="targets must be"):
        occlusion_curves(mass_bundle(), pixels, maps, torch.tensor([0]), **settings)
    with pytest.raises(ValueError, match="blurred must"):
        occlusion_curves(mass_bundle(), pixels, maps, torch.tensor([0, 1]), **{**settings, "blurred": blurred[:1]})


def test_float32_images_with_half_precision_maps(rng):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = ModelBundle("test", model_def("resnet50"), module.eval(), torch.device("cpu"), "test", MEAN.float(), STD.float())
    pixels = torch.rand(2, 3, 32, 32, generator=rng)
    maps = torch.randn(1, 2, 32, 32, generator=rng).half()
    result = occlusion_curves(
        model, pixels, maps, torch.tensor([0, 1]), kernel=15, steps=30, blurred=box_blur(pixels, 15), chunk_size=8
    )
    assert result.probability.dtype == torch.float32 and result.probability.shape == (1, 2, 31)
    assert ((result.probability > 0) & (result.probability < 1)).all()
    ranks, _ = tile_ranking(maps[0], 15)
    np.testing.assert_array_equal(ranks[0].numpy(), reference_ranks(maps[0, 0].float().numpy(), 15)[0])


# --- both orders and two imputers (Blücher et al. 2024) ---------------------------------------


def reference_lif_ranks(score: np.ndarray, tile: int) -> np.ndarray:
    """Rank map for least relevant first: lowest tile mean first, ties to the lower tile index."""
    height, width = score.shape
    boxes = [(top, left) for top in range(0, height, tile) for left in range(0, width, tile)]
    means = [score[top : top + tile, left : left + tile].mean() for top, left in boxes]
    order = sorted(range(len(boxes)), key=lambda index: (means[index], index))
    ranks = np.empty((height, width), dtype=np.int64)
    for rank, index in enumerate(order):
        top, left = boxes[index]
        ranks[top : top + tile, left : left + tile] = rank
    return ranks


def test_mean_colour_is_each_channels_mean():
    pixels = torch.rand(2, 3, 7, 9, dtype=DTYPE)
    filled = mean_colour(pixels)
    expected = pixels.numpy().mean(axis=(2, 3))[:, :, None, None] * np.ones((1, 1, 7, 9))
    np.testing.assert_allclose(filled.numpy(), expected, rtol=0, atol=1e-15)
    assert torch.equal(imputed(pixels, "mean", 3), filled) and torch.equal(imputed(pixels, "blur", 3), box_blur(pixels, 3))
    with pytest.raises(ValueError, match="imputer must be one of"):
        imputed(pixels, "zeros", 3)


def test_lif_and_srg_equal_the_analytic_model_for_both_imputers(rng):
    """MassModel: occluding lowers logit_c by a_c × the removed mass, so every curve point is known in closed
    form from the reference tile order (descending for MIF, ascending for LIF) and the fill."""
    pixels, maps, blurred = random_case(rng, methods=2, images=3, height=20, width=27)
    targets = torch.tensor([0, 2, 1])
    model = mass_bundle()
    slopes, offsets = model.module.slopes, model.module.offsets
    fills = {"blur": blurred, "mean": mean_colour(pixels)}
    curves = occlusion_variants(model, pixels, maps, targets, kernel=8, steps=5, fills=fills, orders=("mif", "lif"),
                                chunk_size=7)
    assert [(c.imputer, c.order) for c in curves] == [("blur", "mif"), ("blur", "lif"), ("mean", "mif"), ("mean", "lif")]
    for result in curves:
        fill = fills[result.imputer]
        for m in range(2):
            for n in range(3):
                score = maps[m, n].numpy()
                ranks = reference_ranks(score, 8)[0] if result.order == "mif" else reference_lif_ranks(score, 8)
                difference = (pixels[n] - fill[n]).sum(dim=0).numpy()
                removed = torch.tensor([difference[ranks < t].sum() for t in range(6)], dtype=DTYPE)
                logits = ((pixels[n] - 0.5).sum() - removed)[:, None] * slopes + offsets
                target = int(targets[n])
                torch.testing.assert_close(result.logit[m, n], logits[:, target], rtol=0, atol=1e-10)
                torch.testing.assert_close(result.probability[m, n], logits.softmax(-1)[:, target], rtol=0, atol=1e-12)
    for mif, lif in ((curves[0], curves[1]), (curves[2], curves[3])):
        direct = lif.probability.numpy().mean(-1) - mif.probability.numpy().mean(-1)
        np.testing.assert_allclose(symmetric_relevance_gain(mif, lif).numpy(), direct, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="SRG needs"):
        symmetric_relevance_gain(curves[0], curves[3])  # another imputer


def test_all_variants_share_one_stream_and_equal_separate_runs(rng):
    pixels, maps, blurred = random_case(rng, methods=2, images=2, height=24, width=20)
    targets = torch.tensor([1, 0])
    fills = {"blur": blurred, "mean": mean_colour(pixels)}
    model = mass_bundle()
    together = occlusion_variants(model, pixels, maps, targets, kernel=8, steps=4, fills=fills,
                                  orders=("mif", "lif"), chunk_size=5)
    assert len(torch.cat(model.module.seen)) == 2 + 4 * 2 * 2 * 4  # f_0 once; variants x methods x images x steps
    for result in together:
        alone = occlusion_variants(mass_bundle(), pixels, maps, targets, kernel=8, steps=4,
                                   fills={result.imputer: fills[result.imputer]}, orders=(result.order,), chunk_size=64)[0]
        assert torch.equal(result.probability, alone.probability) and torch.equal(result.logit, alone.logit)
    mif = occlusion_curves(mass_bundle(), pixels, maps, targets, kernel=8, steps=4, blurred=blurred, chunk_size=3)
    assert torch.equal(mif.probability, together[0].probability)


def test_lif_of_the_negated_map_is_mif_of_the_map_without_ties(rng):
    pixels, maps, blurred = random_case(rng, methods=1, images=2, height=16, width=16)
    targets = torch.tensor([0, 1])
    settings = dict(kernel=8, steps=4, fills={"blur": blurred}, chunk_size=64)
    mif = occlusion_variants(mass_bundle(), pixels, maps, targets, orders=("mif",), **settings)[0]
    lif = occlusion_variants(mass_bundle(), pixels, -maps, targets, orders=("lif",), **settings)[0]
    assert torch.equal(mif.probability, lif.probability)


def test_rejects_unknown_or_repeated_orders(rng):
    pixels, maps, blurred = random_case(rng, methods=1, images=2, height=20, width=20)
    for orders in (("mif", "mif"), ("random",), ()):
        with pytest.raises(ValueError, match="order"):
            occlusion_variants(mass_bundle(), pixels, maps, torch.tensor([0, 1]), kernel=8, steps=3,
                               fills={"blur": blurred}, orders=orders, chunk_size=4)
