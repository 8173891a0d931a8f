"""How many model passes the work needs, counted two ways (DESIGN §10).

``expected_passes`` derives them from the job (every method declares its passes per image, every
experiment the methods it explains and the passes it runs itself);
``PassRecorder`` counts the forward calls the pipeline really makes, with their batch sizes and
whether a backward follows, so the bare time of exactly that work can be measured.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from ..attribution import AttributionMethod, passes_per_state  # noqa: F401  (passes_per_state: part of this API)
from ..attribution.base import ACTIVE_RULES
from ..attribution.reuse import REPLAYED
from ..config.spec import JobSpec
from ..experiments import faithfulness
from ..experiments.batch import BatchEvaluator
from ..experiments.work import state_passes


@dataclass(frozen=True)
class PassCount:
    """Passes per image: forward+backward (input gradient) and forward only."""

    forward_backward: int
    forward_only: int

    @property
    def total(self) -> int:
        return self.forward_backward + self.forward_only


def uncounted(methods: list[AttributionMethod]) -> list[str]:
    """Methods whose passes are not known in advance (Captum classes outside ``CAPTUM_PASSES``, callables
    that declare none): the expected count leaves them out, the recorded count has them."""
    return [method.id for method in methods if method.passes() is None]


def occlusion_forwards(spec: JobSpec, methods: int, image_size: int) -> int:
    """Forward passes per image of the job's occlusion curves (0 when occlusion is off)."""
    return faithfulness.occlusion_forwards(spec.occlusion, methods, image_size) if spec.occlusion.enabled else 0


def expected_passes(evaluator: BatchEvaluator) -> PassCount:
    """Passes per image of one batch, from what the walk and every experiment declare
    (``experiments.work``): the trained forward, each randomized state's forward where one is
    needed, the maps of the methods the experiments ask of each state (once per state, however
    many ask), and the experiments' own passes."""
    total = state_passes(evaluator).total
    return PassCount(total.backward, total.forward)


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
