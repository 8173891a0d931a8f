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
else changes. Not registered yet (a later issue, the paper's own methods): the VGG composite of
section 4.1, the adaptive-β rule, and canonizers for DenseNet-121 and EfficientNet-B0.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from zennit.canonizers import Canonizer
from zennit.composites import (
    EpsilonAlpha2Beta1,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    LayerMapComposite,
    layer_map_base,
)
from zennit.core import Composite
from zennit.rules import Epsilon, Gamma
from zennit.torchvision import ResNetCanonizer, VGGCanonizer
from zennit.types import Convolution, Linear

from ..config.spec import LRPSpec
from ..models.bundle import ModelBundle
from .backward import AtInput, path_gradient
from .base import AttributionContext, AttributionMethod, MethodNotSupported, Passes, register_method

PENDING = "(issue: paper's own methods)"

Bounds = tuple[Tensor, Tensor]  # normalized images of black and white pixels (z^B rule)
CompositeFactory = Callable[[LRPSpec, Bounds, list[Canonizer]], Composite]

COMPOSITES: dict[str, CompositeFactory] = {}
CANONIZERS: dict[str, Callable[[], list[Canonizer]]] = {
    "resnet": lambda: [ResNetCanonizer()],
    "vgg": lambda: [VGGCanonizer()],
}


def register_composite(name: str) -> Callable[[CompositeFactory], CompositeFactory]:
    """Register the factory of the composite an ``LRPSpec.composite`` of this name asks for."""

    def wrap(factory: CompositeFactory) -> CompositeFactory:
        COMPOSITES[name] = factory
        return factory

    return wrap


@register_composite("epsilon")
def _epsilon(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """LRP-ε at every conv and dense layer."""
    return LayerMapComposite(layer_map_base() + [(Linear, Epsilon(epsilon=spec.epsilon))], canonizers=canonizers)


@register_composite("zplus")
def _zplus(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """z⁺ (α1β0) at convs, ε at dense layers."""
    return EpsilonPlus(epsilon=spec.epsilon, canonizers=canonizers)


@register_composite("alpha2beta1")
def _alpha2beta1(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """α2β1 at convs, ε at dense layers."""
    return EpsilonAlpha2Beta1(epsilon=spec.epsilon, canonizers=canonizers)


@register_composite("gamma")
def _gamma(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """γ at convs, ε at dense layers."""
    layer_map = layer_map_base() + [
        (Convolution, Gamma(gamma=spec.gamma)),
        (torch.nn.Linear, Epsilon(epsilon=spec.epsilon)),
    ]
    return LayerMapComposite(layer_map, canonizers=canonizers)


@register_composite("epsilon_plus_flat")
def _epsilon_plus_flat(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """Flat at the first layer, z⁺ at the other convs, ε at dense layers."""
    return EpsilonPlusFlat(epsilon=spec.epsilon, canonizers=canonizers)


@register_composite("epsilon_gamma_box")
def _epsilon_gamma_box(spec: LRPSpec, bounds: Bounds, canonizers: list[Canonizer]) -> Composite:
    """z^B (the model's pixel bounds) at the first conv, γ at the other convs, ε at dense layers."""
    low, high = bounds
    return EpsilonGammaBox(low=low, high=high, epsilon=spec.epsilon, gamma=spec.gamma, canonizers=canonizers)


def check_supported(spec: LRPSpec, model: ModelBundle) -> None:
    """Raise ``MethodNotSupported`` unless both the composite and the model's family are registered."""
    if spec.composite not in COMPOSITES:
        raise MethodNotSupported(
            f"LRP composite '{spec.composite}' is not implemented yet {PENDING}; "
            f"available: {', '.join(sorted(COMPOSITES))}"
        )
    if model.family not in CANONIZERS:
        raise MethodNotSupported(
            f"LRP for {model.name} (family '{model.family}') needs canonizers that are not implemented yet "
            f"{PENDING}; LRP is available for families: {', '.join(sorted(CANONIZERS))}"
        )


def build_composite(spec: LRPSpec, model: ModelBundle, inputs: Tensor) -> Composite:
    """A fresh composite with fresh canonizers (zennit instances hold per-registration state)."""
    check_supported(spec, model)
    bounds = model.input_bounds(inputs[:1])  # [1,C,H,W]: zennit broadcasts it over the batch
    return COMPOSITES[spec.composite](spec, bounds, CANONIZERS[model.family]())


@register_method("lrp")
class LRP(AttributionMethod):
    """LRP with the spec's composite and the model family's canonizers."""

    spec: LRPSpec

    @classmethod
    def build(cls, spec: LRPSpec, model: ModelBundle) -> "LRP":
        check_supported(spec, model)
        return cls(spec)

    def attribute(self, model: ModelBundle, inputs: Tensor, targets: Tensor, context: AttributionContext) -> Tensor:
        composite = build_composite(self.spec, model, inputs)
        with composite.context(model.module):
            return path_gradient(
                model.module, AtInput(inputs), targets, context.chunk_size, output=self.spec.output_relevance
            )

    def passes(self) -> Passes:
        return Passes(1, 1)
