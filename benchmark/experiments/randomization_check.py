"""The model-randomization check (Adebayo et al.; paper §3, supplement H).

In every randomized state every method's map is compared with the same method's map of the
trained model, which is prepared once per batch and kept on the device (never recomputed per
stage). All values stay on the device until the batch's states are done, then cross to the host
in one copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from ..metrics import MapComparer, PreparedReference
from ..profiling import span
from .base import Experiment, Setup, register_experiment
from .grid import axis_column, grid_index
from .state import Batch, ModelState


@dataclass
class RandomizationGrid:
    """values/bounds[seed, stage, method, comparison, image] and targets[seed, stage, image], on the host."""

    values: np.ndarray
    bounds: np.ndarray
    targets: np.ndarray


@register_experiment("randomization")
class RandomizationCheck(Experiment):
    tables = ("randomization",)

    def __init__(self, setup: Setup) -> None:
        self.spec, self.plan, self.methods = setup.spec.randomization, setup.plan, setup.methods
        self.comparer = MapComparer(setup.spec.metrics)
        self._begin([])

    @classmethod
    def build(cls, setup: Setup) -> "RandomizationCheck":
        return cls(setup)

    def start(self, batch: Batch) -> None:
        self._begin(batch.image_ids)

    def _begin(self, image_ids: list[str]) -> None:
        self.image_ids = image_ids
        self.reference: list[PreparedReference] = []
        self.values: list[torch.Tensor] = []
        self.bounds: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def observe(self, state: ModelState) -> None:
        maps = state.maps_of(self.methods)
        with span("metrics"):
            if state.trained:
                self.reference = [self.comparer.prepare(m) for m in maps]
                return
            for reference, stage_maps in zip(self.reference, maps):
                value, bound = self.comparer.compare(reference, stage_maps)
                self.values.append(value)
                self.bounds.append(bound)
            self.targets.append(state.targets)

    def explains(self) -> list:
        return self.methods

    def finish(self) -> dict[str, pa.Table]:
        if not self.targets:
            return {}
        with span("tables (device to host, Arrow)"):
            return {"randomization": self.table(self.grid(), self.image_ids)}

    def grid(self) -> RandomizationGrid:
        seeds, stages, methods = len(self.spec.seeds), len(self.plan.stages), len(self.methods)
        shape = (seeds, stages, methods, len(self.comparer.keys), len(self.image_ids))
        return RandomizationGrid(
            values=torch.stack(self.values).reshape(shape).cpu().numpy(),
            bounds=torch.stack(self.bounds).reshape(shape).cpu().numpy(),
            targets=torch.stack(self.targets).reshape(seeds, stages, len(self.image_ids)).cpu().numpy(),
        )

    def table(self, grid: RandomizationGrid, image_ids: list[str]) -> pa.Table:
        seeds, stages, methods, keys, images = grid_index(grid.values.shape)
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
            }
        )
