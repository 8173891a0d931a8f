"""Logit preservation under randomization (paper §4.2, Fig. 5; DESIGN §7).

For every image, seed and stage of the randomization plan, the Pearson and the Spearman
correlation between the trained model's logit vector (all classes) and the randomized model's.
In the paper each randomized stage is one layer of a ResNet-34 (mode 'independent' with explicit
``layers``); any plan works. The state walk runs one forward pass per (seed, stage) for it (shared
with the ``own_prediction`` targets); values stay on the device until the whole grid is done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from ..metrics import average_ranks
from ..models.randomization import RandomizationPlan
from .base import Experiment, Setup, register_experiment
from .grid import axis_column, grid_index
from .state import Batch, ModelState


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation [N] of a, b [N, C] (NaN where a row is constant), in float64."""
    a = a.double() - a.double().mean(dim=1, keepdim=True)
    b = b.double() - b.double().mean(dim=1, keepdim=True)
    denominator = a.norm(dim=1) * b.norm(dim=1)
    value = (a * b).sum(dim=1) / torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, value, torch.full_like(value, float("nan"))).clamp(-1.0, 1.0)


def spearman_rows(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Spearman correlation [N] (average ranks for ties, as scipy.stats.spearmanr)."""
    return pearson(average_ranks(a.double()), average_ranks(b.double()))


@dataclass
class LogitGrid:
    pearson: np.ndarray  # [seed, stage, image]
    spearman: np.ndarray
    saved_after: np.ndarray | None  # [seed, stage, saved image, classes]: randomized logits for Fig. 5


@register_experiment("logits")
class LogitPreservation(Experiment):
    tables = ("logits",)
    stage_logits = True

    def __init__(self, plan: RandomizationPlan, seeds: list[int]) -> None:
        self.plan, self.seeds = plan, list(seeds)

    @classmethod
    def build(cls, setup: Setup) -> "LogitPreservation":
        return cls(setup.plan, setup.spec.randomization.seeds)

    def start(self, batch: Batch) -> None:
        self.batch = batch
        self.reference: Tensor | None = None
        self.targets: Tensor | None = None
        self.values: list[Tensor] = []
        self.kept: list[Tensor] = []

    def observe(self, state: ModelState) -> None:
        """The trained logits are the reference; each randomized state's are correlated with them."""
        assert state.logits is not None, "the state walk runs every state's forward pass for this experiment"
        if state.trained:
            self.reference, self.targets = state.logits, state.targets
            return
        logits = state.logits
        self.values.append(torch.stack([pearson(self.reference, logits), spearman_rows(self.reference, logits)]))
        if self.batch.saved is not None:
            self.kept.append(logits.index_select(0, self.batch.saved))

    def finish(self) -> dict[str, pa.Table]:
        if not self.values:
            return {}
        return {"logits": self.table(self.grid(), self.batch, self.reference, self.targets)}

    def grid(self) -> LogitGrid:
        """Correlations [seed, stage, image] on the host, and the randomized logits of the saved images."""
        seeds, stages = len(self.seeds), len(self.plan.stages)
        grid = torch.stack(self.values).reshape(seeds, stages, 2, len(self.batch)).cpu().numpy()
        after = None
        if self.kept:
            after = torch.stack(self.kept).reshape(seeds, stages, len(self.batch.saved), -1).float().cpu().numpy()
        return LogitGrid(grid[:, :, 0], grid[:, :, 1], after)

    def table(self, grid: LogitGrid, batch: Batch, reference: Tensor, targets: Tensor) -> pa.Table:
        """Rows of the ``logits`` table; the logit vectors themselves only for the saved images (Fig. 5)."""
        seeds, stages, images = grid_index(grid.pearson.shape)
        count = seeds.size
        layers = pa.array([list(stage.modules) for stage in self.plan.stages], pa.list_(pa.string()))
        before = pa.nulls(count, pa.list_(pa.float32()))
        after = pa.nulls(count, pa.list_(pa.float32()))
        if grid.saved_after is not None and batch.saved is not None:
            saved = batch.saved.cpu().numpy()
            slot = np.full(len(batch.image_ids), -1)
            slot[saved] = np.arange(len(saved))
            position = slot[images]  # each row's place among the saved images, -1 if not saved
            rows = np.flatnonzero(position >= 0)
            reference = reference.index_select(0, batch.saved).float().cpu().numpy()
            before_values = [None] * count
            after_values = [None] * count
            for row in rows:  # only the few saved images' rows: not a hot path
                before_values[row] = reference[position[row]].tolist()
                after_values[row] = grid.saved_after[seeds[row], stages[row], position[row]].tolist()
            before = pa.array(before_values, pa.list_(pa.float32()))
            after = pa.array(after_values, pa.list_(pa.float32()))
        return pa.table(
            {
                "image_id": axis_column(batch.image_ids, images, pa.string()),
                "seed": axis_column(self.seeds, seeds, pa.int32()),
                "mode": pa.array(np.full(count, self.plan.mode, dtype=object), pa.string()),
                "stage": axis_column([stage.index for stage in self.plan.stages], stages, pa.int32()),
                "layers": axis_column(layers, stages),
                "target": pa.array(targets.cpu().numpy().astype(np.int32)[images]),
                "pearson": pa.array(grid.pearson.ravel().astype(np.float64)),
                "spearman": pa.array(grid.spearman.ravel().astype(np.float64)),
                "logits_before": before,
                "logits_after": after,
            }
        )
