"""The model-randomization check (Adebayo et al.; paper §3, supplement H).

For every seed and stage, the stage's modules are randomized in place, every method explains
the same images again, and each map is compared with the stage-0 map of the trained model,
which is computed once per batch and kept on the device (never recomputed per stage). All
values stay on the device until the whole grid is done, then cross to the host in one copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from ..attribution import AttributionContext, AttributionMethod, reduce_channels
from ..attribution.reuse import BottomReuse
from ..config.spec import RandomizationSpec
from ..metrics import MapComparer
from ..models.bundle import ModelBundle
from ..models.randomization import RandomizationPlan, Randomizer
from .grid import axis_column, grid_index
from .stages import state_done
from .targets import needs_stage_forward, stage_targets


@dataclass
class RandomizationGrid:
    """values/bounds[seed, stage, method, comparison, image] and targets[seed, stage, image], on the host;
    maps[seed, stage, method, kept image, H, W] of the images asked to be kept (runtime.save_maps), else None."""

    values: np.ndarray
    bounds: np.ndarray
    targets: np.ndarray
    maps: np.ndarray | None = None


def explain(
    methods: list[AttributionMethod],
    model: ModelBundle,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    context: AttributionContext,
) -> list[torch.Tensor]:
    """Every method's 2-D maps [N,H,W] for one model state (the context lets methods share passes)."""
    return [
        reduce_channels(method.attribute(model, inputs, targets, context), method.reduction)
        for method in methods
    ]


class RandomizationCheck:
    def __init__(
        self,
        spec: RandomizationSpec,
        plan: RandomizationPlan,
        model: ModelBundle,
        methods: list[AttributionMethod],
        comparer: MapComparer,
        chunk_size: int,
    ) -> None:
        self.spec, self.plan, self.model = spec, plan, model
        self.methods, self.comparer, self.chunk_size = methods, comparer, chunk_size
        self.randomizer = Randomizer(model.module)

    def run(
        self,
        inputs: torch.Tensor,
        image_ids: list[str],
        reference_targets: torch.Tensor,
        reference_maps: list,
        keep: torch.Tensor | None = None,
        reuse: BottomReuse | None = None,
    ) -> RandomizationGrid:
        """``keep``: batch indices of images whose stage maps are returned too (runtime.save_maps);
        ``reuse``: the batch's recorded trained forward passes, replayed below each stage's randomized top."""
        prepared = [self.comparer.prepare(maps) for maps in reference_maps]
        values, bounds, targets, kept = [], [], [], []
        try:
            for seed in self.spec.seeds:
                for stage in self.plan.stages:
                    if not stage.cumulative:
                        self.randomizer.restore()
                    self.randomizer.randomize(stage.modules, seed)
                    stage_logits = None
                    if needs_stage_forward(self.spec.target):
                        with torch.no_grad():
                            stage_logits = self.model.module(inputs)
                    target = stage_targets(self.spec.target, reference_targets, stage_logits)
                    randomized = self.randomizer.randomized_modules
                    stage_reuse = reuse.at(randomized) if reuse is not None else None
                    context = AttributionContext(image_ids, seed, stage.index, self.chunk_size, {}, stage_reuse)
                    for reference, maps in zip(prepared, explain(self.methods, self.model, inputs, target, context)):
                        value, bound = self.comparer.compare(reference, maps)
                        values.append(value)
                        bounds.append(bound)
                        if keep is not None:
                            kept.append(maps.index_select(0, keep))
                    targets.append(target)
                    state_done()
                self.randomizer.restore()
        finally:
            self.randomizer.restore()
        seeds, stages, methods = len(self.spec.seeds), len(self.plan.stages), len(self.methods)
        shape = (seeds, stages, methods, len(self.comparer.keys), len(image_ids))
        return RandomizationGrid(
            values=torch.stack(values).reshape(shape).cpu().numpy(),
            bounds=torch.stack(bounds).reshape(shape).cpu().numpy(),
            targets=torch.stack(targets).reshape(seeds, stages, len(image_ids)).cpu().numpy(),
            maps=torch.stack(kept).reshape(seeds, stages, methods, *kept[0].shape).cpu().numpy() if kept else None,
        )

    def table(self, grid: RandomizationGrid, image_ids: list[str], shard: int) -> pa.Table:
        seeds, stages, methods, keys, images = index = grid_index(grid.values.shape)
        stage_list = self.plan.stages
        layers = pa.array([list(s.modules) for s in stage_list], pa.list_(pa.string()))
        keys_list = self.comparer.keys
        bounds = grid.bounds.ravel()
        count = bounds.size
        return pa.table(
            {
                "image_id": axis_column(image_ids, images, pa.string()),
                "method": axis_column([m.id for m in self.methods], methods, pa.string()),
                "reduction": axis_column([m.reduction for m in self.methods], methods, pa.string()),
                "seed": axis_column(self.spec.seeds, seeds, pa.int32()),
                "mode": pa.array(np.full(count, self.plan.mode, dtype=object), pa.string()),
                "stage": axis_column([s.index for s in stage_list], stages, pa.int32()),
                "layers": axis_column(layers, stages),
                "target": pa.array(grid.targets[seeds, stages, images].astype(np.int32)),
                "metric": axis_column([k.metric for k in keys_list], keys, pa.string()),
                "normalization": axis_column([k.normalization for k in keys_list], keys, pa.string()),
                "absolute": axis_column([k.absolute for k in keys_list], keys, pa.bool_()),
                "value": pa.array(grid.values.ravel().astype(np.float64)),
                "bound": pa.array(bounds.astype(np.float64), mask=np.isnan(bounds)),
                "shard": pa.array(np.full(count, shard, dtype=np.int32)),
            }
        )
