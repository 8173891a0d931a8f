"""The uninformative baseline: i.i.d. N(0, 1) maps that are a pure function of their key."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from .attribution_models import make_bundle
from benchmark.attribution import AttributionContext, build_method
from benchmark.config.spec import NoiseSpec


class Untouchable(nn.Module):
    """The noise baseline costs no model pass."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the noise baseline must not run the model")


@pytest.fixture
def model():
    return make_bundle(Untouchable(), "resnet")


def noise(model, image_keys, seed=0, stage=0, method_seed=0, size=32) -> torch.Tensor:
    method = build_method(NoiseSpec(name="noise", seed=method_seed), model)
    inputs = torch.zeros(len(image_keys), 3, size, size)
    targets = torch.zeros(len(image_keys), dtype=torch.long)
    return method.attribute(model, inputs, targets, AttributionContext(image_keys, seed, stage))


def test_same_keys_same_maps_whatever_the_batch(model) -> None:
    batch = noise(model, ["a", "b", "c", "d"], seed=1, stage=2)
    torch.testing.assert_close(noise(model, ["a", "b", "c", "d"], seed=1, stage=2), batch, rtol=0, atol=0)
    reordered = noise(model, ["d", "b", "x"], seed=1, stage=2)
    torch.testing.assert_close(reordered[0], batch[3], rtol=0, atol=1e-6)  # one ulp of log/cos at most
    torch.testing.assert_close(reordered[1], batch[1], rtol=0, atol=1e-6)
    assert not torch.allclose(reordered[2], batch[2])


def test_different_per_stage_seed_and_method_seed(model) -> None:
    base = noise(model, ["a"], seed=1, stage=1, size=64)
    others = (
        noise(model, ["a"], seed=1, stage=2, size=64),
        noise(model, ["a"], seed=2, stage=1, size=64),
        noise(model, ["a"], seed=1, stage=1, method_seed=5, size=64),
    )
    for other in others:
        assert torch.corrcoef(torch.stack([base.flatten(), other.flatten()]))[0, 1].abs() < 0.05


def test_stage_zero_is_the_same_for_every_run_seed(model) -> None:
    """Stage 0 is the trained model, identical for every run seed: so is its map."""
    first, other = noise(model, ["a"], seed=1, stage=0), noise(model, ["a"], seed=7, stage=0)
    torch.testing.assert_close(first, other, rtol=0, atol=0)


def test_standard_normal_without_pixel_covariance(model) -> None:
    maps = noise(model, [f"img-{i}" for i in range(8)], seed=3, stage=4, size=64)  # 98 304 values
    assert maps.dtype == torch.float32 and maps.shape == (8, 3, 64, 64)
    assert maps.mean().abs() < 0.015  # 4.7 standard errors
    assert (maps.var() - 1).abs() < 0.02
    flat = maps.flatten()
    sorted_values = flat.sort().values  # quantiles of N(0, 1)
    normal = torch.distributions.Normal(0.0, 1.0)
    for q in (0.025, 0.16, 0.5, 0.84, 0.975):
        assert abs(sorted_values[int(q * flat.numel())].item() - normal.icdf(torch.tensor(q)).item()) < 0.03

    def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
        return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()

    assert abs(correlation(maps[..., :, 1:], maps[..., :, :-1])) < 0.02  # horizontal neighbours
    assert abs(correlation(maps[..., 1:, :], maps[..., :-1, :])) < 0.02  # vertical neighbours
    assert abs(correlation(maps[:, 1:], maps[:, :-1])) < 0.02  # channels
    assert abs(correlation(maps[1:], maps[:-1])) < 0.02  # images
    summed = maps.sum(dim=1)  # the channel-sum 2-D map keeps zero covariance
    assert abs(correlation(summed[..., 1:], summed[..., :-1])) < 0.02


def test_costs_no_model_pass(model) -> None:
    passes = build_method(NoiseSpec(name="noise"), model).passes()
    assert (passes.forward, passes.backward) == (0, 0)
