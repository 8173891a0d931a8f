"""Gradient, gradient×input, integrated gradients and SmoothGrad: one ``path_gradient`` each.

Gradient and gradient×input read the same input gradient from the context's cache, so a stage
that asks for both pays one forward and one backward pass. That pass's forward is the plain
forward of the state's model at the inputs: its logits are kept too (``PASS_LOGITS``), so a
state whose experiments need only its logits needs no forward pass of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config.spec import GradientInputSpec, GradientSpec, IntegratedGradientsSpec, SmoothGradSpec
from ..models.bundle import ModelBundle
from .backward import AtInput, path_gradient
from .base import AttributionContext, AttributionMethod, MethodNotSupported, Passes, register_method
from .paths import GaussianCloud, StraightLine
from .quadrature import quadrature

INPUT_GRADIENT = "input_gradient"
PASS_LOGITS = "pass_logits"  # context.cache: PassLogits of the plain gradient pass at the inputs


@dataclass
class _CachedGradient:
    inputs: Tensor
    targets: Tensor
    gradient: Tensor


@dataclass
class PassLogits:
    inputs: Tensor
    logits: Tensor  # [N, classes]


def input_gradient(model: ModelBundle, inputs: Tensor, targets: Tensor, context: AttributionContext) -> Tensor:
    """∇ₓ f_target(x), computed once per context for the same inputs and targets."""
    entry = context.cache.get(INPUT_GRADIENT)
    if entry is not None and entry.inputs is inputs and torch.equal(entry.targets, targets.to(entry.targets.device)):
        return entry.gradient
    tiles: list[Tensor] = []
    gradient = path_gradient(model.module, AtInput(inputs), targets, context.chunk_size, reuse=context.reuse, logits=tiles)
    context.cache[INPUT_GRADIENT] = _CachedGradient(inputs, targets.detach().clone(), gradient)
    context.cache[PASS_LOGITS] = PassLogits(inputs, torch.cat(tiles))
    return gradient


@register_method("gradient", GradientSpec)
class Gradient(AttributionMethod):
    """∂f_target/∂x (Captum's ``Saliency(abs=False)``)."""

    def attribute(self, model: ModelBundle, inputs: Tensor, targets: Tensor, context: AttributionContext) -> Tensor:
        return input_gradient(model, inputs, targets, context).clone()  # callers may edit their map in place

    def passes(self) -> Passes:
        return Passes(1, 1, shared=INPUT_GRADIENT)


@register_method("gradient_x_input", GradientInputSpec)
class GradientXInput(AttributionMethod):
    """x ⊙ ∂f_target/∂x."""

    def attribute(self, model: ModelBundle, inputs: Tensor, targets: Tensor, context: AttributionContext) -> Tensor:
        return input_gradient(model, inputs, targets, context) * inputs

    def passes(self) -> Passes:
        return Passes(1, 1, shared=INPUT_GRADIENT)


@register_method("integrated_gradients", IntegratedGradientsSpec)
class IntegratedGradients(AttributionMethod):
    """(x − 0) ⊙ Σₖ wₖ ∇f(αₖ x): the path integral from the zero baseline by the spec's quadrature."""

    spec: IntegratedGradientsSpec

    @classmethod
    def build(cls, spec: IntegratedGradientsSpec, model: ModelBundle) -> "IntegratedGradients":
        try:
            quadrature(spec.rule, spec.steps)
        except ValueError as error:
            raise MethodNotSupported(f"integrated_gradients: {error}") from None
        return cls(spec)

    def attribute(self, model: ModelBundle, inputs: Tensor, targets: Tensor, context: AttributionContext) -> Tensor:
        path = StraightLine(inputs, self.spec.rule, self.spec.steps)
        return path_gradient(model.module, path, targets, context.chunk_size) * inputs

    def passes(self) -> Passes:
        return Passes(self.spec.steps, self.spec.steps)


@register_method("smoothgrad", SmoothGradSpec)
class SmoothGrad(AttributionMethod):
    """Mean gradient over ``samples`` Gaussian perturbations of x (Smilkov et al. 2017).

    The noise depends on the image key and the spec's seed only, not on the run seed or stage: every
    stage sees the same perturbations (common random numbers), so stage-to-stage differences come
    from the model, and the stage-0 map is the same for every run seed.
    """

    spec: SmoothGradSpec

    def attribute(self, model: ModelBundle, inputs: Tensor, targets: Tensor, context: AttributionContext) -> Tensor:
        context.check_batch(inputs)
        spec = self.spec
        path = GaussianCloud(inputs, context.image_keys, spec.samples, spec.noise_level, spec.seed)
        return path_gradient(model.module, path, targets, context.chunk_size)

    def passes(self) -> Passes:
        return Passes(self.spec.samples, self.spec.samples)
