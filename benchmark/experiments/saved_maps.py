"""Rows of the ``maps`` table: the input and every map of the first ``runtime.save_maps`` images.

The heatmap grids of the paper (Fig. 4, Fig. 7) need the maps themselves, not only the
metrics; they are saved for a few images only, in the float16 format of
``benchmark.results.maps``. Stage 0 is the trained model (seed null), the input image has
kind ``input``. The maps are those the randomization check compared (the states share them);
randomized stages are saved when the check runs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from ..config.spec import JobSpec
from ..results.maps import encode_arrays
from .base import Experiment, Setup, register_experiment
from .grid import axis_column, grid_index
from .state import Batch, ModelState


@register_experiment("saved_maps")
class SavedMaps(Experiment):
    """Configured by ``runtime.save_maps`` (the run's first N images), not by a section of its own."""

    tables = ("maps",)

    def __init__(self, setup: Setup) -> None:
        self.methods, self.plan = setup.methods, setup.plan
        self.seeds = list(setup.spec.randomization.seeds)
        self.batch: Batch | None = None

    @classmethod
    def enabled(cls, spec: JobSpec) -> bool:
        return spec.runtime.save_maps > 0

    @classmethod
    def observes_randomized_states(cls, spec: JobSpec) -> bool:
        return spec.randomization.enabled

    @classmethod
    def build(cls, setup: Setup) -> "SavedMaps":
        return cls(setup)

    def start(self, batch: Batch) -> None:
        self.batch = batch if batch.saved is not None else None  # none of the saved images in this batch
        self.reference: tuple[np.ndarray, np.ndarray] | None = None
        self.stage_maps: list[torch.Tensor] = []
        self.stage_targets: list[torch.Tensor] = []

    def observe(self, state: ModelState) -> None:
        if self.batch is None:
            return
        saved = self.batch.saved
        maps = state.maps_of(self.methods)
        if state.trained:
            reference = np.stack([maps.float().index_select(0, saved).cpu().numpy() for maps in maps])
            self.reference = reference, state.targets.index_select(0, saved).cpu().numpy()
            return
        self.stage_maps.extend(m.index_select(0, saved) for m in maps)
        self.stage_targets.append(state.targets)

    def explains(self) -> list:
        return self.methods

    def finish(self) -> dict[str, pa.Table]:
        if self.batch is None or self.reference is None:
            return {}
        saved = self.batch.saved
        kept = saved.cpu().numpy()
        stage_maps = stage_targets = None
        if self.stage_maps:
            seeds, stages = len(self.seeds), len(self.plan.stages)
            shape = (seeds, stages, len(self.methods), *self.stage_maps[0].shape)
            stage_maps = torch.stack(self.stage_maps).reshape(shape).cpu().numpy()
            targets = torch.stack(self.stage_targets).reshape(seeds, stages, len(self.batch)).cpu().numpy()
            stage_targets = targets[:, :, kept]
        return {
            "maps": maps_table(
                self.batch.saved_ids,
                pixels=self.batch.pixels.float().index_select(0, saved).cpu().numpy(),
                reference=self.reference[0],
                reference_targets=self.reference[1],
                stage_maps=stage_maps,
                stage_targets=stage_targets,
                methods=self.methods,
                seeds=self.seeds,
                stages=[stage.index for stage in self.plan.stages],
                mode=self.plan.mode,
            )
        }


def maps_table(
    image_ids: list[str],
    pixels: np.ndarray,
    reference: np.ndarray,
    reference_targets: np.ndarray,
    stage_maps: np.ndarray | None,
    stage_targets: np.ndarray | None,
    methods: list,
    seeds: list[int],
    stages: list[int],
    mode: str,
) -> pa.Table:
    """``pixels[k,3,H,W]``, ``reference[method,k,H,W]`` with ``reference_targets[k]``;
    ``stage_maps[seed,stage,method,k,H,W]`` with ``stage_targets[seed,stage,k]`` (None when the
    randomization check is off). ``image_ids`` are the k kept images."""
    pieces = [_rows(image_ids, "input", pixels, [None], None, [None], [0], mode)]
    pieces.append(_rows(image_ids, "map", reference[None, None], methods, reference_targets[None, None],
                        [None], [0], mode))
    if stage_maps is not None:
        pieces.append(_rows(image_ids, "map", stage_maps, methods, stage_targets, seeds, stages, mode))
    return pa.concat_tables(pieces)


def _rows(
    image_ids: list[str], kind: str, arrays: np.ndarray, methods: list, targets: np.ndarray | None,
    seeds: list, stages: list[int], mode: str,
) -> pa.Table:
    if kind == "input":  # arrays[k,3,H,W]: one row per image
        arrays = arrays[None, None, None]
    seed_axis, stage_axis, method_axis, image_axis = grid_index(arrays.shape[:4])
    count = image_axis.size
    shape, values, scale = encode_arrays(arrays.reshape(count, *arrays.shape[4:]))
    if targets is None:
        target = pa.nulls(count, pa.int32())
    else:  # targets[seed, stage, k]
        target = pa.array(np.asarray(targets)[seed_axis, stage_axis, image_axis].astype(np.int32))
    return pa.table(
        {
            "image_id": axis_column(image_ids, image_axis, pa.string()),
            "experiment": pa.array(["randomization"] * count, pa.string()),
            "kind": pa.array([kind] * count, pa.string()),
            "method": axis_column([getattr(m, "id", None) for m in methods], method_axis, pa.string()),
            "reduction": axis_column([getattr(m, "reduction", None) for m in methods], method_axis, pa.string()),
            "seed": axis_column(seeds, seed_axis, pa.int32()),
            "mode": pa.array([mode] * count, pa.string()),
            "stage": axis_column(stages, stage_axis, pa.int32()),
            "component": pa.nulls(count, pa.string()),
            "target": target,
            "shape": shape,
            "values": values,
            "scale": scale,
        }
    )
