"""Did the explained output change sign? The sign-flip diagnostic of the randomization check.

After the top layers are randomized the target logit is often negative (54 % of the image × seed ×
stage pairs on the trained digits test bed, docs/lrp-seeding.md). A map seeded with the logit — LRP
with ``output_relevance: logit``, and gradient × input on a bias-free ReLU network — is then the
map of a positive seed with its sign flipped everywhere, and a *signed* similarity to the trained
model's map reads the flip as "the explanation changed completely". This experiment records, with
every randomization check, per image, seed and stage the explained logit of the randomized model,
the trained model's, and whether their signs are opposite (table ``target_logits``;
``benchmark aggregate`` gives the flipped fraction per stage, the report shows it next to the
randomization curves). It reads the logit from the plain gradient pass of the state (gradient,
gradient×input), whose forward computed it; in a job without that pass it costs one forward pass
per randomized state, shared with the logits experiment and the ``own_prediction`` targets.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from ..config.spec import JobSpec
from .base import Experiment, Setup, register_experiment
from .grid import axis_column, grid_index
from .state import Batch, ModelState


@register_experiment("target_logits")
class SignFlips(Experiment):
    """Runs with every randomization check (``randomization.enabled``); no section of its own."""

    tables = ("target_logits",)
    explained_logits = True

    @classmethod
    def enabled(cls, spec: JobSpec) -> bool:
        return spec.randomization.enabled

    def __init__(self, setup: Setup) -> None:
        self.plan, self.seeds = setup.plan, list(setup.spec.randomization.seeds)

    @classmethod
    def build(cls, setup: Setup) -> "SignFlips":
        return cls(setup)

    def start(self, batch: Batch) -> None:
        self.image_ids = batch.image_ids
        self.trained: tuple[Tensor, Tensor] | None = None
        self.states: list[Tensor] = []  # [2, N] per randomized state: target, logit

    def observe(self, state: ModelState) -> None:
        logit = state.explained_logits().to(torch.float64)
        if state.trained:
            self.trained = (state.targets, logit)
            return
        self.states.append(torch.stack([state.targets.to(torch.float64), logit]))

    def finish(self) -> dict[str, pa.Table]:
        if not self.states or self.trained is None:
            return {}
        seeds, stages, images = len(self.seeds), len(self.plan.stages), len(self.image_ids)
        grid = torch.stack(self.states).reshape(seeds, stages, 2, images).cpu().numpy()
        trained_target, trained_logit = (column.cpu().numpy() for column in self.trained)
        seed, stage, image = grid_index((seeds, stages, images))
        logit = grid[:, :, 1].ravel()
        reference = trained_logit.astype(np.float64)[image]
        return {"target_logits": pa.table({
            "image_id": axis_column(self.image_ids, image, pa.string()),
            "seed": axis_column(self.seeds, seed, pa.int32()),
            "mode": pa.array(np.full(seed.size, self.plan.mode, dtype=object), pa.string()),
            "stage": axis_column([s.index for s in self.plan.stages], stage, pa.int32()),
            "target": pa.array(grid[:, :, 0].ravel().astype(np.int32)),
            "logit": pa.array(logit),
            "trained_target": pa.array(trained_target.astype(np.int32)[image]),
            "trained_logit": pa.array(reference),
            "flipped": pa.array(logit * reference < 0),
        })}
