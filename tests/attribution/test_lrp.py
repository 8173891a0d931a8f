"""LRP against zennit's own attributor, analytic identities, and early refusal of what is missing."""

from __future__ import annotations

import pytest
import torch
from captum.attr import InputXGradient
from zennit.composites import (
    EpsilonAlpha2Beta1,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    LayerMapComposite,
    layer_map_base,
)
from zennit.rules import Epsilon, Gamma
from zennit.torchvision import ResNetCanonizer, VGGCanonizer
from zennit.types import Convolution, Linear

from .attribution_models import keys, make_inputs, make_targets, registry_bundle, zennit_relevance
from benchmark.attribution import AttributionContext, MethodNotSupported, build_method
from benchmark.config.spec import LRPSpec
from benchmark.models.registry import IMAGENET_MEAN, IMAGENET_STD

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

EPSILON, GAMMA = 1e-6, 0.25
COMPOSITE_NAMES = ["epsilon", "zplus", "alpha2beta1", "gamma", "epsilon_plus_flat", "epsilon_gamma_box"]


def lrp(model, inputs, targets, composite: str, chunk_size: int = 64, **settings) -> torch.Tensor:
    spec = LRPSpec(name="lrp", composite=composite, **settings)
    ctx = AttributionContext(image_keys=keys(inputs.shape[0]), chunk_size=chunk_size)
    return build_method(spec, model).attribute(model, inputs, targets, ctx)


def reference_composite(name: str, family: str, inputs: torch.Tensor):
    """The composite built from zennit's own classes and rules, with the family's zennit canonizer."""
    canonizers = [ResNetCanonizer()] if family == "resnet" else [VGGCanonizer()]
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    low, high = ((0 - mean) / std).expand_as(inputs), ((1 - mean) / std).expand_as(inputs)
    return {
        "epsilon": lambda: LayerMapComposite(layer_map_base() + [(Linear, Epsilon(EPSILON))], canonizers=canonizers),
        "zplus": lambda: EpsilonPlus(epsilon=EPSILON, canonizers=canonizers),
        "alpha2beta1": lambda: EpsilonAlpha2Beta1(epsilon=EPSILON, canonizers=canonizers),
        "gamma": lambda: LayerMapComposite(
            layer_map_base() + [(Convolution, Gamma(gamma=GAMMA)), (torch.nn.Linear, Epsilon(EPSILON))],
            canonizers=canonizers,
        ),
        "epsilon_plus_flat": lambda: EpsilonPlusFlat(epsilon=EPSILON, canonizers=canonizers),
        "epsilon_gamma_box": lambda: EpsilonGammaBox(
            low=low, high=high, epsilon=EPSILON, gamma=GAMMA, canonizers=canonizers
        ),
    }[name]()


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * expected.abs().max().item())


@pytest.mark.parametrize("composite", COMPOSITE_NAMES)
@pytest.mark.parametrize("model_name", ["resnet18", "vgg_like"])
def test_composites_equal_zennit(model_name: str, composite: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(model_name)
    inputs, targets = make_inputs(model), make_targets()
    ours = lrp(model, inputs, targets, composite, epsilon=EPSILON, gamma=GAMMA, chunk_size=2)
    expected = zennit_relevance(model, reference_composite(composite, model.family, inputs), inputs, targets)
    assert ours.shape == inputs.shape and ours.abs().sum() > 0
    assert_close(ours, expected, rtol=1e-4)


@pytest.mark.parametrize("composite", ["alpha2beta1", "epsilon_gamma_box"])
def test_composites_equal_zennit_on_resnet50_bottlenecks(resnet50, composite: str) -> None:
    inputs, targets = make_inputs(resnet50, n=2), make_targets(2)
    ours = lrp(resnet50, inputs, targets, composite, epsilon=EPSILON, gamma=GAMMA)
    expected = zennit_relevance(resnet50, reference_composite(composite, "resnet", inputs), inputs, targets)
    assert_close(ours, expected, rtol=1e-4)


def test_the_canonizer_is_applied(resnet18) -> None:
    inputs, targets = make_inputs(resnet18), make_targets()
    ours = lrp(resnet18, inputs, targets, "epsilon_plus_flat")
    without = zennit_relevance(resnet18, EpsilonPlusFlat(), inputs, targets)
    assert (ours - without).norm() > 0.01 * ours.norm()


def test_lrp_0_equals_gradient_times_input_on_a_bias_free_relu_network(bias_free) -> None:
    """Seeded with the logit, LRP-0 is gradient×input; seeded with 1 (the default), gradient×input / logit."""
    inputs, targets = make_inputs(bias_free), make_targets()
    ours = lrp(bias_free, inputs, targets, "epsilon", epsilon=1e-9, output_relevance="logit")
    expected = InputXGradient(bias_free.module).attribute(inputs.clone(), target=targets).detach()
    # exact in real arithmetic; LRP divides by pre-activations, so float32 error grows where they are tiny
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-3 * expected.abs().max().item())
    with torch.no_grad():
        logits = bias_free.module(inputs)[torch.arange(len(targets)), targets].view(-1, 1, 1, 1)
    by_one = lrp(bias_free, inputs, targets, "epsilon", epsilon=1e-9)
    torch.testing.assert_close(by_one, expected / logits, rtol=1e-4, atol=1e-3 * (expected / logits).abs().max().item())


def test_epsilon_conserves_the_logit_on_a_bias_free_network(bias_free) -> None:
    inputs, targets = make_inputs(bias_free, n=4), make_targets(4)
    relevance = lrp(bias_free, inputs, targets, "epsilon", epsilon=1e-6, output_relevance="logit")
    with torch.no_grad():
        logits = bias_free.module(inputs)[torch.arange(4), targets]
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), logits, rtol=1e-4, atol=1e-5 * logits.abs().max().item())


def test_relevance_one_is_the_default_and_logit_seeding_equals_zennit_seeded_with_the_logit(resnet18) -> None:
    """DESIGN §4: relevance 1 at the target (zennit's one-hot ``attr_output``); 'logit' stays selectable,
    and its method id says so."""
    inputs, targets = make_inputs(resnet18), make_targets()
    assert LRPSpec(name="lrp").output_relevance == "one"
    assert LRPSpec(name="lrp").method_id == "lrp_epsilon_plus_flat"
    assert LRPSpec(name="lrp", output_relevance="logit").method_id == "lrp_epsilon_plus_flat_logit"
    assert LRPSpec(name="lrp", output_relevance="logit", label="mine").method_id == "mine"
    composite = reference_composite("epsilon_plus_flat", "resnet", inputs)
    by_default = lrp(resnet18, inputs, targets, "epsilon_plus_flat", epsilon=EPSILON)
    assert_close(by_default, zennit_relevance(resnet18, composite, inputs, targets), rtol=1e-4)
    by_logit = lrp(resnet18, inputs, targets, "epsilon_plus_flat", epsilon=EPSILON, output_relevance="logit")
    composite = reference_composite("epsilon_plus_flat", "resnet", inputs)
    assert_close(by_logit, zennit_relevance(resnet18, composite, inputs, targets, output_relevance="logit"), rtol=1e-4)


def test_output_relevance_one_is_the_logit_version_divided_by_the_logit(resnet18) -> None:
    """zennit's rules are linear in the relevance they receive."""
    inputs, targets = make_inputs(resnet18), make_targets()
    by_logit = lrp(resnet18, inputs, targets, "epsilon_gamma_box", output_relevance="logit")
    by_one = lrp(resnet18, inputs, targets, "epsilon_gamma_box", output_relevance="one")
    with torch.no_grad():
        logits = resnet18.module(inputs)[torch.arange(3), targets]
    assert_close(by_logit, by_one * logits.view(-1, 1, 1, 1), rtol=1e-4)


def test_chunking_does_not_change_relevance(resnet18) -> None:
    inputs, targets = make_inputs(resnet18, n=4), make_targets(4)
    whole = lrp(resnet18, inputs, targets, "epsilon_gamma_box", chunk_size=64)
    assert_close(lrp(resnet18, inputs, targets, "epsilon_gamma_box", chunk_size=1), whole)
    assert_close(lrp(resnet18, inputs, targets, "epsilon_gamma_box", chunk_size=3), whole)


@pytest.mark.parametrize("model_name", ["densenet121", "efficientnet-b0"])
def test_densenet_and_efficientnet_have_canonizers_now(model_name: str) -> None:
    model = registry_bundle(model_name)
    for composite in COMPOSITE_NAMES + ["adaptive_beta"]:
        build_method(LRPSpec(name="lrp", composite=composite), model)


def test_the_vgg_composite_of_section_4_1_is_refused_for_other_families(resnet18) -> None:
    with pytest.raises(MethodNotSupported, match=r"'vgg_paper' is defined for model families vgg only"):
        build_method(LRPSpec(name="lrp", composite="vgg_paper"), resnet18)
    with pytest.raises(MethodNotSupported, match=r"family 'densenet'"):
        build_method(LRPSpec(name="lrp", composite="vgg_paper"), registry_bundle("densenet121"))


def test_a_family_without_canonizers_is_refused_at_build_time(resnet18) -> None:
    from .attribution_models import make_bundle

    unknown = make_bundle(resnet18.module, "mobilenet", "mobile")
    with pytest.raises(MethodNotSupported, match=r"family 'mobilenet'\) needs canonizers"):
        build_method(LRPSpec(name="lrp", composite="epsilon"), unknown)


def test_lrp_follows_in_place_randomization(resnet18) -> None:
    """Canonizers are fresh per call: a randomized stage gets the merge of its own parameters."""
    from benchmark.models import Randomizer

    inputs, targets = make_inputs(resnet18), make_targets()
    before = lrp(resnet18, inputs, targets, "epsilon_gamma_box", epsilon=EPSILON, gamma=GAMMA)
    randomizer = Randomizer(resnet18.module)
    randomizer.randomize(["fc", "layer4.1.conv2", "layer4.1.bn2"], seed=3)
    try:
        after = lrp(resnet18, inputs, targets, "epsilon_gamma_box", epsilon=EPSILON, gamma=GAMMA)
        composite = reference_composite("epsilon_gamma_box", "resnet", inputs)
        expected = zennit_relevance(resnet18, composite, inputs, targets)
    finally:
        randomizer.restore()
    assert_close(after, expected, rtol=1e-4)
    assert (after - before).norm() > 0.01 * before.norm()
    assert_close(lrp(resnet18, inputs, targets, "epsilon_gamma_box", epsilon=EPSILON, gamma=GAMMA), before, rtol=1e-6)
