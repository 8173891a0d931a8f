"""Layer-wise relevance propagation through zennit: composites and canonizers, registered by name.

A composite (which rule at which layer) and the canonizers of the model's family (which rewrite
the model into a form the rules are defined on: BatchNorm merged into the preceding conv,
residual sums as modules) are registered on the model for the duration of one call and removed
afterwards; zennit's canonizers swap parameter ``.data`` while registered and restore the
original tensors on removal, so the model that the randomizer edits in place between calls is
bit-identical afterwards.

The relevance put on the output is the target's one-hot times its logit ('logit': input
relevance sums to the logit where the rules conserve) or the one-hot ('one'). It is then
propagated by the same mechanism as every gradient method: zennit's rules are backward hooks,
so LRP is the input "gradient" of the hooked model (which is all ``zennit.attribution.Gradient``
does).

To add a composite or a family, register a factory in ``COMPOSITES`` or ``CANONIZERS``; nothing
else changes. Every composite starts from ``base_layer_map``: zennit's base map (activations and
BatchNorm pass relevance, sums and average pools use the ``Norm`` rule) plus the rules of the
modules our canonizers introduce (``canonizers.HeldGate``) and of efficientnet_pytorch's swish.

The paper's own composites: ``adaptive_beta`` (supplement A.2: the forward-pass-adaptive β rule at
convolutions, ε at dense layers; any model) and ``vgg_paper`` (§4.1: z^B at the first convolution,
γ decaying exponentially over the others, squared-activation pooling, LRP-0 at dense layers;
VGG only). Canonizers: zennit's for ResNet and VGG, ours (``canonizers``) for DenseNet-121 and
EfficientNet-B0, zennit's BatchNorm merging for any other model, where LRP is allowed only when
the model passes the conservation probe (``probes.conservation_probe``) at build time.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn
from zennit.canonizers import Canonizer, SequentialMergeBatchNorm
from zennit.composites import (
    EpsilonAlpha2Beta1,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    LayerMapComposite,
    layer_map_base,
)
from zennit.core import Composite, Hook
from zennit.rules import Epsilon, Gamma, Pass, ZBox
from zennit.torchvision import ResNetCanonizer, VGGCanonizer
from zennit.types import Convolution, Linear

from ..config.spec import LRPSpec
from ..models.bundle import ModelBundle
from .backward import AtInput, path_gradient
from .base import AttributionContext, AttributionMethod, MethodNotSupported, Passes, register_method
from .canonizers import DenseNetCanonizer, EfficientNetCanonizer, HeldGate
from .guided import ACTIVATIONS
from .lean_rules import lean
from .probes import conservation_probe
from .rules import BETA_FORMULAS, POOLING, AdaptiveAlphaBeta, HeldGatePass, SquaredPooling

Bounds = tuple[Tensor, Tensor]  # normalized images of black and white pixels (z^B rule)
CompositeFactory = Callable[[LRPSpec, Bounds, list[Canonizer]], Composite]
LayerMap = list[tuple[Any, Hook]]

COMPOSITES: dict[str, CompositeFactory] = {}
COMPOSITE_FAMILIES: dict[str, tuple[str, ...]] = {}  # composites defined for some model families only
CANONIZERS: dict[str, Callable[[], list[Canonizer]]] = {
    "resnet": lambda: [ResNetCanonizer()],
    "vgg": lambda: [VGGCanonizer()],
    "densenet": lambda: [DenseNetCanonizer()],
    "efficientnet": lambda: [EfficientNetCanonizer()],
    "generic": lambda: [SequentialMergeBatchNorm()],  # any model: BatchNorm merged into the layer before it
}


def register_composite(
    name: str, families: tuple[str, ...] | None = None
) -> Callable[[CompositeFactory], CompositeFactory]:
    """Register the factory of the composite an ``LRPSpec.composite`` of this name asks for.

    ``families``: the model families it is defined for (all when None).
    """

    def wrap(factory: CompositeFactory) -> CompositeFactory:
        COMPOSITES[name] = factory
        if families is not None:
            COMPOSITE_FAMILIES[name] = tuple(families)
        return factory

    return wrap


def canonical_layer_map() -> LayerMap:
    """Rules of the modules zennit's base map does not know: our canonizers' gate and
    efficientnet_pytorch's memory-efficient swish (relevance passes both)."""
    return [(HeldGate, HeldGatePass()), (ACTIVATIONS, Pass())]


def base_layer_map(stabilizer: float = 1e-6) -> LayerMap:
    """What every composite starts from: ``canonical_layer_map`` + zennit's ``layer_map_base``."""
    return canonical_layer_map() + layer_map_base(stabilizer)


@register_composite("epsilon")
def _epsilon(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """LRP-ε at every conv and dense layer."""
    return LayerMapComposite(base_layer_map() + [(Linear, Epsilon(epsilon=spec.epsilon))], canonizers=canonizers)


@register_composite("zplus")
def _zplus(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """z⁺ (α1β0) at convs, ε at dense layers."""
    return EpsilonPlus(epsilon=spec.epsilon, layer_map=canonical_layer_map(), canonizers=canonizers)


@register_composite("alpha2beta1")
def _alpha2beta1(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """α2β1 at convs, ε at dense layers."""
    return EpsilonAlpha2Beta1(epsilon=spec.epsilon, layer_map=canonical_layer_map(), canonizers=canonizers)


@register_composite("gamma")
def _gamma(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """γ at convs, ε at dense layers."""
    layer_map = base_layer_map() + [
        (Convolution, Gamma(gamma=spec.gamma)),
        (torch.nn.Linear, Epsilon(epsilon=spec.epsilon)),
    ]
    return LayerMapComposite(layer_map, canonizers=canonizers)


@register_composite("epsilon_plus_flat")
def _epsilon_plus_flat(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """Flat at the first layer, z⁺ at the other convs, ε at dense layers."""
    return EpsilonPlusFlat(epsilon=spec.epsilon, layer_map=canonical_layer_map(), canonizers=canonizers)


@register_composite("epsilon_gamma_box")
def _epsilon_gamma_box(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """z^B (the model's pixel bounds) at the first conv, γ at the other convs, ε at dense layers."""
    low, high = bounds
    return EpsilonGammaBox(
        low=low, high=high, epsilon=spec.epsilon, gamma=spec.gamma, layer_map=canonical_layer_map(),
        canonizers=canonizers,
    )


@register_composite("adaptive_beta")
def _adaptive_beta(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """Forward-pass-adaptive β at convs (supplement A.2), ε at dense layers (paper Fig. 7)."""
    beta = BETA_FORMULAS[spec.beta_formula](spec.beta_max)
    layer_map = base_layer_map() + [
        (Convolution, AdaptiveAlphaBeta(beta, stabilizer=spec.epsilon)),
        (torch.nn.Linear, Epsilon(epsilon=spec.epsilon)),
    ]
    return LayerMapComposite(layer_map, canonizers=canonizers)


def gamma_schedule(count: int, start: float, end: float) -> list[float]:
    """γᵢ = start·(end/start)^(i/(count−1)), i = 0..count−1: exponential decay from start to end."""
    if count < 1:
        return []
    if start <= 0 or end <= 0:
        raise ValueError(f"an exponential gamma decay needs positive ends, got gamma_start={start}, gamma_end={end}")
    if count == 1:
        return [float(start)]
    return [start * math.exp(math.log(end / start) * i / (count - 1)) for i in range(count)]


class VGGPaperComposite(Composite):
    """The LRP configuration of paper §4.1 (Fig. 4), for VGG-16.

    Convolutions in definition order c₀…c_{K−1} (K = 13 for VGG-16) get γᵢ of
    ``gamma_schedule(K, gamma_start, gamma_end)``: γᵢ = 1.0·(0.01/1.0)^(i/(K−1)) by default, except
    c₀, which gets the z^B rule with the model's pixel bounds (so γ₀ = 1.0 is listed but unused;
    the γ rule runs from γ₁ ≈ 0.68 at conv1_2 to γ₁₂ = 0.01 at conv5_3). Pooling layers (the five
    max pools and the adaptive average pool) redistribute in proportion to squared activations;
    dense layers get LRP-0 (zennit's ε rule with ``epsilon`` only as a stabiliser, 1e-6 by default);
    activations pass relevance.
    """

    def __init__(
        self, bounds: Bounds, gamma_start: float, gamma_end: float, epsilon: float, canonizers: list[Canonizer]
    ) -> None:
        self.bounds = bounds
        self.gamma_start, self.gamma_end, self.epsilon = gamma_start, gamma_end, epsilon
        self.gammas: dict[str, float] = {}
        self.first: str | None = None
        self.base = base_layer_map()
        super().__init__(module_map=self._module_map, canonizers=canonizers)

    def register(self, module: nn.Module) -> None:
        convolutions = [name for name, child in module.named_modules() if isinstance(child, Convolution)]
        self.gammas = dict(zip(convolutions, gamma_schedule(len(convolutions), self.gamma_start, self.gamma_end)))
        self.first = convolutions[0] if convolutions else None
        super().register(module)

    def _module_map(self, ctx: dict, name: str, module: nn.Module) -> Hook | None:
        if isinstance(module, Convolution):
            if name == self.first:
                low, high = self.bounds
                return ZBox(low=low, high=high)
            return Gamma(gamma=self.gammas[name])
        if isinstance(module, torch.nn.Linear):
            return Epsilon(epsilon=self.epsilon)
        if isinstance(module, POOLING):
            return SquaredPooling()
        return next((hook for types, hook in self.base if isinstance(module, types)), None)


@register_composite("vgg_paper", families=("vgg",))
def _vgg_paper(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """z^B first conv, γ decaying 1.0 → 0.01 over the convs, squared-activation pooling, LRP-0 dense (§4.1)."""
    return VGGPaperComposite(bounds, spec.gamma_start, spec.gamma_end, spec.epsilon, canonizers)


def check_supported(spec: LRPSpec, model: ModelBundle) -> None:
    """Raise ``MethodNotSupported`` unless the composite is registered and defined for the model's family."""
    if spec.composite not in COMPOSITES:
        raise MethodNotSupported(
            f"LRP composite '{spec.composite}' is not registered; available: {', '.join(sorted(COMPOSITES))}"
        )
    families = COMPOSITE_FAMILIES.get(spec.composite)
    if families is not None and model.family not in families:
        raise MethodNotSupported(
            f"LRP composite '{spec.composite}' is defined for model families {', '.join(families)} only "
            f"(its rules are tied to their layer sequence); {model.name} is of family '{model.family}'"
        )
    if model.family not in CANONIZERS:
        raise MethodNotSupported(
            f"LRP for {model.name} (family '{model.family}') needs canonizers; "
            f"LRP is available for families: {', '.join(sorted(CANONIZERS))}"
        )
    if not model.definition.builtin:
        report = conservation_probe(model, CANONIZERS[model.family]())
        if not report.passed:
            raise MethodNotSupported(
                f"LRP ({spec.method_id}) is refused for {model.name}: it fails the conservation probe, {report.explain()}. "
                "LRP needs a rule for each of them; gradient methods, Captum's and your own methods work on this model"
            )


def build_composite(spec: LRPSpec, model: ModelBundle, inputs: Tensor) -> Composite:
    """A fresh composite with fresh canonizers (zennit instances hold per-registration state), its
    rules attached lean (``lean_rules``: zennit's relevance without the discarded ordinary gradient
    and the passes on all-zero inputs)."""
    check_supported(spec, model)
    bounds = model.input_bounds(inputs[:1])  # [1,C,H,W]: zennit broadcasts it over the batch
    return lean(COMPOSITES[spec.composite](spec, bounds, CANONIZERS[model.family]()))


@register_method("lrp", LRPSpec)
class LRP(AttributionMethod):
    """LRP with the spec's composite and the model family's canonizers."""

    spec: LRPSpec

    @classmethod
    def build(cls, spec: LRPSpec, model: ModelBundle) -> "LRP":
        check_supported(spec, model)
        return cls(spec)

    def backward_rules(self, model: ModelBundle, inputs: Tensor) -> Composite:
        return build_composite(self.spec, model, inputs)

    def attribute(self, model: ModelBundle, inputs: Tensor, targets: Tensor, context: AttributionContext) -> Tensor:
        with self.rules_applied(model, inputs):
            return path_gradient(
                model.module, AtInput(inputs), targets, context.chunk_size, output=self.spec.output_relevance,
                reuse=context.reuse,
            )

    def passes(self) -> Passes:
        return Passes(1, 1)

    @property
    def recorded_graphs(self) -> int:
        """The graph, and each rule node's modified passes kept for the replays (``lean_rules.memoizing``)."""
        return 2
