"""Guided backpropagation (Springenberg et al. 2015) as a zennit composite.

The guided rule lets only positive gradient signal pass an activation: the gradient that leaves
an activation module towards its input is clamped at zero, ``max(0, σ'(z)·g)``. On ReLU this is
``max(0, g)·[z > 0]``, identical to Captum's ``GuidedBackprop`` and zennit's ``ReLUGuidedBackprop``.

Swish (EfficientNet; ``nn.SiLU`` or efficientnet_pytorch's ``MemoryEfficientSwish``) gets the same
rule: ``max(0, swish'(z)·g)``. Where swish'(z) < 0 (z < −1.28) a positive g is blocked like a
negative one. The rule acts on activation *modules* only: EfficientNet's squeeze-excitation gate
(a functional sigmoid) and any functional activation keep their plain gradient.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from zennit.composites import LayerMapComposite
from zennit.core import Hook
from zennit.types import Activation

from ..models.bundle import ModelBundle
from .backward import AtInput, path_gradient
from .base import AttributionContext, AttributionMethod, MethodNotSupported, Passes, register_method


def _activation_types() -> tuple[type, ...]:
    types: list[Any] = [Activation]  # zennit's activations: ReLU, SiLU (= efficientnet_pytorch's Swish), ...
    try:
        from efficientnet_pytorch.utils import MemoryEfficientSwish

        types.append(MemoryEfficientSwish)
    except ImportError:  # pragma: no cover - efficientnet_pytorch is a dependency
        pass
    return tuple(types)


ACTIVATIONS = _activation_types()


class ClampedGradient(Hook):
    """The guided rule: the gradient to the activation's input, negative parts set to zero.

    Needs no stored forward state, so one module used several times (torchvision ResNet blocks
    reuse their ReLU) is handled correctly.
    """

    def backward(self, module: nn.Module, grad_input: tuple[Tensor, ...], grad_output: Any) -> tuple[Tensor, ...]:
        return (grad_input[0].clamp(min=0),)


def guided_composite() -> LayerMapComposite:
    return LayerMapComposite(layer_map=[(ACTIVATIONS, ClampedGradient())])


@register_method("guided_backprop")
class GuidedBackprop(AttributionMethod):
    """Gradient of the target logit with the guided rule at every activation module."""

    @classmethod
    def build(cls, spec: Any, model: ModelBundle) -> "GuidedBackprop":
        if not any(isinstance(layer, ACTIVATIONS) for layer in model.module.modules()):
            raise MethodNotSupported(
                f"guided_backprop: {model.name} has no activation modules (functional activations cannot be "
                "hooked); guided backprop would silently equal the gradient"
            )
        return cls(spec)

    def backward_rules(self, model: ModelBundle, inputs: Tensor) -> LayerMapComposite:
        return guided_composite()

    def attribute(self, model: ModelBundle, inputs: Tensor, targets: Tensor, context: AttributionContext) -> Tensor:
        with self.rules_applied(model, inputs):
            return path_gradient(model.module, AtInput(inputs), targets, context.chunk_size)

    def passes(self) -> Passes:
        return Passes(1, 1)
