"""Forward-only passes through a BatchNorm-folded copy: the model's logits to float rounding, always
in step with the model's current weights, seen by the model's hooks, and part of a run's identity only
when given explicitly."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.bench.accounting import PassRecorder
from benchmark.config import validate_job
from benchmark.config.load import spec_hash
from benchmark.experiments.occlusion import occlusion_curves, box_blur
from benchmark.models.folding import FoldedForward, foldable, folded_copy

from ..attribution.attribution_models import registry_bundle


def _resnet():
    model = registry_bundle("resnet34")
    with torch.no_grad():  # BatchNorm statistics away from the identity, so folding is not trivial
        generator = torch.Generator().manual_seed(0)
        for layer in model.module.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
                layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
                layer.weight.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
                layer.bias.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
    return model


def test_the_folded_copy_gives_the_models_logits_without_its_batchnorms() -> None:
    model = _resnet()
    copy = folded_copy(model.module)
    assert copy is not None and not any(isinstance(m, nn.BatchNorm2d) for m in copy.modules())
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.module(x)
    folded = FoldedForward(model.module)(x)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(folded, expected, rtol=1e-4, atol=1e-4)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.module.modules())  # the model itself is untouched


def test_nothing_to_fold_or_no_trace_means_not_foldable() -> None:
    assert foldable(_resnet().module)
    assert not foldable(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2)))

    class Branching(nn.Module):  # control flow on a tensor's value: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.norm(self.conv(x))
            return y if y.sum() > 0 else -y

    assert not foldable(Branching().eval())
    branching = Branching().eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(FoldedForward(branching)(x), branching(x))  # the model's own forward stands in


def test_the_copy_follows_every_change_of_the_models_weights() -> None:
    model = _resnet()
    folded = FoldedForward(model.module)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    before = folded(x)
    with torch.no_grad():
        model.module.layer4[2].bn2.weight.mul_(-3.0)  # a randomization stage changes weights in place
        expected = model.module(x)
    after = folded(x)
    assert not torch.allclose(after, before, atol=1e-3)
    torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-4)
    model.module.to(memory_format=torch.channels_last)  # a new layout: new storage
    torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-4)


def test_occlusion_through_the_folded_copy_is_counted_and_agrees() -> None:
    model = _resnet()
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    maps = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(4))
    targets = torch.tensor([1, 7])
    blurred = box_blur(pixels, 5)
    curves = {}
    for fold in (False, True):
        model.fold_batchnorm = fold
        with PassRecorder(model.module) as recorder:
            curves[fold] = occlusion_curves(model, pixels, maps, targets, kernel=8, steps=5, blurred=blurred, chunk_size=4)
        assert recorder.images(backward=False) == 2 + 2 * 2 * 5  # f0 per image + methods x images x steps
    torch.testing.assert_close(curves[True].probability, curves[False].probability, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(curves[True].logit, curves[False].logit, rtol=1e-4, atol=1e-4)


def test_folding_is_part_of_the_runs_identity_only_when_given() -> None:
    job = {"name": "t", "model": {"name": "resnet34"}, "dataset": {"kind": "synthetic"}, "methods": [{"name": "gradient"}]}
    default = spec_hash(validate_job(job))
    assert spec_hash(validate_job({**job, "runtime": {"fold_batchnorm": "auto"}})) == default  # runs made before it
    assert spec_hash(validate_job({**job, "runtime": {"fold_batchnorm": True}})) != default
