"""What the experiments of a batch look at: the batch, and the model in one state of the walk.

A ``ModelState`` is the model either trained (stage 0) or in one (seed, stage) of the randomization
plan, with what any experiment may need of that state computed at most once and shared: the
targets, the logits (when some experiment or the target policy needs the forward pass) and the
2-D maps of the job's methods (computed on first request, in one attribution context, so methods
that share passes share them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ..attribution import AttributionContext, AttributionMethod, reduce_channels
from ..attribution.gradient import PASS_LOGITS
from ..models.bundle import ModelBundle
from ..models.randomization import Stage
from ..profiling import span


STATE_FORWARD = "passes: forward (state logits)"


@dataclass
class Batch:
    """One batch of images on the model's device."""

    image_ids: list[str]
    pixels: Tensor  # unnormalized [N, 3, H, W]
    inputs: Tensor  # normalized: what the model sees
    labels: Tensor  # [N] ground-truth classes, -1 where the dataset has none
    saved: Tensor | None = None  # batch indices of the images whose arrays are saved (runtime.save_maps)

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def saved_ids(self) -> list[str]:
        return [] if self.saved is None else [self.image_ids[i] for i in self.saved.tolist()]


@dataclass
class ModelState:
    """The model in one state, as every experiment of the batch sees it; ``seed`` None: the trained model."""

    batch: Batch
    model: ModelBundle
    seed: int | None
    stage: Stage | None
    targets: Tensor  # [N] the classes explained in this state
    logits: Tensor | None  # [N, classes]; always for the trained model, else when asked for (``stage_logits``)
    context: AttributionContext
    _maps: dict[str, Tensor] = field(default_factory=dict, repr=False)
    on_maps: Callable[[set[str]], None] | None = field(default=None, repr=False)  # told the ids with maps so far

    @property
    def trained(self) -> bool:
        return self.stage is None

    @property
    def index(self) -> int:
        """The stage index: 0 for the trained model."""
        return 0 if self.stage is None else self.stage.index

    def maps(self, method: AttributionMethod) -> Tensor:
        """The method's 2-D maps [N, H, W] of this state, computed once however many experiments ask."""
        maps = self._maps.get(method.id)
        if maps is None:
            with span("attribution around the passes (rules on/off, canonizers, reduction)"):
                explained = method.attribute(self.model, self.batch.inputs, self.targets, self.context)
                maps = self._maps[method.id] = reduce_channels(explained, method.reduction)
            if self.on_maps is not None:
                self.on_maps(set(self._maps))
        return maps

    def explained_logits(self) -> Tensor:
        """The logit [N] of each image's explained class in this state: from the state's forward pass
        when the walk ran one, else from the plain gradient pass at the inputs (whose forward computed
        them; the walk leaves the state's forward out when every randomized state makes that pass),
        else from a forward pass run now."""
        logits = self.logits
        if logits is None:
            recorded = self.context.cache.get(PASS_LOGITS)
            if recorded is not None and recorded.inputs is self.batch.inputs:
                logits = recorded.logits
            else:
                with torch.no_grad(), span(STATE_FORWARD):
                    logits = self.logits = self.model.module(self.batch.inputs)
        return logits.gather(1, self.targets.to(logits.device).view(-1, 1)).squeeze(1)

    def computed_maps(self) -> dict[str, Tensor]:
        """Method id -> maps of the methods some experiment has asked for in this state so far."""
        return dict(self._maps)

    def maps_of(self, methods: list[AttributionMethod]) -> list[Tensor]:
        return [self.maps(method) for method in methods]

