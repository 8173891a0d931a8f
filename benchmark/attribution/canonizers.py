"""Canonizers for DenseNet-121 and EfficientNet-B0 (DESIGN §4): no library has them.

A canonizer rewrites a model, for the duration of one LRP call, into a form on which the rules
are defined; outputs do not change. zennit's pieces are reused: ``MergeBatchNorm`` folds a
BatchNorm into the linear layer that feeds it (and makes the BatchNorm an identity), and an
``AttributeCanonizer`` swaps a block's ``forward`` so that an operation without a module (a
residual ``+``, a gate multiplication) becomes a module a rule can be attached to. Removing the
canonizer restores the original parameter tensors and forward methods.

DenseNet-121 (torchvision). Each dense layer is norm1 → relu1 → conv1 → norm2 → relu2 → conv2 on
the concatenation of all earlier feature maps.

- ``norm2`` follows ``conv1`` and ``norm0`` follows ``conv0``: merged into those convolutions.
- ``norm1`` (and each transition's ``norm`` and the final ``norm5``) is a *pre-activation*
  BatchNorm on a concatenation: each of its channels comes from a different earlier layer, and that
  layer's output also feeds every later dense layer through its own, different norm1, so there is
  no single convolution to fold it into. It stays a channel-wise affine map and gets zennit's
  ``Pass`` rule (the BatchNorm entry of every composite's base map): relevance stays on its
  channel and position and is conserved. The alternative, an ε-rule on y = a·x + b, gives
  Rₓ = a·x/(a·x + b)·R_y, which grows without bound where the following ReLU is barely open
  (a·x + b → 0⁺) and is dominated by the shift b, a statistic of the training set, not of the
  image.
- The concatenations stay ``torch.cat``: their gradient routes each block of channels back to the
  tensor it was copied from, and a feature map read by several later layers sums what they send
  back. That is exactly LRP's rule for copies; it conserves relevance (tested).

Torchvision's leaf order puts each dense layer's conv2 right before the *next* layer's norm1, so
zennit's ``SequentialMergeBatchNorm`` would fold the wrong BatchNorms; the pairs are named here.

EfficientNet-B0 (efficientnet_pytorch). Each MBConv block is [expand conv → bn0 → swish] →
depthwise conv → bn1 → swish → squeeze-excitation gate → project conv → bn2 [+ input].

- BatchNorm after convolution, merged: ``_conv_stem``/``_bn0``, ``_conv_head``/``_bn1`` and per
  block ``_expand_conv``/``_bn0``, ``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``.
  (The convolutions pad inside a child module, so zennit's leaf walk cannot pair them either.)
- Swish: relevance passes through (``Pass`` on the activation modules, base map).
- Squeeze-excitation: the gate σ(SE(x)) is computed without gradient and applied by a
  ``HeldGate`` module whose rule passes all relevance to x (the gate is a per-image constant).
- Residual additions (``x + inputs`` when the block has an identity skip) become a zennit ``Sum``
  over ``stack([inputs, x], -1)``, the same layout as zennit's ``ResNetCanonizer`` (index 0 = skip),
  so the sum gets the composite's ``Sum`` rule.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from zennit.canonizers import AttributeCanonizer, Canonizer, CompositeCanonizer, MergeBatchNorm
from zennit.layer import Sum

Pairs = Callable[[nn.Module], Iterator[tuple[nn.Module, nn.Module]]]


class MergeBatchNormPairs(MergeBatchNorm):
    """Fold each BatchNorm into the linear layer directly before it; ``pairs`` finds (linear, bn) pairs.

    zennit 0.5.1 leaves the emptied BatchNorm computing x / √(1 + eps) instead of x: a relative
    error of eps/2 per layer, invisible at torchvision's eps = 1e-5 but 0.05 % per BatchNorm at
    EfficientNet's eps = 1e-3 (several % at the output). Here the running variance is set to
    1 − eps, which makes it an exact identity.
    """

    def __init__(self, pairs: Pairs) -> None:
        super().__init__()
        self.pairs = pairs

    @staticmethod
    def merge_batch_norm(modules: list[nn.Module], batch_norm: nn.Module) -> None:
        MergeBatchNorm.merge_batch_norm(modules, batch_norm)
        batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data, 1.0 - batch_norm.eps)

    def apply(self, root_module: nn.Module) -> list[Canonizer]:
        instances = []
        for linear, batch_norm in self.pairs(root_module):
            instance = self.copy()
            instance.register((linear,), batch_norm)
            instances.append(instance)
        return instances

    def copy(self) -> "MergeBatchNormPairs":
        return type(self)(self.pairs)


class HeldGate(nn.Module):
    """``gate · x`` with the gate treated as a constant (its rule: ``rules.HeldGatePass``)."""

    def forward(self, x: Tensor, gate: Tensor) -> Tensor:
        return x * gate.detach()


# --------------------------------------------------------------------------------------------
# DenseNet
# --------------------------------------------------------------------------------------------


def densenet_pairs(root: nn.Module) -> Iterator[tuple[nn.Module, nn.Module]]:
    """(conv0, norm0) of every torchvision DenseNet and (conv1, norm2) of every dense layer."""
    from torchvision.models.densenet import DenseNet, _DenseLayer

    for module in root.modules():
        if isinstance(module, DenseNet):
            yield module.features.conv0, module.features.norm0
        elif isinstance(module, _DenseLayer):
            yield module.conv1, module.norm2


class DenseNetCanonizer(CompositeCanonizer):
    """BatchNorm-after-conv merges of torchvision DenseNets; everything else is left to the rules."""

    def __init__(self) -> None:
        super().__init__((MergeBatchNormPairs(densenet_pairs),))


# --------------------------------------------------------------------------------------------
# EfficientNet
# --------------------------------------------------------------------------------------------


def efficientnet_pairs(root: nn.Module) -> Iterator[tuple[nn.Module, nn.Module]]:
    """Every (convolution, BatchNorm) pair of efficientnet_pytorch's EfficientNet and MBConv blocks."""
    from efficientnet_pytorch.model import EfficientNet, MBConvBlock

    for module in root.modules():
        if isinstance(module, EfficientNet):
            yield module._conv_stem, module._bn0
            yield module._conv_head, module._bn1
        elif isinstance(module, MBConvBlock):
            if module._block_args.expand_ratio != 1:
                yield module._expand_conv, module._bn0
            yield module._depthwise_conv, module._bn1
            yield module._project_conv, module._bn2


def has_identity_skip(block: nn.Module) -> bool:
    """MBConvBlock's own condition for ``x = x + inputs``."""
    args = block._block_args
    return bool(block.id_skip and args.stride == 1 and args.input_filters == args.output_filters)


def canonical_mbconv_forward(self: nn.Module, inputs: Tensor, drop_connect_rate: float | None = None) -> Tensor:
    """MBConvBlock.forward with the SE gate held constant and the skip addition as a ``Sum`` module."""
    from efficientnet_pytorch.utils import drop_connect

    x = inputs
    if self._block_args.expand_ratio != 1:
        x = self._swish(self._bn0(self._expand_conv(inputs)))
    x = self._swish(self._bn1(self._depthwise_conv(x)))
    if self.has_se:
        with torch.no_grad():
            squeezed = self._se_expand(self._swish(self._se_reduce(F.adaptive_avg_pool2d(x, 1))))
        x = self.canonizer_gate(x, torch.sigmoid(squeezed))
    x = self._bn2(self._project_conv(x))
    if has_identity_skip(self):
        if drop_connect_rate:
            x = drop_connect(x, p=drop_connect_rate, training=self.training)
        x = self.canonizer_sum(torch.stack([inputs, x], dim=-1))
    return x


class MBConvCanonizer(AttributeCanonizer):
    """Gives every MBConvBlock the canonical forward, a ``HeldGate`` and a ``Sum`` module."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @staticmethod
    def _attribute_map(name: str, module: nn.Module) -> dict | None:
        from efficientnet_pytorch.model import MBConvBlock

        if not isinstance(module, MBConvBlock):
            return None
        return {
            "forward": canonical_mbconv_forward.__get__(module),
            "canonizer_gate": HeldGate(),
            "canonizer_sum": Sum(),
        }

    def copy(self) -> "MBConvCanonizer":
        return type(self)()


class EfficientNetCanonizer(CompositeCanonizer):
    """BatchNorm merges, held SE gates and explicit residual sums for efficientnet_pytorch models."""

    def __init__(self) -> None:
        super().__init__((MergeBatchNormPairs(efficientnet_pairs), MBConvCanonizer()))
