"""Every method leaves the model exactly as it found it: the randomizer edits it in place next."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from .attribution_models import keys, make_inputs, make_targets
from benchmark.attribution import AttributionContext, build_method
from benchmark.config.spec import (
    GradientInputSpec,
    GradientSpec,
    GuidedBackpropSpec,
    IntegratedGradientsSpec,
    LRPSpec,
    NoiseSpec,
    SmoothGradSpec,
)

SPECS = [
    GradientSpec(name="gradient"),
    GradientInputSpec(name="gradient_x_input"),
    IntegratedGradientsSpec(name="integrated_gradients", steps=3),
    SmoothGradSpec(name="smoothgrad", samples=2),
    GuidedBackpropSpec(name="guided_backprop"),
    NoiseSpec(name="noise"),
    *[
        LRPSpec(name="lrp", composite=composite)
        for composite in (
            "epsilon", "zplus", "alpha2beta1", "gamma", "epsilon_plus_flat", "epsilon_gamma_box", "adaptive_beta"
        )
    ],
]
HOOK_DICTS = (
    "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks", "_forward_hooks_with_kwargs"
)


def state(module: nn.Module) -> dict[str, tuple[torch.Tensor, int, bool]]:
    """Every parameter and buffer: a copy of its values, its storage, whether it requires grad."""
    tensors = dict(module.named_parameters()) | dict(module.named_buffers())
    return {name: (t.detach().clone(), t.data_ptr(), t.requires_grad) for name, t in tensors.items()}


def assert_untouched(module: nn.Module, before: dict[str, tuple[torch.Tensor, int, bool]]) -> None:
    after = state(module)
    assert after.keys() == before.keys()  # e.g. no bias left behind by a BatchNorm merge
    for name, (values, pointer, requires_grad) in before.items():
        assert torch.equal(after[name][0], values), f"{name} changed"
        assert after[name][1] == pointer, f"{name} is another tensor now"
        assert after[name][2] == requires_grad, f"{name}.requires_grad changed"
    for name, layer in module.named_modules():
        for hooks in HOOK_DICTS:
            assert not getattr(layer, hooks, {}), f"{name or 'model'} keeps {hooks}"
        assert "forward" not in vars(layer) and "canonizer_sum" not in vars(layer), f"{name} keeps a canonizer"
    assert not module.training


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.method_id)
@pytest.mark.parametrize("model_name", ["resnet18", "vgg_like"])
def test_no_hooks_and_bit_identical_parameters_after_a_call(model_name: str, spec, request) -> None:
    model = request.getfixturevalue(model_name)
    before = state(model.module)
    inputs, targets = make_inputs(model), make_targets()
    method = build_method(spec, model)
    maps = method.attribute(model, inputs, targets, AttributionContext(image_keys=keys(3), chunk_size=2))
    assert maps.shape == inputs.shape and maps.device == inputs.device and torch.isfinite(maps).all()
    assert_untouched(model.module, before)


@pytest.mark.parametrize(
    "spec",
    [GuidedBackpropSpec(name="guided_backprop"), LRPSpec(name="lrp", composite="epsilon_gamma_box")],
    ids=lambda spec: spec.method_id,
)
def test_cleanup_also_when_the_call_fails(resnet18, spec) -> None:
    before = state(resnet18.module)
    method = build_method(spec, resnet18)
    bad_targets = torch.tensor([0, 1, 999])
    with pytest.raises(RuntimeError):
        method.attribute(resnet18, make_inputs(resnet18), bad_targets, AttributionContext(image_keys=keys(3)))
    assert_untouched(resnet18.module, before)


def test_attribution_works_inside_no_grad_and_inference_mode(resnet18) -> None:
    inputs, targets, ctx = make_inputs(resnet18), make_targets(), AttributionContext(image_keys=keys(3))
    method = build_method(GradientSpec(name="gradient"), resnet18)
    reference = method.attribute(resnet18, inputs, targets, ctx)
    with torch.no_grad():
        torch.testing.assert_close(method.attribute(resnet18, inputs, targets, AttributionContext(keys(3))), reference)
    with torch.inference_mode():
        torch.testing.assert_close(method.attribute(resnet18, inputs, targets, AttributionContext(keys(3))), reference)
