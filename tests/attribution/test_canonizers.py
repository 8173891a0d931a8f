"""DenseNet-121 and EfficientNet-B0 canonizers: same outputs, conserved relevance, clean removal.

All on untrained networks (``registry_bundle``: library initialisation plus random BatchNorm
statistics, or the He-normal bias-free variants below): mechanics, not a trained network's maps.

Tolerances. Equivalence: outputs within 1e-5 · max|logit| (float32; BatchNorm merges only reorder
floating-point operations). Conservation: on bias-free, well-scaled variants, Σ input relevance is
within 1e-4 (relative) of the logit; what is missing is float32 rounding and what the stabilisers of
1e-6 in zennit's ``Norm`` rules (residual sums, average pools) absorb.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from zennit.core import Composite

from .attribution_models import keys, make_inputs, make_targets, registry_bundle, tiny_densenet, tiny_efficientnet
from .test_model_untouched import assert_untouched, state
from benchmark.attribution import AttributionContext, build_method
from benchmark.attribution.canonizers import HeldGate, MergeBatchNormPairs, has_identity_skip
from benchmark.attribution.lrp import CANONIZERS, COMPOSITES, base_layer_map
from benchmark.config.spec import LRPSpec

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

FAMILY_MODELS = ["densenet121", "efficientnet-b0"]
TINY = {"tiny-densenet": tiny_densenet, "tiny-efficientnet": tiny_efficientnet}


@pytest.fixture(scope="module")
def models() -> dict:
    return {name: registry_bundle(name) for name in FAMILY_MODELS}


def canonized_output(model, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        original = model.module(inputs)
        with Composite(canonizers=CANONIZERS[model.family]()).context(model.module):
            canonized = model.module(inputs)
    return original, canonized


def bias_free_variant(name: str, inputs: torch.Tensor, seed: int = 0):
    """The architecture (a registry name or 'tiny-densenet'/'tiny-efficientnet') with He-normal
    weights, no biases and BatchNorm without shift.

    Each BatchNorm's scale is set so that its output has unit RMS on ``inputs`` (set in forward
    order, one pass): activations stay O(1) through all layers, so the 1e-6 stabilisers of the rules
    cannot hide a leak.
    """
    model = TINY[name]() if name in TINY else registry_bundle(name)
    generator = torch.Generator().manual_seed(seed)

    def unit_rms(layer: nn.BatchNorm2d, args: tuple) -> None:
        scale = (args[0] / (layer.running_var + layer.eps).sqrt().view(1, -1, 1, 1)).square().mean().sqrt()
        layer.weight.fill_(1.0 / scale.item())

    with torch.no_grad():
        handles = []
        for layer in model.module.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * math.sqrt(2 / fan_in))
                if layer.bias is not None:
                    layer.bias.zero_()
            elif isinstance(layer, nn.BatchNorm2d):
                layer.bias.zero_()
                layer.running_mean.zero_()
                handles.append(layer.register_forward_pre_hook(unit_rms))
        model.module(inputs)
        for handle in handles:
            handle.remove()
    return model


def relevance_and_logits(model, composite: str, inputs: torch.Tensor, targets: torch.Tensor):
    spec = LRPSpec(name="lrp", composite=composite, epsilon=1e-9, output_relevance="logit")  # sums to the logit
    relevance = build_method(spec, model).attribute(model, inputs, targets, AttributionContext(keys(len(targets))))
    with torch.no_grad():
        logits = model.module(inputs)[torch.arange(len(targets)), targets]
    return relevance, logits


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_canonized_model_computes_the_same_outputs(models, name: str) -> None:
    model = models[name]
    original, canonized = canonized_output(model, make_inputs(model, n=2))
    torch.testing.assert_close(canonized, original, rtol=0, atol=1e-5 * original.abs().max().item())


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_epsilon_rules_conserve_relevance_on_a_bias_free_variant(name: str) -> None:
    """Merges, concatenations and pre-activation BatchNorms (DenseNet), sums, held gates and swish
    (EfficientNet) lose nothing under ε = 1e-9 at every layer."""
    inputs, targets = make_inputs(registry_bundle(name), n=2), make_targets(2)
    model = bias_free_variant(name, inputs)
    relevance, logits = relevance_and_logits(model, "epsilon", inputs, targets)
    assert logits.abs().min() > 1e-2  # far above the stabilisers: the test is not vacuous
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), logits, rtol=1e-4, atol=0)


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_every_composite_builds_and_runs_on_the_full_models(models, name: str) -> None:
    model = models[name]
    inputs, targets = make_inputs(model, n=1), make_targets(1)
    before = state(model.module)
    for composite in sorted(set(COMPOSITES) - {"vgg_paper"}):
        maps = build_method(LRPSpec(name="lrp", composite=composite), model).attribute(
            model, inputs, targets, AttributionContext(keys(1))
        )
        assert maps.shape == inputs.shape and torch.isfinite(maps).all() and maps.abs().sum() > 0, composite
    assert_untouched(model.module, before)


def test_every_composite_conserves_relevance_through_densenet_layers_and_leaves_them_untouched() -> None:
    """A ReLU network: every composite conserves, so nothing but the rules acts on relevance; the
    model is bit-identical afterwards. (The DenseNet-121 classes at a small size.)"""
    inputs, targets = make_inputs(tiny_densenet(), n=2), make_targets(2)
    model = bias_free_variant("tiny-densenet", inputs)
    before = state(model.module)
    for composite in sorted(set(COMPOSITES) - {"vgg_paper"}):
        relevance, logits = relevance_and_logits(model, composite, inputs, targets)
        assert logits.abs().min() > 1e-2
        torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), logits, rtol=1e-4, atol=0, msg=composite)
        assert_untouched(model.module, before)


def test_every_composite_runs_through_efficientnet_blocks_and_leaves_them_untouched() -> None:
    """(z⁺ and αβ rules do not conserve here: swish lets negative pre-activations carry relevance,
    and a depthwise neuron can have no positive input at all; that is the rules, not the canonizer.)"""
    model = tiny_efficientnet()
    inputs, targets = make_inputs(model, n=2), make_targets(2)
    before = state(model.module)
    for composite in sorted(set(COMPOSITES) - {"vgg_paper"}):
        method = build_method(LRPSpec(name="lrp", composite=composite), model)
        maps = method.attribute(model, inputs, targets, AttributionContext(keys(2)))
        assert maps.shape == inputs.shape and torch.isfinite(maps).all() and maps.abs().sum() > 0, composite
        assert_untouched(model.module, before)
        assert not any(isinstance(m, HeldGate) for m in model.module.modules())


def test_batchnorm_merge_leaves_an_exact_identity() -> None:
    """zennit's merge leaves x/√(1+eps); ours x (EfficientNet's eps = 1e-3 made that 0.05 % per layer)."""
    conv, batch_norm = nn.Conv2d(2, 3, 1, bias=False).double(), nn.BatchNorm2d(3, eps=1e-3).double().eval()
    with torch.no_grad():
        batch_norm.running_var.uniform_(0.5, 2.0)
        batch_norm.running_mean.normal_()
        batch_norm.weight.uniform_(0.5, 2.0)
        batch_norm.bias.normal_()
    model = nn.Sequential(conv, batch_norm)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    expected = model(x).detach()
    with Composite(canonizers=[MergeBatchNormPairs(lambda root: iter([(conv, batch_norm)]))]).context(model):
        torch.testing.assert_close(batch_norm(x[:, :1].expand(2, 3, 4, 4)), x[:, :1].expand(2, 3, 4, 4))
        torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)
    assert model[0].bias is None


def test_efficientnet_sums_are_modules_where_blocks_add_their_input(models) -> None:
    model = models["efficientnet-b0"]
    calls: list[str] = []
    with Composite(canonizers=CANONIZERS["efficientnet"]()).context(model.module):
        modules = dict(model.module.named_modules())
        handles = [
            module.register_forward_hook(lambda m, i, o, name=name: calls.append(name))
            for name, module in modules.items()
            if name.endswith("canonizer_sum")
        ]
        with torch.no_grad():
            model.module(make_inputs(model, n=1))
        for handle in handles:
            handle.remove()
    blocks = enumerate(model.module._blocks)
    with_skip = [f"_blocks.{k}.canonizer_sum" for k, block in blocks if has_identity_skip(block)]
    assert calls == with_skip and len(with_skip) == 9  # EfficientNet-B0: 16 blocks, 9 with an identity skip


def test_the_held_gate_passes_all_relevance_to_the_gated_input() -> None:
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate = HeldGate()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gate(x, torch.sigmoid(x.sum(dim=1, keepdim=True)))

    model = Gated()
    x = torch.randn(2, 3, requires_grad=True)
    relevance = torch.randn(2, 3)
    rule = dict(base_layer_map())[HeldGate]
    composite = Composite(module_map=lambda ctx, name, module: rule if name == "gate" else None)
    with composite.context(model):
        (result,) = torch.autograd.grad(model(x), x, grad_outputs=relevance)
    torch.testing.assert_close(result, relevance)  # none went through the gate's own dependence on x
