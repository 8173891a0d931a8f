"""Gradient, gradient×input and integrated gradients against Captum on the same models and inputs."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from captum.attr._utils.approximation_methods import approximation_parameters

from .attribution_models import keys, make_inputs, make_targets
from benchmark.attribution import AttributionContext, MethodNotSupported, build_method
from benchmark.attribution.quadrature import RULES, quadrature
from benchmark.config.spec import GradientInputSpec, GradientSpec, IntegratedGradientsSpec

RULE_NAMES = sorted(RULES)
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


def context(n: int, chunk_size: int = 64) -> AttributionContext:
    return AttributionContext(image_keys=keys(n), seed=0, stage=0, chunk_size=chunk_size)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("model_name", ["tiny", "resnet18"])
def test_gradient_and_gradient_x_input_equal_captum(model_name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(model_name)
    inputs, targets = make_inputs(model), make_targets()
    ctx = context(3)
    gradient = build_method(GradientSpec(name="gradient"), model).attribute(model, inputs, targets, ctx)
    times_input = build_method(GradientInputSpec(name="gradient_x_input"), model).attribute(model, inputs, targets, ctx)

    assert gradient.shape == inputs.shape
    assert_close(gradient, Saliency(model.module).attribute(inputs.clone(), target=targets, abs=False))
    assert_close(times_input, InputXGradient(model.module).attribute(inputs.clone(), target=targets))


def test_gradient_x_input_shares_the_backward_pass_of_gradient(tiny) -> None:
    calls = []
    handle = tiny.module.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        inputs, targets, ctx = make_inputs(tiny), make_targets(), context(3)
        gradient = build_method(GradientSpec(name="gradient"), tiny)
        times_input = build_method(GradientInputSpec(name="gradient_x_input"), tiny)
        gradient.attribute(tiny, inputs, targets, ctx)
        times_input.attribute(tiny, inputs, targets, ctx)
        assert calls == [3]
        # other targets or another context: computed again
        times_input.attribute(tiny, inputs, targets.flip(0), ctx)
        times_input.attribute(tiny, inputs, targets, context(3))
        assert calls == [3, 3, 3]
    finally:
        handle.remove()
    assert gradient.passes() == times_input.passes()
    assert gradient.passes().shared is not None


def test_cached_gradient_is_not_corrupted_by_callers(tiny) -> None:
    inputs, targets, ctx = make_inputs(tiny), make_targets(), context(3)
    method = build_method(GradientSpec(name="gradient"), tiny)
    first = method.attribute(tiny, inputs, targets, ctx)
    reference = first.clone()
    first.zero_()
    torch.testing.assert_close(method.attribute(tiny, inputs, targets, ctx), reference, rtol=0, atol=0)


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_quadrature_nodes_and_weights_match_captum(rule: str) -> None:
    n = 9
    alphas, weights = quadrature(rule, n)
    captum_steps, captum_alphas = approximation_parameters(rule)
    expected_weights = torch.tensor(captum_steps(n), dtype=torch.float64)
    if rule == "riemann_trapezoid":
        expected_weights *= n / (n - 1)  # Captum's trapezoid weights sum to (n-1)/n; ours to one
    expected_alphas = torch.tensor(captum_alphas(n), dtype=torch.float64)  # Captum's are float32 linspaces
    torch.testing.assert_close(torch.from_numpy(alphas), expected_alphas, rtol=0, atol=1e-7)
    torch.testing.assert_close(torch.from_numpy(weights), expected_weights, rtol=1e-12, atol=1e-12)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_integrated_gradients_equal_captum(tiny, rule: str) -> None:
    steps = 8
    inputs, targets = make_inputs(tiny), make_targets()
    spec = IntegratedGradientsSpec(name="integrated_gradients", steps=steps, rule=rule)
    ours = build_method(spec, tiny).attribute(tiny, inputs, targets, context(3, chunk_size=10))
    expected = IntegratedGradients(tiny.module).attribute(
        inputs.clone(), baselines=0.0, target=targets, n_steps=steps, method=rule
    )
    if rule == "riemann_trapezoid":
        expected = expected * steps / (steps - 1)  # see test_quadrature_nodes_and_weights_match_captum
    assert_close(ours, expected, rtol=1e-4)


def test_integrated_gradients_equal_captum_on_resnet18(resnet18) -> None:
    inputs, targets = make_inputs(resnet18, n=2), make_targets(2)
    spec = IntegratedGradientsSpec(name="integrated_gradients", steps=6, rule="gausslegendre")
    ours = build_method(spec, resnet18).attribute(resnet18, inputs, targets, context(2, chunk_size=5))
    expected = IntegratedGradients(resnet18.module).attribute(
        inputs.clone(), baselines=0.0, target=targets, n_steps=6, method="gausslegendre"
    )
    assert_close(ours, expected, rtol=1e-4)


def test_integrated_gradients_do_not_depend_on_chunk_size(tiny) -> None:
    inputs, targets = make_inputs(tiny, n=4), make_targets(4)
    method = build_method(IntegratedGradientsSpec(name="integrated_gradients", steps=9), tiny)
    maps = [method.attribute(tiny, inputs, targets, context(4, chunk_size=size)) for size in (1, 3, 7, 1000)]
    for other in maps[1:]:
        assert_close(other, maps[0], rtol=1e-5)


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_integrated_gradients_are_complete(tiny, rule: str) -> None:
    """Σ attributions = f(x) − f(0) (the zero baseline) up to the quadrature error of many steps."""
    inputs, targets = make_inputs(tiny, size=16), make_targets()
    spec = IntegratedGradientsSpec(name="integrated_gradients", steps=512, rule=rule)
    maps = build_method(spec, tiny).attribute(tiny, inputs, targets, context(3, chunk_size=1024))
    with torch.no_grad():
        rows = torch.arange(3)
        difference = tiny.module(inputs)[rows, targets] - tiny.module(torch.zeros_like(inputs))[rows, targets]
    tolerance = 2e-3 * difference.abs().max().item()
    torch.testing.assert_close(maps.sum(dim=(1, 2, 3)), difference, rtol=2e-3, atol=tolerance)


def test_trapezoid_with_one_step_is_refused(tiny) -> None:
    with pytest.raises(ValidationError, match="steps >= 2"):
        IntegratedGradientsSpec(name="integrated_gradients", steps=1, rule="riemann_trapezoid")
    unchecked = IntegratedGradientsSpec.model_construct(name="integrated_gradients", steps=1, rule="riemann_trapezoid")
    with pytest.raises(MethodNotSupported, match="at least 2 steps"):
        build_method(unchecked, tiny)
