"""Guided backprop against Captum on ReLU networks, and the swish rule on EfficientNet-B0."""

from __future__ import annotations

import copy

import pytest
import torch
from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from efficientnet_pytorch.utils import MemoryEfficientSwish
from torch import nn

from .attribution_models import keys, make_bundle, make_inputs, make_targets, registry_bundle
from benchmark.attribution import AttributionContext, MethodNotSupported, build_method
from benchmark.config.spec import GuidedBackpropSpec

pytestmark = pytest.mark.filterwarnings(
    "ignore:Input Tensor 0 did not already require gradients", "ignore:Setting backward hooks on ReLU activations"
)
SPEC = GuidedBackpropSpec(name="guided_backprop")


def guided(model, inputs, targets, chunk_size: int = 64) -> torch.Tensor:
    ctx = AttributionContext(image_keys=keys(inputs.shape[0]), chunk_size=chunk_size)
    return build_method(SPEC, model).attribute(model, inputs, targets, ctx)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * expected.abs().max().item())


@pytest.mark.parametrize("model_name", ["tiny", "resnet18", "vgg_like"])
def test_equals_captum_guided_backprop(model_name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(model_name)
    inputs, targets = make_inputs(model), make_targets()
    expected = CaptumGuidedBackprop(model.module).attribute(inputs.clone(), target=targets)
    ours = guided(model, inputs, targets, chunk_size=2)
    assert_close(ours, expected)
    x = inputs.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(model.module(x), x, torch.nn.functional.one_hot(targets, 10).float())
    assert (ours - plain).norm() > 0.1 * plain.norm()  # the rule did act


def test_equals_captum_on_densenet121() -> None:
    model = registry_bundle("densenet121")  # its final ReLU is a module, so both hook every ReLU
    inputs, targets = make_inputs(model, n=2), make_targets(2)
    expected = CaptumGuidedBackprop(model.module).attribute(inputs.clone(), target=targets)
    assert_close(guided(model, inputs, targets), expected)


class _GuidedSwishFunction(torch.autograd.Function):
    """Reference of the documented swish rule: backward = max(0, swish'(z) · g)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z)
        return z * torch.sigmoid(z)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (z,) = ctx.saved_tensors
        s = torch.sigmoid(z)
        return (grad * (s * (1 + z * (1 - s)))).clamp(min=0)


class _GuidedSwish(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _GuidedSwishFunction.apply(z)


def test_efficientnet_swish_gets_the_clamped_gradient() -> None:
    model = registry_bundle("efficientnet-b0")  # untrained; its random BatchNorm statistics give non-zero gradients
    swish_types = (nn.SiLU, MemoryEfficientSwish)
    swishes = [name for name, layer in model.module.named_modules() if isinstance(layer, swish_types)]
    assert swishes, "EfficientNet-B0 should use swish modules"
    inputs, targets = make_inputs(model, n=2), make_targets(2)
    ours = guided(model, inputs, targets)
    assert torch.isfinite(ours).all() and ours.abs().sum() > 0

    reference = copy.deepcopy(model.module)
    for name in swishes:
        parent, _, attr = name.rpartition(".")
        setattr(reference.get_submodule(parent), attr, _GuidedSwish())
    x = inputs.clone().requires_grad_(True)
    logits = reference(x)
    (expected,) = torch.autograd.grad(logits, x, torch.nn.functional.one_hot(targets, logits.shape[1]).float())
    assert_close(ours, expected, rtol=1e-4)
    x = inputs.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(model.module(x), x, torch.nn.functional.one_hot(targets, logits.shape[1]).float())
    assert (ours - plain).norm() > 0.1 * plain.norm()  # the rule did act


def test_model_without_activation_modules_is_refused() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    with pytest.raises(MethodNotSupported, match="no activation modules"):
        build_method(SPEC, make_bundle(Functional(), "vgg"))
