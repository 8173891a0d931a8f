"""Guided backpropagation (Springenberg et al. 2015) as a zennit composite.

The guided rule lets only positive gradient signal pass an activation: the gradient that leaves
an activation module towards its input is clamped at zero, ``max(0, σ'(z)·g)``. On ReLU this is
``max(0, g)·[z > 0]``, identical to Captum's ``GuidedBackprop`` and zennit's ``ReLUGuidedBackprop``.

Swish (EfficientNet; ``nn.SiLU`` or efficientnet_pytorch's ``MemoryEfficientSwish``) gets the same
rule: ``max(0, swish'(z)·g)``. Where swish'(z) < 0 (z < −1.28) a positive g is blocked like a
negative one. The rule acts on activation *modules* only: EfficientNet's squeeze-excitation gate
(a functional sigmoid) and any functional activation keep their plain gradient. On a model
other than the paper's five, a build-time probe refuses guided backprop when the model calls
activation functions outside modules (``probes.functional_activations``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from zennit.composites import LayerMapComposite
from zennit.core import Hook
from zennit.types import Activation

from ..config.spec import GuidedBackpropSpec
from ..models.bundle import ModelBundle
from .backward import AtInput, path_gradient
from .base import AttributionContext, AttributionMethod, MethodNotSupported, Passes, register_method
from .lean_rules import lean
from .probes import describe_calls, functional_activations


def _activation_types() -> tuple[type, ...]:
    """zennit's activation modules (ReLU, SiLU = efficientnet_pytorch's Swish, GELU, …) less
    ``MultiheadAttention``, which zennit files under activations but is not element-wise, plus
    efficientnet_pytorch's memory-efficient swish."""
    types: list[Any] = [kind for kind in Activation.__dict__["__subclass__"] if kind is not nn.MultiheadAttention]
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
    reuse their ReLU) is handled correctly. At a ReLU it is attached lean (``lean_rules``): the
    ReLU's own backward, ``[x > 0]·g``, and the clamp in one node, without zennit's identity and
    input copy around every activation; other activations keep zennit's attachment.
    """

    def backward(self, module: nn.Module, grad_input: tuple[Tensor, ...], grad_output: Any) -> tuple[Tensor, ...]:
        return (grad_input[0].clamp(min=0),)

    def lean_supports(self, module: nn.Module) -> bool:
        return type(module) is nn.ReLU

    def lean_backward(self, module: nn.Module, inputs: tuple[Tensor, ...], relevance: Tensor) -> tuple[Tensor]:
        """What autograd's ReLU backward gives (``threshold_backward``; x > 0 exactly where ReLU(x) > 0), clamped."""
        return (torch.ops.aten.threshold_backward(relevance, inputs[0], 0).clamp(min=0),)


def guided_composite() -> LayerMapComposite:
    return lean(LayerMapComposite(layer_map=[(ACTIVATIONS, ClampedGradient())]))


def check_activation_modules(method: str, model: ModelBundle) -> None:
    """Refuse a hook-based guided rule where it would silently be the plain gradient: (a model we do
    not know) one calling activation functions outside activation modules, or a model without any."""
    calls = [] if model.definition.builtin else functional_activations(model, ACTIVATIONS)
    if calls:
        raise MethodNotSupported(
            f"{method}: {model.name} calls activation functions outside activation modules, where the guided rule "
            f"cannot reach them (they would get the plain gradient): {describe_calls(calls)}. Use activation "
            "modules (nn.ReLU(), as torchvision's ResNet does), or leave this method out"
        )
    if not any(isinstance(layer, ACTIVATIONS) for layer in model.module.modules()):
        raise MethodNotSupported(
            f"{method}: {model.name} has no activation modules (functional activations cannot be "
            "hooked); guided backprop would silently equal the gradient"
        )


@register_method("guided_backprop", GuidedBackpropSpec)
class GuidedBackprop(AttributionMethod):
    """Gradient of the target logit with the guided rule at every activation module."""

    @classmethod
    def build(cls, spec: Any, model: ModelBundle) -> "GuidedBackprop":
        check_activation_modules("guided_backprop", model)
        return cls(spec)

    def backward_rules(self, model: ModelBundle, inputs: Tensor) -> LayerMapComposite:
        return guided_composite()

    def attribute(self, model: ModelBundle, inputs: Tensor, targets: Tensor, context: AttributionContext) -> Tensor:
        with self.rules_applied(model, inputs):
            return path_gradient(model.module, AtInput(inputs), targets, context.chunk_size, reuse=context.reuse)

    def passes(self) -> Passes:
        return Passes(1, 1)
