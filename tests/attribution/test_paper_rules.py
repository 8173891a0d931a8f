"""The paper's own rules and composites: adaptive β (supplement A.2), squared-activation pooling and
the VGG-16 composite of §4.1, checked against zennit and against direct computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from zennit.composites import EpsilonAlpha2Beta1, NameMapComposite
from zennit.rules import AlphaBeta, Epsilon, Gamma, Pass, ZBox
from zennit.torchvision import VGGCanonizer

from .attribution_models import VGGLike, keys, make_bundle, make_inputs, make_targets, seeded, zennit_relevance
from benchmark.attribution import AttributionContext, MethodNotSupported, build_method
from benchmark.attribution.lrp import COMPOSITES, VGGPaperComposite, gamma_schedule
from benchmark.attribution.rules import (
    AdaptiveAlphaBeta,
    ConstantBeta,
    PrintedBeta,
    RatioBeta,
    SquaredPooling,
)
from benchmark.config.spec import LRPSpec

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


def layer_relevance(rule, layer: nn.Module, x: torch.Tensor, relevance: torch.Tensor):
    """Input relevance of one hooked layer for output relevance ``relevance``; and the rule's last β."""
    hook = rule.copy()
    handles = hook.register(layer)
    try:
        x = x.clone().requires_grad_(True)
        (result,) = torch.autograd.grad(layer(x), x, grad_outputs=relevance)
        return result, hook.stored_tensors.get("beta")
    finally:
        handles.remove()


def contributions(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """z[n, j, i] = x[n, i] w[j, i]."""
    return x[:, None, :] * layer.weight[None]


@pytest.fixture
def linear() -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    layer = nn.Linear(7, 5)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(5, 7, generator=generator))
        layer.bias.copy_(torch.randn(5, generator=generator))
    x = torch.randn(4, 7, generator=generator)
    relevance = torch.randn(4, 5, generator=generator)
    return layer, x, relevance


# ------------------------------------------------------------------------------------------
# β formulas
# ------------------------------------------------------------------------------------------


def test_ratio_beta_is_n_over_p_minus_n_capped_and_the_cap_where_p_le_n() -> None:
    p = torch.tensor([4.0, 4.0, 1.0, 2.0, 0.0, 3.0])
    n = torch.tensor([1.0, 3.5, 1.0, 5.0, 0.0, 0.0])
    beta = RatioBeta(3.0)(p, n)
    torch.testing.assert_close(beta, torch.tensor([1 / 3, 3.0, 3.0, 3.0, 3.0, 0.0]))  # 3.5/0.5 = 7 → cap
    ok = p > n
    torch.testing.assert_close((beta / (1 + beta))[ok][:1], (n / p)[ok][:1])  # eq. (1): β/(1+β) = n/p
    assert RatioBeta(1.5)(torch.tensor([4.0]), torch.tensor([3.5])).item() == 1.5


def test_printed_beta_is_n_over_p_plus_n() -> None:
    p = torch.tensor([4.0, 1.0, 0.0])
    n = torch.tensor([1.0, 3.0, 0.0])
    torch.testing.assert_close(PrintedBeta(3.0)(p, n), torch.tensor([0.2, 0.75, 0.0]))


# ------------------------------------------------------------------------------------------
# The adaptive rule on single layers
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.5])
def test_constant_beta_equals_zennits_alpha_beta(linear, beta: float) -> None:
    layer, x, relevance = linear
    ours, _ = layer_relevance(AdaptiveAlphaBeta(ConstantBeta(beta)), layer, x, relevance)
    # the paper's rule divides by the neurons' input mass without bias (supplement eq. 52)
    expected, _ = layer_relevance(AlphaBeta(1 + beta, beta, zero_params="bias"), layer, x, relevance)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    bias_free = nn.Linear(7, 5, bias=False)
    with torch.no_grad():
        bias_free.weight.copy_(layer.weight)
    ours, _ = layer_relevance(AdaptiveAlphaBeta(ConstantBeta(beta)), bias_free, x, relevance)
    expected, _ = layer_relevance(AlphaBeta(1 + beta, beta), bias_free, x, relevance)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("formula", [RatioBeta(3.0), PrintedBeta(3.0)], ids=repr)
def test_per_neuron_beta_and_relevance_match_a_direct_computation(linear, formula) -> None:
    layer, x, relevance = linear
    ours, beta = layer_relevance(AdaptiveAlphaBeta(formula, keep_beta=True), layer, x, relevance)
    z = contributions(layer, x).double()  # [n, j, i]
    p = z.clamp(min=0).sum(-1)
    n = -z.clamp(max=0).sum(-1)
    expected_beta = torch.empty_like(p)
    for sample in range(p.shape[0]):  # the formulas of DESIGN §4, one neuron at a time
        for j in range(p.shape[1]):
            pj, nj = p[sample, j].item(), n[sample, j].item()
            if isinstance(formula, RatioBeta):
                value = 3.0 if pj <= nj else min(nj / (pj - nj), 3.0)
            else:
                value = min(nj / (pj + nj), 3.0)
            expected_beta[sample, j] = value
    torch.testing.assert_close(beta.double(), expected_beta, rtol=1e-5, atol=1e-6)
    alpha = 1 + expected_beta
    r = relevance.double()[:, :, None]
    safe_p = torch.where(p > 0, p, torch.ones_like(p))[:, :, None]  # a neuron without positive input passes none
    safe_n = torch.where(n > 0, n, torch.ones_like(n))[:, :, None]
    expected = (
        alpha[:, :, None] * z.clamp(min=0) / safe_p * r - expected_beta[:, :, None] * z.clamp(max=0) / (-safe_n) * r
    ).sum(1)  # supplement eq. (52)
    torch.testing.assert_close(ours.double(), expected, rtol=1e-4, atol=1e-5)
    if isinstance(formula, RatioBeta):
        assert 0 < (expected_beta < 3).sum() < expected_beta.numel()  # both branches occur
    else:
        assert (expected_beta <= 1).all()  # why DESIGN §4 reads eq. (2) as a misprint: the cap never acts


def test_per_neuron_beta_of_a_convolution_is_per_channel_and_position() -> None:
    generator = torch.Generator().manual_seed(5)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
    x = torch.randn(2, 2, 5, 5, generator=generator)
    _, beta = layer_relevance(AdaptiveAlphaBeta(RatioBeta(3.0), keep_beta=True), conv, x, torch.ones(2, 3, 5, 5))
    assert beta.shape == (2, 3, 5, 5)
    patches = torch.nn.functional.unfold(x, 3, padding=1)  # [n, 2*9, 25]
    z = patches[:, None] * conv.weight.view(1, 3, 18, 1)  # [n, 3, 18, 25]
    p, n = z.clamp(min=0).sum(2), -z.clamp(max=0).sum(2)
    safe = torch.where(p > n, p - n, torch.ones_like(p))
    ratio = torch.where(p > n, n / safe, torch.full_like(p, 3.0)).clamp(max=3.0)
    torch.testing.assert_close(beta, ratio.view(2, 3, 5, 5), rtol=1e-5, atol=1e-6)


def test_relevance_is_conserved_on_a_bias_free_layer(linear) -> None:
    """Exactly, up to the stabiliser (here 1e-12, float64): α − β = 1 for every neuron."""
    layer, x, _ = linear
    layer, x = layer.double(), x.double()
    bias_free = nn.Linear(7, 5, bias=False).double()
    with torch.no_grad():
        bias_free.weight.copy_(layer.weight)
    rule = AdaptiveAlphaBeta(RatioBeta(3.0), stabilizer=1e-12)
    relevance = bias_free(x).detach()
    ours, _ = layer_relevance(rule, bias_free, x, relevance)
    torch.testing.assert_close(ours.sum(1), relevance.sum(1), rtol=1e-10, atol=1e-10)
    # per neuron too, so also with a bias (the rule's denominators leave the bias out)
    ours, _ = layer_relevance(rule, layer, x, relevance)
    torch.testing.assert_close(ours.sum(1), relevance.sum(1), rtol=1e-10, atol=1e-10)


def test_adaptive_composite_with_constant_beta_equals_zennits_alpha2beta1(bias_free, monkeypatch) -> None:
    from benchmark.attribution import lrp as lrp_module

    monkeypatch.setitem(lrp_module.BETA_FORMULAS, "ratio", lambda beta_max: ConstantBeta(1.0))
    inputs, targets = make_inputs(bias_free), make_targets()
    spec = LRPSpec(name="lrp", composite="adaptive_beta", epsilon=1e-6)
    ours = build_method(spec, bias_free).attribute(bias_free, inputs, targets, AttributionContext(keys(3)))
    composite = EpsilonAlpha2Beta1(epsilon=1e-6, canonizers=[VGGCanonizer()])
    expected = zennit_relevance(bias_free, composite, inputs, targets)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


# ------------------------------------------------------------------------------------------
# Squared-activation pooling
# ------------------------------------------------------------------------------------------


def squared_by_hand(x: torch.Tensor, relevance: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """Rᵢ = Σⱼ∋ᵢ xᵢ² / Σₖ∈window(j) xₖ² · Rⱼ, one window at a time."""
    n, c, h, w = x.shape
    result = torch.zeros_like(x, dtype=torch.float64)
    out_h, out_w = relevance.shape[-2:]
    for b in range(n):
        for ch in range(c):
            for oy in range(out_h):
                for ox in range(out_w):
                    rows = [r for r in range(oy * stride - padding, oy * stride - padding + kernel) if 0 <= r < h]
                    cols = [q for q in range(ox * stride - padding, ox * stride - padding + kernel) if 0 <= q < w]
                    window = x[b, ch][rows][:, cols].double() ** 2
                    share = window / window.sum()
                    for a, r in enumerate(rows):
                        for d, q in enumerate(cols):
                            result[b, ch, r, q] += share[a, d] * relevance[b, ch, oy, ox].double()
    return result


@pytest.mark.parametrize(
    "pool, kernel, stride, padding",
    [
        (nn.MaxPool2d(2), 2, 2, 0),
        (nn.MaxPool2d(3, 2, padding=1), 3, 2, 1),  # overlapping windows, as in ResNet's stem
        (nn.AvgPool2d(2), 2, 2, 0),
    ],
    ids=["max2", "max3s2p1", "avg2"],
)
def test_squared_pooling_equals_a_hand_computation(pool, kernel: int, stride: int, padding: int) -> None:
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(2, 2, 6, 6, generator=generator)
    out_shape = pool(x).shape
    relevance = torch.randn(out_shape, generator=generator)
    ours, _ = layer_relevance(SquaredPooling(stabilizer=1e-12), pool, x, relevance)
    expected = squared_by_hand(x, relevance, kernel, stride, padding)
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.sum(), relevance.sum(), rtol=1e-5, atol=1e-5)  # conserves


def test_squared_pooling_on_adaptive_average_pooling_conserves_and_spreads_by_squares() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 0.0]]]])
    pool = nn.AdaptiveAvgPool2d(1)
    ours, _ = layer_relevance(SquaredPooling(stabilizer=1e-12), pool, x, torch.tensor([[[[14.0]]]]))
    torch.testing.assert_close(ours, torch.tensor([[[[1.0, 4.0], [9.0, 0.0]]]]))
    up = nn.AdaptiveAvgPool2d(3)  # VGG's 7×7 pool on a smaller map replicates inputs: relevance flows back
    ours, _ = layer_relevance(SquaredPooling(), up, torch.ones(1, 1, 1, 1), torch.ones(1, 1, 3, 3))
    torch.testing.assert_close(ours, torch.full((1, 1, 1, 1), 9.0))


# ------------------------------------------------------------------------------------------
# The VGG composite of §4.1
# ------------------------------------------------------------------------------------------


def test_gamma_decays_exponentially_from_one_to_one_hundredth_over_thirteen_convolutions() -> None:
    gammas = gamma_schedule(13, 1.0, 0.01)
    assert gammas[0] == 1.0 and math.isclose(gammas[-1], 0.01)
    assert all(math.isclose(gammas[i], 0.01 ** (i / 12)) for i in range(13))
    with pytest.raises(ValueError, match="positive"):
        gamma_schedule(13, 1.0, 0.0)


def test_vgg16_rules_by_layer() -> None:
    import torchvision

    vgg = torchvision.models.vgg16(weights=None)
    bounds = (torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32))
    composite = VGGPaperComposite(bounds, 1.0, 0.01, 1e-6, canonizers=[])
    rules: dict[str, object] = {}
    composite.module_map = (lambda base: lambda ctx, name, module: rules.setdefault(name, base(ctx, name, module)))(
        composite.module_map
    )
    composite.register(vgg)
    composite.remove()
    convs = [name for name, m in vgg.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and isinstance(rules[convs[0]], ZBox)
    assert all(isinstance(rules[name], Gamma) for name in convs[1:])
    assert composite.gammas[convs[1]] == pytest.approx(0.01 ** (1 / 12))
    assert composite.gammas[convs[-1]] == pytest.approx(0.01)
    pools = [name for name, m in vgg.named_modules() if isinstance(m, (nn.MaxPool2d, nn.AdaptiveAvgPool2d))]
    assert len(pools) == 6 and all(isinstance(rules[name], SquaredPooling) for name in pools)
    linears = [name for name, m in vgg.named_modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3 and all(isinstance(rules[name], Epsilon) for name in linears)
    assert all(isinstance(rules[name], Pass) for name, m in vgg.named_modules() if isinstance(m, nn.ReLU))


def test_vgg_paper_equals_the_same_rules_assigned_by_name_in_zennit() -> None:
    model = make_bundle(seeded(lambda: VGGLike(batch_norm=False)), "vgg", "vgg-like")
    inputs, targets = make_inputs(model), make_targets()
    spec = LRPSpec(name="lrp", composite="vgg_paper")
    ours = build_method(spec, model).attribute(model, inputs, targets, AttributionContext(keys(3)))
    low, high = model.input_bounds(inputs)
    gammas = gamma_schedule(3, 1.0, 0.01)
    name_map = [
        (["features.0"], ZBox(low=low, high=high)),
        (["features.3"], Gamma(gamma=gammas[1])),
        (["features.6"], Gamma(gamma=gammas[2])),
        (["features.2", "features.5", "avgpool"], SquaredPooling()),
        (["classifier.0", "classifier.3"], Epsilon(epsilon=1e-6)),
        (["features.1", "features.4", "features.7", "classifier.1"], Pass()),
    ]
    expected = zennit_relevance(model, NameMapComposite(name_map, canonizers=[VGGCanonizer()]), inputs, targets)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_vgg_paper_is_refused_for_other_families(resnet18) -> None:
    assert "vgg_paper" in COMPOSITES
    with pytest.raises(MethodNotSupported, match=r"'vgg_paper' is defined for model families vgg only"):
        build_method(LRPSpec(name="lrp", composite="vgg_paper"), resnet18)
    with pytest.raises(ValueError, match="gamma_start and gamma_end must be positive"):
        LRPSpec(name="lrp", composite="vgg_paper", gamma_end=0.0)


# ------------------------------------------------------------------------------------------
# Adaptive β at neurons without positive input
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("formula", [RatioBeta(3.0), PrintedBeta(3.0), ConstantBeta(1.0)], ids=repr)
def test_a_neuron_without_positive_input_passes_its_relevance_by_lrp_0(formula) -> None:
    """p = 0 < n: LRP-αβ would send −β·R back (−3R under the ratio formula's cap); the rule uses LRP-0
    there, Rᵢ = zᵢ / Σz · R, which conserves and keeps the sign. Neurons with positive input are unchanged."""
    layer = nn.Linear(3, 2, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-1.0, -2.0, 0.5], [1.0, -1.0, 2.0]]))
    x = torch.tensor([[1.0, 2.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)  # image 0, neuron 0: z = (-1, -4, 0)
    relevance = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    ours, _ = layer_relevance(AdaptiveAlphaBeta(formula, stabilizer=1e-12), layer, x, relevance)
    torch.testing.assert_close(ours[0], torch.tensor([0.4, 1.6, 0.0], dtype=torch.float64))  # (-1, -4, 0) / -5 · 2
    z = x[1] * layer.weight[1]  # (1, -1, 2): p = 3, n = 1, an ordinary neuron
    beta = formula(torch.tensor([3.0]), torch.tensor([1.0])).double()
    expected = (1 + beta) * z.clamp(min=0) / 3 + beta * z.clamp(max=0) / 1
    torch.testing.assert_close(ours[1], expected)
    torch.testing.assert_close(ours.sum(1), relevance.sum(1))


@pytest.mark.parametrize("name", ["efficientnet-b0", "densenet121"])
def test_adaptive_beta_conserves_the_logit_on_he_initialized_efficientnet_and_densenet(name: str) -> None:
    """Untrained, He-normal weights as the randomizer draws them (biases zero, BatchNorm statistics
    random), 32-px inputs. EfficientNet's swish lets negative activations reach depthwise convs, so some
    neurons have no positive input: before the LRP-0 fallback Σ input relevance / logit was -0.47 and
    0.81 here. What remains is float32 and the 1e-12 stabiliser; at the default 1e-6 neurons of tiny
    input mass lose ~0.5 % (DenseNet, a ReLU network, loses nothing either way)."""
    from benchmark.models.randomization import Randomizer, randomizable_layers

    from .attribution_models import registry_bundle

    model = registry_bundle(name)
    Randomizer(model.module).randomize([layer.name for layer in randomizable_layers(model.module, False)], seed=0)
    inputs, targets = make_inputs(model, n=2), make_targets(2)
    spec = LRPSpec(name="lrp", composite="adaptive_beta", epsilon=1e-12, output_relevance="logit")
    relevance = build_method(spec, model).attribute(model, inputs, targets, AttributionContext(keys(2)))
    with torch.no_grad():
        logits = model.module(inputs)[torch.arange(2), targets]
    assert logits.abs().min() > 0.1
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)) / logits, torch.ones(2), rtol=0, atol=1e-3)
