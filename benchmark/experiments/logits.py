"""Logit preservation under randomization (paper §4.2, Fig. 5; DESIGN §7).

For every image, seed and stage of the randomization plan, the Pearson and the Spearman
correlation between the trained model's logit vector (all classes) and the randomized model's.
In the paper each randomized stage is one layer of a ResNet-34 (mode 'independent' with explicit
``layers``); any plan works. One forward pass per (seed, stage); values stay on the device until
the whole grid is done.
"""

from __future__ import annotations

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


class LogitPreservation:
    def __init__(self, model: ModelBundle, plan: RandomizationPlan, seeds: list[int], randomizer: Randomizer) -> None:
        self.model, self.plan, self.seeds, self.randomizer = model, plan, list(seeds), randomizer

    def run(self, inputs: Tensor, reference_logits: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Pearson and Spearman correlations, each [seed, stage, image], on the host."""
        values = []
        with stage_walk(self.randomizer, self.plan, self.seeds) as states:
            for _seed, _stage in states:
                with torch.no_grad():
                    logits = self.model.module(inputs)
                values.append(torch.stack([pearson(reference_logits, logits), spearman_rows(reference_logits, logits)]))
        shape = (len(self.seeds), len(self.plan.stages), 2, inputs.shape[0])
        grid = torch.stack(values).reshape(shape).cpu().numpy()
        return grid[:, :, 0], grid[:, :, 1]

    def evaluate(self, state: BatchState) -> dict[str, pa.Table]:
        return {"logits": self.table(self.run(state.inputs, state.logits), state.image_ids, state.shard)}

    def table(self, correlations: tuple[np.ndarray, np.ndarray], image_ids: list[str], shard: int) -> pa.Table:
        pearson_values, spearman_values = correlations
        seeds, stages, images = grid_index(pearson_values.shape)
        layers = pa.array([list(stage.modules) for stage in self.plan.stages], pa.list_(pa.string()))
        return pa.table(
            {
                "image_id": axis_column(image_ids, images, pa.string()),
                "seed": axis_column(self.seeds, seeds, pa.int32()),
                "stage": axis_column([stage.index for stage in self.plan.stages], stages, pa.int32()),
                "layers": axis_column(layers, stages),
                "pearson": pa.array(pearson_values.ravel().astype(np.float64)),
                "spearman": pa.array(spearman_values.ravel().astype(np.float64)),
                "shard": pa.array(np.full(seeds.size, shard, dtype=np.int32)),
            }
        )
