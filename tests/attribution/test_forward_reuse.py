"""Reusing the trained bottom's forward across randomization stages changes the cost, never a number."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.attribution import AttributionContext, build_method
from benchmark.attribution.reuse import BottomReuse, record_forward, replaying
from benchmark.config.spec import GradientSpec, GuidedBackpropSpec, LRPSpec
from benchmark.experiments.walk import stage_walk
from benchmark.models import Randomizer, build_plan, model_def

from .attribution_models import keys, make_inputs, make_targets, registry_bundle, seeded, tiny_densenet, tiny_efficientnet

PAPER_MODEL = {"densenet": "densenet121", "efficientnet": "efficientnet-b0"}
ARCHITECTURES = {
    "resnet50": lambda: registry_bundle("resnet50"),
    "vgg16": lambda: registry_bundle("vgg16"),
    "densenet": tiny_densenet,
    "efficientnet": tiny_efficientnet,
}


def walk_gradients(model, mode: str = "top_down", seeds=(0, 1), boundaries: int = 3, spec=None):
    """Per (seed, stage): the method's maps (default: the gradient) with and without reuse, and the
    weight layers each reusing pass called."""
    paper = PAPER_MODEL.get(model.definition.family, model.name)
    rule = model_def(paper).randomization  # the paper's boundaries, on the tiny stand-ins too
    plan = build_plan(model.module, mode=mode, head=rule.head, boundary=rule.boundary, every=rule.every,
                      max_boundaries=boundaries)
    method = build_method(spec or GradientSpec(name="gradient"), model)
    inputs, targets, ids = make_inputs(model), make_targets(), keys()
    reuse = BottomReuse(inputs)

    def both(seed: int, stage: int, randomized: set[str]):
        with CallCounter(model.module) as calls:
            reused = method.attribute(model, inputs, targets, AttributionContext(ids, seed, stage, 2, {}, reuse.at(randomized)))
        fresh = method.attribute(model, inputs, targets, AttributionContext(ids, seed, stage, 2, {}))
        return reused, fresh, calls

    results = [(0, 0, *both(0, 0, set()))]
    randomizer = Randomizer(model.module)
    with stage_walk(randomizer, plan, seeds) as states:
        for seed, stage in states:
            results.append((seed, stage.index, *both(seed, stage.index, randomizer.randomized_modules)))
    return plan, results


class CallCounter:
    """Counts the calls of every weight layer while active (a replayed module's layers are not called)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.calls: dict[str, int] = {}

    def __enter__(self) -> "CallCounter":
        self.handles = [
            layer.register_forward_pre_hook(lambda _m, _a, name=name: self.calls.__setitem__(name, self.calls.get(name, 0) + 1))
            for name, layer in self.module.named_modules()
            if isinstance(layer, (nn.Conv2d, nn.Linear))
        ]
        self.layers = len(self.handles)
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()

    @property
    def skipped(self) -> int:
        """Weight layers of the model that no pass called."""
        return self.layers - len(self.calls)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_reused_gradients_equal_fresh_ones_in_every_stage_and_seed(architecture: str) -> None:
    model = ARCHITECTURES[architecture]()
    parameters = {name: value.clone() for name, value in model.module.state_dict().items()}
    plan, results = walk_gradients(model)
    skipped = {}
    for seed, stage, reused, fresh, calls in results:
        assert torch.equal(reused, fresh), (architecture, seed, stage)
        skipped[(seed, stage)] = calls.skipped
    # stage 0 records (a full pass); stage 1 (the head randomized) recomputes little more than the head
    assert skipped[(0, 0)] == 0
    assert skipped[(0, 1)] > 0
    # deeper stages replay less: the bottom shrinks as randomization cascades down
    stages = [stage.index for stage in plan.stages]
    assert all(skipped[(0, a)] >= skipped[(0, b)] for a, b in zip(stages, stages[1:]))
    # a new seed restarts from the trained model: its first stage records afresh, the next ones replay
    assert skipped[(1, 1)] == 0 and skipped[(1, 2)] == skipped[(0, 2)]
    # the model is left as it was: modules back in place, parameters bit-identical
    assert not any(type(m).__name__ == "Replay" for m in model.module.modules())
    assert all(torch.equal(value, parameters[name]) for name, value in model.module.state_dict().items())


def test_independent_stages_reuse_too() -> None:
    """Independent stages randomize one group each; everything below it is still the trained bottom."""
    plan, results = walk_gradients(registry_bundle("resnet50"), mode="independent", seeds=(0,))
    for seed, stage, reused, fresh, calls in results:
        assert torch.equal(reused, fresh), stage
    assert all(calls.skipped > 0 for _, stage, _, _, calls in results if stage > 0)


class InPlaceStem(nn.Module):
    """A BatchNorm whose output an in-place ReLU overwrites, the way torchvision's ResNet stem does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        return self.head(x.mean(dim=(2, 3)))


def test_an_output_overwritten_in_place_is_recomputed_not_replayed() -> None:
    model = seeded(InPlaceStem).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    x = torch.randn(2, 3, 8, 8).requires_grad_(True)
    logits, recording = record_forward(model, x, frozenset())
    # bn's output was overwritten by the in-place ReLU after bn returned: replaying it would replay ReLU'd values
    assert recording.replayable(frozenset({"head"})) == ("conv", "relu")
    seed = torch.zeros_like(logits)
    seed[:, 3] = 1
    (expected,) = torch.autograd.grad(logits, x, seed, retain_graph=True)
    with replaying(model, recording, recording.replayable(frozenset({"head"}))):
        replayed = model(x)
    (gradient,) = torch.autograd.grad(replayed, x, seed, retain_graph=True)
    assert torch.equal(gradient, expected)


RULES = {
    "guided_backprop": GuidedBackpropSpec(name="guided_backprop"),
    "lrp_epsilon_plus_flat": LRPSpec(name="lrp", composite="epsilon_plus_flat"),
    "lrp_alpha2beta1": LRPSpec(name="lrp", composite="alpha2beta1"),
    "lrp_adaptive_beta": LRPSpec(name="lrp", composite="adaptive_beta"),
}


@pytest.mark.parametrize("method", sorted(RULES))
@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_methods_with_lean_rules_replay_too_and_give_the_same_maps(architecture: str, method: str) -> None:
    """Guided backprop and LRP with every rule attached lean (``lean_rules``) record the trained bottom
    under their rules once and replay it: bitwise the maps of fresh passes, in every stage and seed.
    A rule attached by zennit (guided backprop at EfficientNet's swish) would vanish from a recorded
    graph with its composite: such a method never replays. (EfficientNet's convolutions keep their
    padding as a child module: attached lean all the same, so its LRP replays.)"""
    model = ARCHITECTURES[architecture]()
    parameters = {name: value.clone() for name, value in model.module.state_dict().items()}
    _, results = walk_gradients(model, spec=RULES[method], boundaries=2)
    skipped = {}
    for seed, stage, reused, fresh, calls in results:
        assert torch.equal(reused, fresh), (architecture, method, seed, stage)
        skipped[(seed, stage)] = calls.skipped
    replays = not (architecture == "efficientnet" and method == "guided_backprop")
    assert skipped[(0, 0)] == 0 and (skipped[(0, 1)] > 0) is replays
    assert all(torch.equal(value, parameters[name]) for name, value in model.module.state_dict().items())
