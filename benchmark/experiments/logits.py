"""Logit preservation under randomization (paper §4.2, Fig. 5; DESIGN §7).

For every image, seed and stage of the randomization plan, the Pearson and the Spearman
correlation between the trained model's logit vector (all classes) and the randomized model's.
In the paper each randomized stage is one layer of a ResNet-34 (mode 'independent' with explicit
``layers``); any plan works. One forward pass per (seed, stage); values stay on the device until
the whole grid is done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from ..metrics import average_ranks
from ..models.bundle import ModelBundle
from ..models.randomization import RandomizationPlan, Randomizer
from .context import BatchState
from .grid import axis_column, grid_index
from .stages import stage_walk


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


class LogitPreservation:
    def __init__(self, model: ModelBundle, plan: RandomizationPlan, seeds: list[int], randomizer: Randomizer) -> None:
        self.model, self.plan, self.seeds, self.randomizer = model, plan, list(seeds), randomizer

    def run(self, inputs: Tensor, reference_logits: Tensor, saved: Tensor | None = None) -> LogitGrid:
        """Correlations [seed, stage, image] on the host, and the randomized logits of the saved images."""
        values, kept = [], []
        with stage_walk(self.randomizer, self.plan, self.seeds) as states:
            for _seed, _stage in states:
                with torch.no_grad():
                    logits = self.model.module(inputs)
                values.append(torch.stack([pearson(reference_logits, logits), spearman_rows(reference_logits, logits)]))
                if saved is not None:
                    kept.append(logits.index_select(0, saved))
        shape = (len(self.seeds), len(self.plan.stages), 2, inputs.shape[0])
        grid = torch.stack(values).reshape(shape).cpu().numpy()
        after = torch.stack(kept).reshape(len(self.seeds), len(self.plan.stages), len(saved), -1).float().cpu().numpy() if kept else None
        return LogitGrid(grid[:, :, 0], grid[:, :, 1], after)

    def evaluate(self, state: BatchState) -> dict[str, pa.Table]:
        grid = self.run(state.inputs, state.logits, state.saved)
        return {"logits": self.table(grid, state, self.plan.mode)}

    def table(self, grid: LogitGrid, state: BatchState, mode: str) -> pa.Table:
        """Rows of the ``logits`` table; the logit vectors themselves only for the saved images (Fig. 5)."""
        seeds, stages, images = grid_index(grid.pearson.shape)
        count = seeds.size
        layers = pa.array([list(stage.modules) for stage in self.plan.stages], pa.list_(pa.string()))
        before = pa.nulls(count, pa.list_(pa.float32()))
        after = pa.nulls(count, pa.list_(pa.float32()))
        if grid.saved_after is not None and state.saved is not None:
            saved = state.saved.cpu().numpy()
            slot = np.full(len(state.image_ids), -1)
            slot[saved] = np.arange(len(saved))
            position = slot[images]  # each row's place among the saved images, -1 if not saved
            rows = np.flatnonzero(position >= 0)
            reference = state.logits.index_select(0, state.saved).float().cpu().numpy()
            before_values = [None] * count
            after_values = [None] * count
            for row in rows:  # only the few saved images' rows: not a hot path
                before_values[row] = reference[position[row]].tolist()
                after_values[row] = grid.saved_after[seeds[row], stages[row], position[row]].tolist()
            before = pa.array(before_values, pa.list_(pa.float32()))
            after = pa.array(after_values, pa.list_(pa.float32()))
        return pa.table(
            {
                "image_id": axis_column(state.image_ids, images, pa.string()),
                "seed": axis_column(self.seeds, seeds, pa.int32()),
                "mode": pa.array(np.full(count, mode, dtype=object), pa.string()),
                "stage": axis_column([stage.index for stage in self.plan.stages], stages, pa.int32()),
                "layers": axis_column(layers, stages),
                "target": pa.array(state.targets.cpu().numpy().astype(np.int32)[images]),
                "pearson": pa.array(grid.pearson.ravel().astype(np.float64)),
                "spearman": pa.array(grid.spearman.ravel().astype(np.float64)),
                "logits_before": before,
                "logits_after": after,
                "shard": pa.array(np.full(count, state.shard, dtype=np.int32)),
            }
        )
