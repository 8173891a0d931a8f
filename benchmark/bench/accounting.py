"""How many model passes the work needs, counted two ways (DESIGN §10).

``expected_passes`` derives them from the spec (every method declares its passes per image);
``PassRecorder`` counts the forward calls the pipeline really makes, with their batch sizes and
whether a backward follows, so the bare time of exactly that work can be measured.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from ..attribution import AttributionMethod
from ..attribution.base import ACTIVE_RULES
from ..attribution.reuse import REPLAYED
from ..config.spec import JobSpec
from ..experiments.work import occlusion_forwards, passes_per_state  # noqa: F401  (part of this API)
from ..models.randomization import RandomizationPlan


@dataclass(frozen=True)
class PassCount:
    """Passes per image: forward+backward (input gradient) and forward only."""

    forward_backward: int
    forward_only: int

    @property
    def total(self) -> int:
        return self.forward_backward + self.forward_only


def expected_passes(spec: JobSpec, plan: RandomizationPlan, methods: list[AttributionMethod]) -> PassCount:
    per_state = passes_per_state(methods)
    randomized_states = len(spec.randomization.seeds) * len(plan.stages) if spec.randomization.enabled else 0
    forward_only = 1 + occlusion_forwards(spec, len(methods), spec.dataset.crop)  # + the reference forward
    if spec.randomization.target == "own_prediction":
        forward_only += randomized_states
    return PassCount(per_state * (1 + randomized_states), forward_only)


# (batch size, backward follows, method whose backward rules are active, modules replayed from a recorded pass)
PassKey = tuple[int, bool, "str | None", tuple[str, ...]]


@dataclass
class PassRecorder:
    """Records every call of a module: (batch size, gradient enabled, active backward rules, replayed
    modules) -> calls. A pass that replays the recorded trained bottom (``attribution.reuse``) is still
    one forward+backward pass of the work; its bare time is measured with the same replay."""

    module: nn.Module
    calls: Counter = field(default_factory=Counter)

    def __enter__(self) -> "PassRecorder":
        def record(module: nn.Module, args: tuple) -> None:
            inputs = args[0]
            backward = bool(torch.is_grad_enabled() and inputs.requires_grad)
            rules = ACTIVE_RULES.get() if backward else None
            self.calls[(int(inputs.shape[0]), backward, rules, REPLAYED.get())] += 1

        self._handle = self.module.register_forward_pre_hook(record)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    def images(self, backward: bool) -> int:
        """Images passed through the model with (or without) a backward pass."""
        return count_images(self.calls, backward)


def count_images(calls: Counter, backward: bool) -> int:
    return sum(key[0] * count for key, count in calls.items() if key[1] == backward)
