"""Where the unrandomized part of the model ends, per randomization stage (paper §4.1, eq. 3).

The paper writes a randomized model as f(x, θ_R) = g(φ(x), θ_R): φ, the layers left as trained,
and g, the randomized ones. Its §5 refinements need φ's output per stage: (1) the input positions
φ responds to, (2) the residual block whose branch the stage randomizes. Our definition:

- ``split`` mode: φ ends with ``randomization.split_after`` (its output), as in Fig. 4;
- every other mode (top-down, bottom-up, independent layers): φ ends where the first of the
  stage's randomized modules *to run in a forward pass* begins — the tensor that module receives
  is φ's output. In a top-down stage that is the lowest randomized weight layer (e.g. ResNet's
  ``layer3.1.conv1``: φ's output is block ``layer3.0``'s output, which also feeds the skip
  connection around the randomized branch); in bottom-up stages it is the first convolution, so
  φ is the identity.

The order is measured, not guessed from names: one forward pass of a blank image records which
randomized module starts first.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

import torch

from ..models.bundle import ModelBundle
from ..models.randomization import RandomizationPlan


@dataclass(frozen=True)
class KeptEnd:
    """The module at which φ ends, and whether φ's output is that module's input or its output."""

    module: str
    side: Literal["input", "output"]

    @property
    def label(self) -> str:
        """As written to the tables: ``layer3.1.conv1:input``."""
        return f"{self.module}:{self.side}"


def start_order(model: ModelBundle, image_size: int) -> dict[str, int]:
    """Module name -> when it first starts in a forward pass of a blank image of ``image_size`` (0 = first)."""
    order: dict[str, int] = {}

    def started(name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: object) -> None:  # returns nothing: the input stays as it is
            order.setdefault(name, len(order))

        return hook

    handles = [module.register_forward_pre_hook(started(name)) for name, module in model.module.named_modules() if name]
    try:
        parameter = next(model.module.parameters())
        blank = torch.zeros(1, 3, image_size, image_size, device=parameter.device, dtype=parameter.dtype)
        with torch.no_grad():
            model.module(blank)
    finally:
        for handle in handles:
            handle.remove()
    return order


def first_to_run(modules: Collection[str], order: dict[str, int], model_name: str = "the model") -> str:
    """The one of ``modules`` that starts first (``order`` from ``start_order``)."""
    running = [name for name in modules if name in order]
    if not running:
        raise ValueError(f"none of the modules {sorted(modules)[:4]} runs in a forward pass of {model_name}")
    return min(running, key=order.__getitem__)


def kept_ends(model: ModelBundle, plan: RandomizationPlan, split_after: str | None, image_size: int) -> dict[int, KeptEnd]:
    """Stage index -> where φ ends at that stage."""
    if plan.mode == "split":
        assert split_after is not None
        return {stage.index: KeptEnd(split_after, "output") for stage in plan.stages}
    order = start_order(model, image_size)
    return {stage.index: KeptEnd(first_to_run(plan.modules_at(stage.index), order, model.name), "input")
            for stage in plan.stages}
