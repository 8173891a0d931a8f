"""The paper's own LRP rules, as zennit hooks.

- ``AdaptiveAlphaBeta``: the forward-pass-adaptive β rule of supplement A.2, α and β chosen per
  output neuron (per output channel and position of a convolution) from the neuron's own input
  contributions. How β follows from them is a small object of its own (``BetaFormula``):
  ``RatioBeta`` (supplement eq. 1 solved for β; DESIGN §4), ``PrintedBeta`` (the printed eq. 2),
  ``ConstantBeta`` (plain LRP-αβ, for comparison and tests).
- ``SquaredPooling``: pooling layers redistribute relevance in proportion to the squared
  activations of each window (paper §4.1, the VGG-16 experiment of Fig. 4).
- ``HeldGatePass``: relevance passes a multiplication by a gate that is held constant (the
  squeeze-excitation gate of EfficientNet after canonization) unchanged to the gated input.
- ``SelectedSum``: the ``Norm`` rule of a residual ``Sum`` that keeps the relevance of one summand
  only, to split an explanation into its skip and residual parts (paper §4.2, Fig. 7).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from zennit.core import BasicHook, Hook, Stabilizer
from zennit.rules import ClampMod, NoMod, zero_bias
from zennit.types import AvgPool, MaxPool

StabilizerLike = float | Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------------------------
# Forward-pass-adaptive β (supplement A.2)
# --------------------------------------------------------------------------------------------


class BetaFormula(ABC):
    """β per output neuron from its positive and negative input mass.

    ``positive`` is p = Σᵢ (wᵢxᵢ)₊ ≥ 0 and ``negative`` is n = −Σᵢ (wᵢxᵢ)₋ ≥ 0, both shaped like the
    layer's output; the result has that shape too.
    """

    @abstractmethod
    def __call__(self, positive: Tensor, negative: Tensor) -> Tensor: ...


class RatioBeta(BetaFormula):
    """β* = min(n / (p − n), β_max), and β_max where p ≤ n (DESIGN §4).

    Supplement A.2 sets β/(1+β), the share of negative to positive relevance that LRP-αβ
    redistributes, equal to the neuron's own share n/p (eq. 1); solved for β that is n/(p − n).
    Where p ≤ n the ratio has no finite solution, so the cap applies. A neuron without any input
    contribution (p = n = 0) also gets β_max; both of its terms are zero, so the value is moot.
    """

    def __init__(self, beta_max: float = 3.0) -> None:
        if beta_max < 0:
            raise ValueError(f"beta_max must be non-negative, got {beta_max}")
        self.beta_max = float(beta_max)

    def __call__(self, positive: Tensor, negative: Tensor) -> Tensor:
        excess = positive - negative
        safe = torch.where(excess > 0, excess, torch.ones_like(excess))
        beta = torch.where(excess > 0, negative / safe, torch.full_like(excess, self.beta_max))
        return beta.clamp(max=self.beta_max)

    def __repr__(self) -> str:
        return f"RatioBeta(beta_max={self.beta_max})"


class PrintedBeta(BetaFormula):
    """β* = min(n / (p + n), β_max): supplement A.2 eq. (2) as printed (0 where p = n = 0).

    It is bounded by 1, so the cap of 3 never acts; DESIGN §4 reads it as a misprint and keeps it
    selectable (``beta_formula: printed``) for comparison.
    """

    def __init__(self, beta_max: float = 3.0) -> None:
        if beta_max < 0:
            raise ValueError(f"beta_max must be non-negative, got {beta_max}")
        self.beta_max = float(beta_max)

    def __call__(self, positive: Tensor, negative: Tensor) -> Tensor:
        total = positive + negative
        safe = torch.where(total > 0, total, torch.ones_like(total))
        beta = torch.where(total > 0, negative / safe, torch.zeros_like(total))
        return beta.clamp(max=self.beta_max)

    def __repr__(self) -> str:
        return f"PrintedBeta(beta_max={self.beta_max})"


class ConstantBeta(BetaFormula):
    """The same β for every neuron: plain LRP-αβ with α = 1 + β."""

    def __init__(self, beta: float) -> None:
        if beta < 0:
            raise ValueError(f"beta must be non-negative, got {beta}")
        self.beta = float(beta)

    def __call__(self, positive: Tensor, negative: Tensor) -> Tensor:
        return torch.full_like(positive, self.beta)

    def __repr__(self) -> str:
        return f"ConstantBeta({self.beta})"


BETA_FORMULAS: dict[str, Callable[[float], BetaFormula]] = {"ratio": RatioBeta, "printed": PrintedBeta}


class AdaptiveAlphaBeta(BasicHook):
    """LRP-αβ with α = 1 + β and β chosen per output neuron by ``beta`` (supplement A.2, F.3).

    For output neuron j with contributions zᵢⱼ = xᵢwᵢⱼ, pⱼ = Σᵢ(zᵢⱼ)₊ and nⱼ = −Σᵢ(zᵢⱼ)₋:

        Rᵢ = Σⱼ Rⱼ · [ αⱼ (zᵢⱼ)₊ / pⱼ − βⱼ (zᵢⱼ)₋ / (−nⱼ) ],   βⱼ = beta(pⱼ, nⱼ),  αⱼ = 1 + βⱼ

    which is supplement eq. (52). The denominators are the neuron's input mass without its bias
    (zennit's ``AlphaBeta(zero_params='bias')``): then β/(1+β) is exactly the share of negative to
    positive relevance the neuron redistributes, the quantity eq. (1) sets equal to n/p, and every
    neuron passes on exactly its relevance (α − β = 1), bias or not. On bias-free layers this is
    zennit's ``AlphaBeta(1+β, β)``.

    A neuron without positive input (pⱼ = 0 < nⱼ) has no positive part to put α on: LRP-αβ would
    send −βⱼ·Rⱼ back (−3R under the cap: relevance reversed and tripled; such neurons are rare — a
    quarter percent of EfficientNet-B0's depthwise neurons on random weights — but they broke
    conservation by up to 70 % of the logit). There the rule is LRP-0 over its contributions,
    Rᵢ = zᵢⱼ/(−nⱼ)·Rⱼ (α = 0, β = −1 in the formula above): relevance is conserved and keeps its
    sign, for every β formula. A neuron without any input contribution (pⱼ = nⱼ = 0: its output
    is its bias) passes nothing, as in every rule that gives the bias no relevance.

    The four modified forward passes are zennit's (x₊w₊, x₋w₋ for p; x₊w₋, x₋w₊ for −n); their
    outputs give p and n, so β costs no extra pass. With ``keep_beta`` the β of the last backward
    pass stays in ``stored_tensors['beta']`` while the hook is registered (inspection, tests).
    """

    def __init__(
        self, beta: BetaFormula, stabilizer: StabilizerLike = 1e-6, zero_params: Any = None, keep_beta: bool = False
    ) -> None:
        self.beta = beta
        self.stabilizer = stabilizer
        self.zero_params = zero_params
        self.keep_beta = keep_beta
        no_bias = {"zero_params": zero_bias(zero_params)}
        stabilize = Stabilizer.ensure(stabilizer)
        super().__init__(
            input_modifiers=[
                lambda input: input.clamp(min=0),
                lambda input: input.clamp(max=0),
                lambda input: input.clamp(min=0),
                lambda input: input.clamp(max=0),
            ],
            param_modifiers=[
                ClampMod(min=0.0, **no_bias),
                ClampMod(max=0.0, **no_bias),
                ClampMod(max=0.0, **no_bias),
                ClampMod(min=0.0, **no_bias),
            ],
            output_modifiers=[lambda output: output] * 4,
            gradient_mapper=self._gradient_mapper(stabilize),
            reducer=lambda inputs, gradients: (
                inputs[0] * gradients[0] + inputs[1] * gradients[1]
                - inputs[2] * gradients[2] - inputs[3] * gradients[3]
            ),
        )

    def _gradient_mapper(self, stabilize: Callable[[Tensor], Tensor]) -> Callable[[Tensor, list[Tensor]], list[Tensor]]:
        def mapper(relevance: Tensor, outputs: list[Tensor]) -> list[Tensor]:
            positive = outputs[0] + outputs[1]  # p
            negative = outputs[2] + outputs[3]  # -n
            beta = self.beta(positive.detach(), -negative.detach())
            if self.keep_beta:
                self.stored_tensors["beta"] = beta
            only_negative = (positive.detach() <= 0) & (negative.detach() < 0)  # p = 0 < n: LRP-0 (class docstring)
            alpha = torch.where(only_negative, torch.zeros_like(beta), 1.0 + beta)
            beta = torch.where(only_negative, torch.full_like(beta, -1.0), beta)
            up = alpha * relevance / stabilize(positive)
            down = beta * relevance / stabilize(negative)
            return [up, up, down, down]

        return mapper

    def copy(self) -> "AdaptiveAlphaBeta":
        return type(self)(self.beta, self.stabilizer, self.zero_params, self.keep_beta)

    def __repr__(self) -> str:
        return f"AdaptiveAlphaBeta({self.beta!r})"


# --------------------------------------------------------------------------------------------
# Pooling in proportion to squared activations (paper §4.1)
# --------------------------------------------------------------------------------------------

_SUM_POOLS: dict[int, Callable[..., Tensor]] = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_ADAPTIVE_SUM_POOLS: dict[int, Callable[..., Tensor]] = {
    1: F.adaptive_avg_pool1d,
    2: F.adaptive_avg_pool2d,
    3: F.adaptive_avg_pool3d,
}
_ADAPTIVE = (
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)


def _spatial_dims(module: nn.Module) -> int:
    name = type(module).__name__
    return int(name[-2]) if name[-2:] in ("1d", "2d", "3d") else 2


def window_means(module: nn.Module, values: Tensor) -> Tensor:
    """Mean of ``values`` over each pooling window of ``module`` (any max or average pool).

    Only ratios to this are used, and the divisor is constant per output, so window means serve
    as window sums.
    """
    dims = _spatial_dims(module)
    if isinstance(module, _ADAPTIVE):
        return _ADAPTIVE_SUM_POOLS[dims](values, module.output_size)
    dilation = getattr(module, "dilation", 1)
    if dilation not in (1, (1,) * dims, [1] * dims):
        raise NotImplementedError(f"squared-activation pooling: dilated pooling ({module}) is not supported")
    stride = module.stride if module.stride is not None else module.kernel_size
    return _SUM_POOLS[dims](
        values, module.kernel_size, stride, module.padding, ceil_mode=module.ceil_mode, count_include_pad=True
    )


class SquaredPooling(Hook):
    """Pooling: relevance of each output goes to the inputs of its window in proportion to xᵢ².

        Rᵢ = xᵢ² Σⱼ∋ᵢ Rⱼ / Σₖ∈window(j) xₖ²

    (paper §4.1: "redistribution in proportion to squared activations in the pooling layers").
    Works for max and average pooling (1-3 d, plain and adaptive); overlapping windows add up.
    Conserves relevance wherever a window holds a non-zero input.
    """

    def __init__(self, stabilizer: StabilizerLike = 1e-6) -> None:
        super().__init__()
        self.stabilizer = stabilizer
        self._stabilize = Stabilizer.ensure(stabilizer)

    def forward(self, module: nn.Module, input: tuple[Tensor, ...], output: Tensor) -> None:
        self.stored_tensors["input"] = input

    def backward(self, module: nn.Module, grad_input: tuple[Tensor, ...], grad_output: tuple[Tensor, ...]):
        squared = self.stored_tensors["input"][0].detach().square().requires_grad_()
        with torch.enable_grad():
            means = window_means(module, squared)
        (share,) = torch.autograd.grad(means, squared, grad_outputs=grad_output[0] / self._stabilize(means))
        return (squared.detach() * share,)

    def copy(self) -> "SquaredPooling":
        return type(self)(self.stabilizer)


POOLING = (MaxPool, AvgPool)


# --------------------------------------------------------------------------------------------
# Modules introduced by canonizers
# --------------------------------------------------------------------------------------------


class HeldGatePass(Hook):
    """Relevance passes ``gate · x`` with the gate held constant: all of it goes to x, none to the gate.

    The LRP-0 rule on y = g·x with g a constant is Rₓ = (g x / y) R_y = R_y, so the product is
    relevance-transparent for x; the gate path gets nothing (DESIGN §4: squeeze-excitation gate
    held constant). Equivalent to folding g into the following convolution's weights.
    """

    def backward(self, module: nn.Module, grad_input: tuple[Tensor | None, ...], grad_output: tuple[Tensor, ...]):
        return (grad_output[0],) + (None,) * (len(grad_input) - 1)


class SelectedSum(BasicHook):
    """zennit's ``Norm`` rule on a residual ``Sum`` (dim −1), keeping the relevance of one summand.

    The summands are stacked on the last dim (zennit's ``ResNetCanonizer`` and ours: index 0 is
    the skip connection, 1 the residual branch). Rᵢ = xᵢ / Σₖxₖ · R for the selected i, 0 for the
    others. All rules are linear in the relevance they receive, so explanations with each summand
    selected add up to the full explanation (paper §4.2, Fig. 7).
    """

    def __init__(self, index: int, stabilizer: StabilizerLike = 1e-6) -> None:
        self.index = index
        self.stabilizer = stabilizer
        stabilize = Stabilizer.ensure(stabilizer)

        def reducer(inputs: list[Tensor], gradients: list[Tensor]) -> Tensor:
            relevance = inputs[0] * gradients[0]
            mask = torch.zeros(relevance.shape[-1], dtype=relevance.dtype, device=relevance.device)
            mask[index] = 1.0
            return relevance * mask

        super().__init__(
            input_modifiers=[lambda input: input],
            param_modifiers=[NoMod(param_keys=[])],
            output_modifiers=[lambda output: output],
            gradient_mapper=lambda out_grad, outputs: [out_grad / stabilize(outputs[0])],
            reducer=reducer,
        )

    def copy(self) -> "SelectedSum":
        return type(self)(self.index, self.stabilizer)
