"""The one mechanism behind every gradient-based method: Σₖ wₖ · ∇ₓ f_target(pₖ(x)), batched.

Gradient, gradient×input, integrated gradients and SmoothGrad differ only in the points pₖ at
which the gradient of the target logit is taken and in the weights wₖ (a ``Path``); guided
backprop and LRP are the same single-point gradient taken while a zennit composite rewrites the
backward pass. Points of all images and steps are flattened into one batch and cut into tiles of
at most ``chunk_size`` inputs, so a tile is one forward and one backward pass; gradients are taken
with ``torch.autograd.grad`` with respect to the input only (parameter gradients stay off).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator, Literal

import torch
from torch import Tensor, nn

from ..profiling import span
from .base import ACTIVE_RULES, REPLAYABLE_RULES
from .reuse import StageReuse, input_leaf

OutputRelevance = Literal["one", "logit"]


class Path(ABC):
    """Where, for a batch of inputs, the gradient is taken (``steps`` points per image) and how it is weighted."""

    def __init__(self, inputs: Tensor, weights: Tensor) -> None:
        self.inputs = inputs
        self.weights = weights.to(device=inputs.device, dtype=inputs.dtype)  # [steps]

    @property
    def steps(self) -> int:
        return int(self.weights.shape[0])

    @abstractmethod
    def points(self, steps: slice, images: slice) -> Tensor:
        """The points of these steps for these images, [k, n, C, H, W] (step-major)."""


class AtInput(Path):
    """The input itself, weight one: the plain gradient."""

    def __init__(self, inputs: Tensor) -> None:
        super().__init__(inputs, torch.ones(1))

    def points(self, steps: slice, images: slice) -> Tensor:
        return self.inputs[images].unsqueeze(0)


def tiles(steps: int, images: int, chunk_size: int) -> Iterator[tuple[slice, slice]]:
    """(steps, images) blocks of at most ``chunk_size`` points covering the step × image grid once.

    Whole steps of the batch when the batch fits into a chunk; otherwise one step of a slice of
    the batch. Either way a block is contiguous in both indices, so accumulating it needs no
    scatter (scatter-add on GPUs is not deterministic).
    """
    if chunk_size >= images:
        per_tile = chunk_size // images
        for first in range(0, steps, per_tile):
            yield slice(first, min(first + per_tile, steps)), slice(0, images)
    else:
        for step in range(steps):
            for first in range(0, images, chunk_size):
                yield slice(step, step + 1), slice(first, min(first + chunk_size, images))


LogitsSink = list  # receives each tile's logits [M, classes] (detached), in tile order


def target_gradient(
    module: nn.Module, points: Tensor, targets: Tensor, output: OutputRelevance = "one", logits: LogitsSink | None = None
) -> Tensor:
    """∇ₓ of each point's target output, seeded with its one-hot ('one') or one-hot × logit ('logit').

    One forward and one backward pass over ``points`` [M,...] with ``targets`` [M]. Whatever
    hooks are registered on ``module`` (guided backprop, LRP rules) shape the backward pass.
    ``logits``: where the forward's logits go too (they cost nothing more).
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = input_leaf(points)
        return seeded_gradient(module(x), x, targets, output, logits_sink=logits)


def reused_target_gradient(
    reuse: StageReuse,
    module: nn.Module,
    points: Tensor,
    images: slice,
    targets: Tensor,
    output: OutputRelevance,
    logits: LogitsSink | None = None,
    rules: str | None = None,
) -> Tensor:
    """``target_gradient`` of one tile of a batch, with the trained bottom's forward recorded once (per
    tile and rules) and replayed."""
    with torch.inference_mode(False), torch.enable_grad():
        x, outputs = reuse.forward(module, points, images, rules)
        return seeded_gradient(outputs, x, targets, output, retain_graph=True, logits_sink=logits)


def seeded_gradient(
    logits: Tensor,
    x: Tensor,
    targets: Tensor,
    output: OutputRelevance,
    retain_graph: bool = False,
    logits_sink: LogitsSink | None = None,
) -> Tensor:
    if output not in ("one", "logit"):
        raise ValueError(f"output relevance must be 'one' or 'logit', got '{output}'")
    if logits_sink is not None:
        logits_sink.append(logits.detach())
    seed = torch.nn.functional.one_hot(targets, logits.shape[1]).to(logits.dtype)
    if output == "logit":
        seed = seed * logits.detach()
    (gradient,) = torch.autograd.grad(logits, x, grad_outputs=seed, retain_graph=retain_graph)
    return gradient


def pass_kind(rules: str | None, reusing: bool) -> str:
    """The name under which ``profiling`` reports a forward+backward pass."""
    if rules is not None:
        return f"passes: forward+backward under {rules} rules"
    return "passes: forward+backward, bottom replayed" if reusing else "passes: forward+backward, plain"


def path_gradient(
    module: nn.Module,
    path: Path,
    targets: Tensor,
    chunk_size: int,
    output: OutputRelevance = "one",
    reuse: StageReuse | None = None,
    logits: LogitsSink | None = None,
) -> Tensor:
    """Σₖ wₖ ∇f(pₖ(x)) for every image of the path's batch, in tiles of at most ``chunk_size`` points.

    ``reuse``: the batch's recorded forward passes (``reuse.BottomReuse``); used for the gradient
    at the inputs themselves (plain, or under rules that survive in a recorded graph: the lean ones),
    the one pass whose graph is small enough to keep per tile.
    ``logits``: receives the logits of every tile (for ``AtInput``, concatenated they are the
    batch's logits [N, classes] in image order).
    """
    inputs = path.inputs
    targets = targets.to(inputs.device)
    total = torch.zeros_like(inputs)
    rules = ACTIVE_RULES.get()
    reusing = (reuse is not None and isinstance(path, AtInput) and reuse.covers(inputs)
               and (rules is None or REPLAYABLE_RULES.get()))
    kind = pass_kind(rules, reusing)
    for steps, images in tiles(path.steps, inputs.shape[0], chunk_size):
        points = path.points(steps, images)  # [k, n, C, H, W]
        k, n = points.shape[:2]
        repeated = targets[images].repeat(k)
        with span(kind):
            if reusing:
                gradient = reused_target_gradient(reuse, module, points.flatten(0, 1), images, repeated, output, logits,
                                                  rules)
            else:
                gradient = target_gradient(module, points.flatten(0, 1), repeated, output, logits)
        weights = path.weights[steps].view(k, *([1] * inputs.ndim))
        total[images] += (gradient.view(k, n, *inputs.shape[1:]) * weights).sum(dim=0)
    return total
