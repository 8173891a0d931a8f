"""Occlusion faithfulness of the trained model's maps, as rows of the ``occlusion`` table (DESIGN §6):
one curve per image, method, kernel, order (mif, lif) and imputer (blur, mean)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import torch

from ..attribution import AttributionMethod, Passes
from ..config.spec import JobSpec, OcclusionSpec
from ..models.bundle import ModelBundle
from ..profiling import span
from .base import Experiment, Setup, register_experiment
from .grid import axis_column, grid_index, list_column
from .occlusion import OcclusionCurves, imputed, occlusion_variants
from .state import Batch, ModelState


def occlusion_forwards(spec: OcclusionSpec, methods: int, image_size: int) -> int:
    """Forward passes per image of the occlusion curves: f0 once per kernel, then every step that
    still occludes a new tile (beyond all tiles the curve is flat and not recomputed), per method,
    order and imputer."""
    variants = len(spec.orders) * len(spec.imputers)
    total = 0
    for kernel in spec.kernels:
        tiles = math.ceil(image_size / kernel) ** 2
        total += 1 + variants * methods * min(spec.steps, tiles)
    return total


@register_experiment("occlusion")
class FaithfulnessCheck(Experiment):
    tables = ("occlusion",)

    def __init__(self, spec: OcclusionSpec, model: ModelBundle, methods: list[AttributionMethod], chunk_size: int,
                 image_size: int):
        self.spec, self.model, self.methods, self.chunk_size = spec, model, methods, chunk_size
        self.image_size = image_size
        self._rows: pa.Table | None = None

    @classmethod
    def build(cls, setup: Setup) -> "FaithfulnessCheck":
        return cls(setup.spec.occlusion, setup.model, setup.methods, setup.chunk_size, setup.spec.dataset.crop)

    def explains(self) -> list[AttributionMethod]:
        return self.methods

    def own_passes(self, states: int) -> Passes:
        return Passes(forward=occlusion_forwards(self.spec, len(self.methods), self.image_size), backward=0)

    @classmethod
    def observes_randomized_states(cls, spec: JobSpec) -> bool:
        return False  # faithfulness is a property of the trained model's maps

    def start(self, batch: Batch) -> None:
        self.batch, self._rows = batch, None

    def observe(self, state: ModelState) -> None:
        maps = state.maps_of(self.methods)
        with span("occlusion bookkeeping (blur, tile ranks, occluded inputs, curves)"):
            curves = self.run(self.batch.pixels, maps, state.targets)
        with span("tables (device to host, Arrow)"):
            self._rows = self.table(curves, self.batch.image_ids, state.targets)

    def finish(self) -> dict[str, pa.Table]:
        return {} if self._rows is None else {"occlusion": self._rows}

    def run(self, pixels: torch.Tensor, maps: list[torch.Tensor], targets: torch.Tensor) -> list[OcclusionCurves]:
        """Curves for every kernel, imputer and order; ``maps`` are the methods' stage-0 maps [N,H,W]."""
        fills = {name: imputed(pixels, name, self.spec.blur_kernel, self.spec.blur_padding) for name in self.spec.imputers}
        stacked = torch.stack(maps)
        return [
            curves
            for kernel in self.spec.kernels
            for curves in occlusion_variants(
                self.model, pixels, stacked, targets,
                kernel=kernel, steps=self.spec.steps, fills=fills, orders=self.spec.orders, chunk_size=self.chunk_size,
            )
        ]

    def table(self, curves: list[OcclusionCurves], image_ids: list[str], targets: torch.Tensor) -> pa.Table:
        target_array = targets.cpu().numpy().astype(np.int32)
        pieces = []
        for result in curves:
            probability = result.probability.cpu().numpy()
            methods, images = grid_index(probability.shape[:2])
            length = probability.shape[2]
            count = methods.size
            pieces.append(
                pa.table(
                    {
                        "image_id": axis_column(image_ids, images, pa.string()),
                        "method": axis_column([m.id for m in self.methods], methods, pa.string()),
                        "reduction": axis_column([m.reduction for m in self.methods], methods, pa.string()),
                        "target": pa.array(target_array[images]),
                        "kernel": pa.array(np.full(count, result.kernel, dtype=np.int32)),
                        "order": pa.array([result.order] * count, pa.string()),
                        "imputer": pa.array([result.imputer] * count, pa.string()),
                        "curve": list_column(probability.reshape(count, length)),
                        "logit_curve": list_column(result.logit.cpu().numpy().reshape(count, length)),
                        "auc": pa.array(result.auc().cpu().numpy().ravel().astype(np.float64)),
                        "aopc": pa.array(result.aopc().cpu().numpy().ravel().astype(np.float64)),
                    }
                )
            )
        return pa.concat_tables(pieces)
