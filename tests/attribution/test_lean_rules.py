"""Rules attached lean (``attribution/lean_rules.py``) against the same rules attached by zennit.

The relevance must be *bitwise* the same (the arithmetic that remains is zennit's own, in the
same order); what changes is the work: no discarded ordinary gradient, no pass on an all-zero
input. The work is counted in FLOPs (``torch.utils.flop_counter``), never timed.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry
from zennit.composites import EpsilonPlusFlat
from zennit.core import Composite

from .attribution_models import (
    keys, make_inputs, make_targets, tiny_densenet, tiny_efficientnet,
)
from benchmark.attribution import AttributionContext, build_method
from benchmark.attribution.backward import AtInput, path_gradient
from benchmark.attribution.lean_rules import LeanRule, lean, memoizing
from benchmark.attribution.lrp import CANONIZERS, COMPOSITES, COMPOSITE_FAMILIES
from benchmark.config.spec import LRPSpec
from benchmark.experiments.skip_path import branch_relevance
from benchmark.models.bundle import ModelBundle

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


def relevance(model: ModelBundle, composite: Composite, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    with composite.context(model.module):
        return path_gradient(model.module, AtInput(inputs), targets, inputs.shape[0], output="one")


def both_ways(model: ModelBundle, name: str, inputs: torch.Tensor) -> tuple[Composite, Composite]:
    """The registered composite ``name`` for ``model``: attached by zennit, and lean."""
    spec = LRPSpec(name="lrp", composite=name)
    bounds = model.input_bounds(inputs[:1])
    make = lambda: COMPOSITES[name](spec, bounds, CANONIZERS[model.family]())  # noqa: E731
    return make(), lean(make())


def composites_for(family: str) -> list[str]:
    return [name for name in sorted(COMPOSITES) if family in COMPOSITE_FAMILIES.get(name, (family,))]


MODELS = {
    "resnet18": lambda request: request.getfixturevalue("resnet18"),
    "vgg_like": lambda request: request.getfixturevalue("vgg_like"),
    "densenet": lambda request: tiny_densenet(),
    "efficientnet": lambda request: tiny_efficientnet(),
}


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_every_composite_gives_zennits_relevance_bit_for_bit(model_name: str, request: pytest.FixtureRequest) -> None:
    model = MODELS[model_name](request)
    inputs, targets = make_inputs(model, n=2), make_targets(2)
    for name in composites_for(model.family):
        zennit_way, lean_way = both_ways(model, name, inputs)
        expected = relevance(model, zennit_way, inputs, targets)
        actual = relevance(model, lean_way, inputs, targets)
        assert expected.abs().sum() > 0, name
        assert torch.equal(actual, expected), f"{model_name}/{name}: max |diff| {(actual - expected).abs().max():.3g}"


def test_resnet50_bottlenecks_give_zennits_relevance_bit_for_bit(resnet50) -> None:
    inputs, targets = make_inputs(resnet50, n=2), make_targets(2)
    for name in ("epsilon_plus_flat", "alpha2beta1", "adaptive_beta"):
        zennit_way, lean_way = both_ways(resnet50, name, inputs)
        assert torch.equal(relevance(resnet50, lean_way, inputs, targets), relevance(resnet50, zennit_way, inputs, targets))


def test_the_lrp_method_attaches_its_rules_lean(resnet18) -> None:
    """The method's maps are the lean ones, and equal to zennit's way of attaching the same composite."""
    inputs, targets = make_inputs(resnet18, n=2), make_targets(2)
    method = build_method(LRPSpec(name="lrp", composite="epsilon_plus_flat"), resnet18)
    composite = method.backward_rules(resnet18, inputs)
    composite.register(resnet18.module)
    attached = [hook for hook in composite.hook_refs if isinstance(hook, LeanRule)]
    composite.remove()
    assert attached, "no rule was attached lean"
    maps = method.attribute(resnet18, inputs, targets, AttributionContext(keys(2), chunk_size=2))
    zennit_way, _ = both_ways(resnet18, "epsilon_plus_flat", inputs)
    assert torch.equal(maps, relevance(resnet18, zennit_way, inputs, targets))


def test_half_the_convolution_work_of_zennit_for_z_plus(resnet18) -> None:
    """z⁺ after ReLUs: zennit runs each conv forward, its discarded ordinary backward, and two modified
    forwards with two backwards; lean runs the forward, one modified forward and one backward."""
    inputs, targets = make_inputs(resnet18, n=2), make_targets(2)

    def flops(composite: Composite) -> int:
        with Flops() as counter:
            relevance(resnet18, composite, inputs, targets)
        return counter.total

    zennit_way, lean_way = both_ways(resnet18, "epsilon_plus_flat", inputs)
    ratio = flops(lean_way) / flops(zennit_way)
    assert 0.45 < ratio < 0.6, ratio


def test_a_recorded_node_keeps_its_modified_passes_for_the_next_backward(resnet18) -> None:
    """A graph recorded while ``memoizing`` (the trained bottom that ``attribution.reuse`` replays) runs
    each rule's modified forward once: the second backward through it makes only their gradients, and
    every backward gives the relevance of a graph that keeps nothing, bit for bit."""
    inputs, targets = make_inputs(resnet18, n=2), make_targets(2)
    _, lean_way = both_ways(resnet18, "epsilon_plus_flat", inputs)

    def backward_runs(memoized: bool, runs: int) -> list[tuple[torch.Tensor, int]]:
        with lean_way.context(resnet18.module):
            leaf = inputs.clone().requires_grad_()
            if memoized:
                with memoizing():
                    logits = resnet18.module(leaf)
            else:
                logits = resnet18.module(leaf)
            selected = logits.gather(1, targets.view(-1, 1)).sum()
            results = []
            for _ in range(runs):
                with Flops() as counter:
                    (gradient,) = torch.autograd.grad(selected, leaf, retain_graph=True)
                results.append((gradient, counter.total))
            return results

    (fresh, fresh_flops), = backward_runs(memoized=False, runs=1)
    (first, first_flops), (second, second_flops) = backward_runs(memoized=True, runs=2)
    assert fresh.abs().sum() > 0
    assert torch.equal(first, fresh) and torch.equal(second, fresh)
    assert first_flops == fresh_flops
    # z+ after ReLUs: one modified forward and its gradient per conv; the replay keeps the forward
    assert 0.4 < second_flops / first_flops < 0.6, (second_flops, first_flops)


class Flops(TorchDispatchMode):
    """FLOPs of every op torch's flop counter knows (convolutions, matmuls, their backwards), counted at
    dispatch (torch's own ``FlopCounterMode`` also tracks modules with hooks that zennit's hooks trip)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func._overloadpacket in flop_registry:
            self.total += flop_registry[func._overloadpacket](*args, **kwargs, out_val=out)
        return out


def test_detaching_restores_the_model(resnet18) -> None:
    """After the composite is removed: no forward left on any module instance, in-place flags as they
    were, the same outputs and ordinary gradients as before."""
    modules = dict(resnet18.module.named_modules())
    modules["relu"].inplace = True  # the registry turns them off; a user's model may not
    inputs = make_inputs(resnet18, n=2)
    before = resnet18.module(inputs)
    _, lean_way = both_ways(resnet18, "epsilon_plus_flat", inputs)
    with lean_way.context(resnet18.module):
        assert modules["relu"].inplace is False
        assert "forward" in modules["layer1.0.conv1"].__dict__
    assert not [name for name, module in resnet18.module.named_modules() if "forward" in module.__dict__]
    assert modules["relu"].inplace is True
    assert torch.equal(resnet18.module(inputs), before)
    x = inputs.clone().requires_grad_(True)
    resnet18.module(x)[:, 3].sum().backward()
    y = inputs.clone().requires_grad_(True)
    modules["relu"].inplace = False
    resnet18.module(y)[:, 3].sum().backward()
    assert torch.equal(x.grad, y.grad)


def test_a_rule_zennit_knows_nothing_about_stays_attached_the_zennit_way(resnet18) -> None:
    """Mixing: a hook class the lean attachment does not know keeps zennit's attachment, in the same composite."""
    from zennit.core import Hook

    class Doubling(Hook):
        def backward(self, module, grad_input, grad_output):
            return (2 * grad_input[0],)

    inputs, targets = make_inputs(resnet18, n=2), make_targets(2)
    spec = LRPSpec(name="lrp", composite="epsilon_plus_flat")
    bounds = resnet18.input_bounds(inputs[:1])

    def with_doubling() -> Composite:
        composite = COMPOSITES["epsilon_plus_flat"](spec, bounds, CANONIZERS["resnet"]())
        base = composite.module_map
        composite.module_map = lambda ctx, name, module: Doubling() if name == "maxpool" else base(ctx, name, module)
        return composite

    expected = relevance(resnet18, with_doubling(), inputs, targets)
    actual = relevance(resnet18, lean(with_doubling()), inputs, targets)
    assert torch.equal(actual, expected)
    plain = relevance(resnet18, lean(COMPOSITES["epsilon_plus_flat"](spec, bounds, CANONIZERS["resnet"]())), inputs, targets)
    torch.testing.assert_close(actual, 2 * plain)


def test_the_skip_path_split_is_lean_and_still_adds_up(resnet18) -> None:
    """Fig. 7's split (a ``SelectedSum`` rule on one residual sum) attached lean: skip + residual = the whole."""
    inputs, targets = make_inputs(resnet18, n=2), make_targets(2)
    method = build_method(LRPSpec(name="lrp", composite="epsilon_plus_flat"), resnet18)
    whole = method.attribute(resnet18, inputs, targets, AttributionContext(keys(2), chunk_size=2))
    sums = [name for name, _ in _canonized_names(resnet18) if name.endswith("canonizer_sum")]
    assert "layer2.1.canonizer_sum" in sums
    parts = [branch_relevance(resnet18, method, "layer2.1.canonizer_sum", index, inputs, targets, 2) for index in (0, 1)]
    torch.testing.assert_close(parts[0] + parts[1], whole, rtol=1e-5, atol=1e-7)


def _canonized_names(model: ModelBundle):
    composite = Composite(canonizers=CANONIZERS[model.family]())
    with composite.context(model.module):
        return list(model.module.named_modules())


def test_zennits_own_attributor_agrees(resnet18) -> None:
    """The independent reference: zennit's ``Gradient`` attributor with its own EpsilonPlusFlat and canonizer."""
    from zennit.attribution import Gradient
    from zennit.torchvision import ResNetCanonizer

    inputs, targets = make_inputs(resnet18, n=2), make_targets(2)
    method = build_method(LRPSpec(name="lrp", composite="epsilon_plus_flat"), resnet18)
    ours = method.attribute(resnet18, inputs, targets, AttributionContext(keys(2), chunk_size=2))
    with Gradient(model=resnet18.module, composite=EpsilonPlusFlat(canonizers=[ResNetCanonizer()])) as attributor:
        _, expected = attributor(inputs, torch.eye(10)[targets])
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize("model_name", ["resnet18", "efficientnet"])
def test_guided_backprop_attached_lean_equals_zennits_attachment(model_name: str, request: pytest.FixtureRequest) -> None:
    """The guided rule at ReLUs in one node (ReLU backward and clamp) equals zennit's hook on the ReLU's
    gradient, bit for bit; EfficientNet's swish keeps zennit's attachment (the rule has no lean form there)."""
    from zennit.composites import LayerMapComposite

    from benchmark.attribution.guided import ACTIVATIONS, ClampedGradient, guided_composite

    model = MODELS[model_name](request)
    inputs, targets = make_inputs(model, n=2), make_targets(2)
    zennit_way = LayerMapComposite(layer_map=[(ACTIVATIONS, ClampedGradient())])
    expected = relevance(model, zennit_way, inputs, targets)
    composite = guided_composite()
    with composite.context(model.module):
        lean_modules = [m for m in model.module.modules() if "forward" in m.__dict__]
        zennit_modules = [m for m in model.module.modules() if m._forward_pre_hooks]
    assert {type(m).__name__ for m in lean_modules} == ({"ReLU"} if model_name == "resnet18" else set())
    assert (not zennit_modules) if model_name == "resnet18" else zennit_modules
    assert torch.equal(relevance(model, guided_composite(), inputs, targets), expected)
